"""MagnaTagATune (MTT) → ``data/MTT/MTT.{train,val,test}.jsonl`` (top-50 tags, MARBLE's split).

Raw layout (``--raw``): ``annotations_final.csv`` (TAB-separated despite its name, quoted
fields, ``clip_id``, 188 tag columns of "0"/"1", ``mp3_path``) and the unzipped MP3 folders
``0``–``9``, ``a``–``f``, either next to the CSV or under an ``mp3/`` folder (MARBLE keeps them
in ``data/MTT/mp3/``). Rules, as in MARBLE and JukeMIR:

- the top-50 tags are the 50 columns with the most 1s over all rows (ties: header order);
- a label is the row's top-50 tags that are 1, in header order; clips without any top-50 tag
  keep an empty label (a zero target), as MARBLE v2 does, unless ``drop_untagged``;
- split by the first character of ``mp3_path``: ``0``–``b`` train, ``c`` val, ``d``–``f`` test;
- the three clips known to hold corrupt MP3s (all in train) are left out unless
  ``keep_corrupt``, as JukeMIR and mir_ref do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mirprobe.datasets.common import DatasetWriter, PrepareResult, check_raw, find_file
from mirprobe.errors import UserError

FOLDER, PREFIX = "data/MTT", "MTT"
#: MARBLE v2's class order of the top-50 tags.
TAGS = ("guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
        "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera",
        "male", "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
        "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir",
        "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello",
        "no voice", "weird", "country", "metal", "female voice", "choral")
CORRUPT_CLIPS = {"35644", "55753", "57881"}
SPLIT_OF_FOLDER = {**dict.fromkeys("0123456789ab", "train"), "c": "val", **dict.fromkeys("def", "test")}


def read_annotations(path: Path) -> pd.DataFrame:
    """``annotations_final.csv`` as strings, with stray quotes, spaces and ``\\r`` stripped."""
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as e:
        raise UserError(f"{path}: cannot read as a TAB-separated table ({e})") from e
    table.columns = [str(c).strip().strip('"') for c in table.columns]
    missing = {"clip_id", "mp3_path"} - set(table.columns)
    if missing:
        raise UserError(f"{path}: no column {', '.join(sorted(missing))}; expected MTT's "
                        "annotations_final.csv (clip_id, 188 tags, mp3_path)")
    return table.apply(lambda col: col.str.strip().str.strip('"'))


def top_tags(table: pd.DataFrame, count: int = 50) -> list[str]:
    """The ``count`` tag columns with the most 1s (ties in header order), in header order."""
    tags = [c for c in table.columns if c not in ("clip_id", "mp3_path")]
    sums = {t: int((table[t] == "1").sum()) for t in tags}
    ranked = sorted(tags, key=lambda t: (-sums[t], tags.index(t)))[:count]
    return [t for t in tags if t in set(ranked)]


def mp3_root(raw: Path, csv: Path, first_paths: list[str]) -> Path:
    """The folder that ``mp3_path`` values are relative to."""
    candidates = [csv.parent / "mp3", csv.parent, raw / "mp3", raw]
    scores = [sum((c / p).is_file() for p in first_paths) for c in candidates]
    best = max(range(len(candidates)), key=lambda i: scores[i])
    if scores[best] == 0:
        raise UserError(f"{raw}: none of the first MP3s of {csv.name} (e.g. {first_paths[0]}) "
                        "was found next to it or under mp3/; unzip mp3.zip there")
    return candidates[best]


def prepare(raw: Path, out: Path, *, drop_untagged: bool = False, keep_corrupt: bool = False,
            **_: Any) -> PrepareResult:
    """Write MARBLE's MTT JSONL under ``<out>/data/MTT/``."""
    raw = check_raw(raw)
    csv = find_file(raw, "annotations_final.csv", "MTT's tag annotations")
    table = read_annotations(csv)
    if table.empty:
        raise UserError(f"{csv}: no rows")
    tags = top_tags(table)
    root = mp3_root(raw, csv, list(table["mp3_path"].head(20)))
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, PREFIX)
    if set(tags) != set(TAGS):
        writer.note("the 50 most frequent tags of this annotation file differ from MARBLE's "
                    "top-50; results are not comparable with MARBLE's")
    untagged = corrupt = 0
    for n, row in enumerate(table.to_dict("records"), start=2):
        clip, mp3 = row["clip_id"], row["mp3_path"]
        split = SPLIT_OF_FOLDER.get(mp3[:1])
        if split is None or "/" not in mp3:
            writer.problem(f"{csv}:{n}: mp3_path {mp3!r} does not start with a folder 0–f; row left out")
            continue
        if clip in CORRUPT_CLIPS and not keep_corrupt:
            corrupt += 1
            continue
        label = [t for t in tags if row[t] == "1"]
        if not label and drop_untagged:
            untagged += 1
            continue
        writer.add(split, root / mp3, label, source=f"{csv.name}:{n}", bitrate=None)
    if corrupt:
        writer.note(f"left out {corrupt} train clip(s) with known corrupt MP3s (clip_id "
                    f"{', '.join(sorted(CORRUPT_CLIPS))}); --keep-corrupt keeps them")
    if untagged:
        writer.note(f"left out {untagged} clip(s) without any top-50 tag (--drop-untagged)")
    return writer.write({"drop_untagged": drop_untagged, "keep_corrupt": keep_corrupt,
                         "tags": tags})

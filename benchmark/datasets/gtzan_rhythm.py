"""GTZAN-Rhythm beats → ``data/GTZAN/GTZANBeatTracking.{train,val,test}.jsonl``.

Raw layout: the GTZAN audio as for ``gtzan`` (``--raw``) and GTZAN-Rhythm's JAMS files
``<genre>.NNNNN.wav.jams`` (``--annotations``, default: searched under ``--raw``; the archive
unpacks them to ``GTZAN-Rhythm_v2_ismir2015_lbd/jams/``). Each JAMS file holds ``beat``
annotations told apart by ``sandbox.annotation_type`` (``beat``, ``downbeat``) and
``tag_open`` annotations whose sandbox gives ``tempo mean`` and ``meter``. The label is
``{"beat": [s…], "downbeat": [s…], "tempo": bpm, "meter": "4/4"}``; the split is the same as
for GTZAN genre (the filtered lists from ``--splits``, else the seeded, non-comparable one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mirprobe.datasets.common import DatasetWriter, PrepareResult, check_raw
from mirprobe.datasets.gtzan import STEM, assign_splits, find_audio, split_options
from mirprobe.errors import UserError

FOLDER, PREFIX = "data/GTZAN", "GTZANBeatTracking"


def find_jams(folder: Path) -> dict[str, Path]:
    """JAMS files by GTZAN file stem (``blues.00029.wav.jams`` → ``blues.00029``)."""
    found = {}
    for path in sorted(folder.rglob("*.jams")):
        stem = path.name.split(".wav")[0] if ".wav" in path.name else path.stem
        if STEM.match(stem):
            found[stem] = path
    if not found:
        raise UserError(f"{folder}: no GTZAN-Rhythm annotations (<genre>.NNNNN.wav.jams) found; "
                        "pass --annotations DIR with the unpacked GTZAN-Rhythm archive")
    return found


def _times(annotation: dict) -> list[float]:
    return sorted(float(event["time"]) for event in annotation.get("data") or [])


def read_jams(path: Path) -> dict[str, Any]:
    """A beat label from one JAMS file (annotations chosen by namespace and annotation type)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        annotations = doc["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"not a readable JAMS file ({type(e).__name__}: {e})") from None
    label: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    for ann in annotations:
        sandbox = ann.get("sandbox") or {}
        if ann.get("namespace") == "beat":
            kind = sandbox.get("annotation_type", "beat")
            if kind in ("beat", "downbeat") and kind not in label:
                label[kind] = _times(ann)
        elif ann.get("namespace") == "tag_open":
            tags.update(sandbox)
    if not label.get("beat"):
        raise ValueError("no beat annotation (namespace 'beat', annotation_type 'beat')")
    label.setdefault("downbeat", [])
    try:
        label["tempo"] = float(tags["tempo mean"])
    except (KeyError, TypeError, ValueError):
        label["tempo"] = None
    label["meter"] = tags.get("meter") or None
    return label


def prepare(raw: Path, out: Path, *, annotations: Path | None = None, splits: Path | None = None,
            seed: int = 0, **_: Any) -> PrepareResult:
    """Write GTZAN beat-tracking JSONL under ``<out>/data/GTZAN/``."""
    raw = check_raw(raw)
    audio = find_audio(raw)
    jams = find_jams(check_raw(annotations) if annotations else raw)
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, PREFIX)
    split_of = assign_splits(audio, writer, splits, seed)
    for stem in sorted(split_of):
        split = split_of[stem]
        if stem not in jams:
            writer.problem(f"{stem} ({split}): no {stem}.wav.jams annotation; row left out")
            continue
        writer.add_read(split, audio[stem], read_jams, jams[stem])
    return writer.write(split_options(writer, splits, seed))

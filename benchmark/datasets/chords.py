"""Chord annotations in ``.lab`` files → ``data/Chords1217/Chords1217.{train,val,test}.jsonl``.

MARBLE v2's Chords1217 data (1,217 songs of Isophonics, Billboard and MARL) comes as JSONL from
its gated download; this preparer writes the same format from annotations a user has: ``.lab``
files (``start end chord`` per line, whitespace-separated, Harte syntax, as Isophonics,
McGill-Billboard and the MARL collections publish them) under ``--annotations`` (default
``--raw``) and the audio under ``--raw``, paired by their path relative to each folder without
the suffix (``Beatles/01_-_Help.lab`` ↔ ``Beatles/01_-_Help.mp3``).

The split is read from ``--splits DIR`` (``train.txt``, ``valid.txt``, ``test.txt``: one such
relative path per line, suffix optional); without it a seeded 80/10/10 split is written and
marked not comparable with MARBLE's, whose split ships with its download. Files that do not
parse, hold a label outside Harte syntax, or have no audio are left out and listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.datasets.common import AUDIO_SUFFIXES, DatasetWriter, PrepareResult, check_raw
from mirprobe.errors import UserError

FOLDER, PREFIX = "data/Chords1217", "Chords1217"
LIST_FILES = {"train": "train.txt", "val": "valid.txt", "test": "test.txt"}
FRACTIONS = (0.8, 0.1)
NOT_COMPARABLE = ("split: seeded 80/10/10 split (seed {seed}), NOT MARBLE's Chords1217 split: "
                  "scores are not comparable; pass --splits DIR with train.txt, valid.txt, test.txt")


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def find_pairs(labs_root: Path, audio_root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """``.lab`` files and audio files by relative path without suffix."""
    labs = {_key(p, labs_root): p for p in sorted(labs_root.rglob("*.lab"))}
    if not labs:
        raise UserError(f"{labs_root}: no .lab chord annotations found; pass --annotations DIR")
    audio = {_key(p, audio_root): p for p in sorted(audio_root.rglob("*"))
             if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()}
    return labs, audio


def read_lab(path: Path) -> list[dict[str, Any]]:
    """A chord label from one ``.lab`` file (mir_eval's reader; labels checked as Harte)."""
    from mir_eval.io import load_labeled_intervals

    from mirprobe.tasks.chord import majmin_class

    try:
        intervals, chords = load_labeled_intervals(str(path))
    except (OSError, ValueError) as e:
        raise ValueError(f"not a lab file of 'start end chord' lines ({e})") from None
    for chord in chords:
        majmin_class(chord)  # ValueError naming a label outside Harte syntax
    return [{"start_time": float(a), "end_time": float(b), "chord_str": c}
            for (a, b), c in zip(intervals, chords, strict=True)]


def read_splits(folder: Path) -> dict[str, str]:
    """Key → split from the three lists."""
    split_of: dict[str, str] = {}
    for split, name in LIST_FILES.items():
        path = Path(folder).expanduser() / name
        if not path.is_file():
            raise UserError(f"{folder}: no {name}; --splits needs train.txt, valid.txt, test.txt")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            key = line.strip()
            if not key:
                continue
            key = str(Path(key).with_suffix("")) if Path(key).suffix in (".lab", *AUDIO_SUFFIXES) \
                else key
            if key in split_of:
                raise UserError(f"{path}:{n}: {key} is already in the {split_of[key]} list")
            split_of[key] = split
    return split_of


def seeded_split(keys: list[str], seed: int) -> dict[str, str]:
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    cut1 = round(len(order) * FRACTIONS[0])
    cut2 = cut1 + max(1, round(len(order) * FRACTIONS[1]))
    return {k: "train" if i < cut1 else "val" if i < cut2 else "test" for i, k in enumerate(order)}


def prepare(raw: Path, out: Path, *, annotations: Path | None = None, splits: Path | None = None,
            seed: int = 0, **_: Any) -> PrepareResult:
    """Write Chords1217-format JSONL under ``<out>/data/Chords1217/``."""
    raw = check_raw(raw)
    labs, audio = find_pairs(check_raw(annotations) if annotations else raw, raw)
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, PREFIX)
    if splits is None:
        writer.note(NOT_COMPARABLE.format(seed=seed))
        split_of = seeded_split(sorted(labs), seed)
    else:
        split_of = read_splits(splits)
        for key in sorted(set(labs) - set(split_of)):
            writer.note(f"{key}.lab is in no split list; left out")
    for key, split in sorted(split_of.items()):
        if key not in labs:
            writer.problem(f"{key} ({split}): no {key}.lab under the annotations; left out")
        elif key not in audio:
            writer.problem(f"{labs[key]} ({split}): no audio file {key}.* under --raw; left out")
        else:
            writer.add_read(split, audio[key], read_lab, labs[key])
    return writer.write({"splits": str(splits) if splits else None,
                         "seed": None if splits else seed, "comparable": splits is not None})

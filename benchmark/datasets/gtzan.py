"""GTZAN genre → ``data/GTZAN/GTZANGenre.{train,val,test}.jsonl``.

Raw layout (``--raw``): one folder per genre holding ``<genre>.NNNNN.wav`` (the Kaggle copy's
``Data/genres_original/`` or ``genres.tar.gz``'s ``genres/``; ``.au`` files are accepted too).
The label is the genre folder. The split is MARBLE's fault-filtered one when ``--splits DIR``
holds ``train_filtered.txt``, ``valid_filtered.txt`` and ``test_filtered.txt`` (coreyker/
dnn-mgr; a clip's split is the list naming its file stem; 443/197/290 clips). Without the lists
a seeded split stratified by genre is written instead, and labelled in the manifest and the
output as not comparable with published GTZAN results.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.datasets.common import AUDIO_SUFFIXES, DatasetWriter, PrepareResult, check_raw
from mirprobe.errors import UserError

FOLDER, PREFIX = "data/GTZAN", "GTZANGenre"
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae",
          "rock")
LIST_FILES = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}
#: sha256 of coreyker/dnn-mgr's lists at commit bdad579.
LIST_SHA256 = {
    "train": "2b04966cef1486f1a7767b74271533fa23e220388db804a1937835e1fc4fa3fa",
    "val": "f8fbee7c52397a0e0f3a91dc54fedecb2e27f5bdc9a9daeab8cb10d077e26956",
    "test": "09cafa6a89ce0a27f30ed250d56ecb4d03c22fffb5a693f96c7ae655ee02ac72",
}
#: Fractions of the filtered split (443/197/290 of 930), used by the seeded fallback split.
FALLBACK_FRACTIONS = (0.476, 0.212)
STEM = re.compile(r"^(" + "|".join(GENRES) + r")\.(\d{5})$")
NOT_COMPARABLE = ("split: seeded stratified split (seed {seed}), NOT the fault-filtered split "
                  "used by MARBLE and published GTZAN results: scores are not comparable; "
                  "pass --splits DIR with train_filtered.txt, valid_filtered.txt, test_filtered.txt")


def find_audio(raw: Path) -> dict[str, Path]:
    """GTZAN clips under ``raw`` by file stem (``blues.00012``); WAV preferred over other formats."""
    found: dict[str, Path] = {}
    for path in sorted(raw.rglob("*.*")):
        match = STEM.match(path.stem)
        if match is None or path.suffix.lower() not in AUDIO_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem not in found or path.suffix.lower() == ".wav":
            found[path.stem] = path
    if not found:
        raise UserError(f"{raw}: no GTZAN clips (<genre>/<genre>.NNNNN.wav) found; point --raw "
                        "at the folder holding the genre folders")
    return found


def genre_of(stem: str, path: Path) -> str:
    """The parent folder when it is a genre (MARBLE's label), else the file name's genre."""
    return path.parent.name if path.parent.name in GENRES else stem.split(".")[0]


def read_split_lists(folder: Path) -> tuple[dict[str, str], list[str]]:
    """File stem → split from the three filtered lists, and notes on their checksums."""
    folder = Path(folder).expanduser()
    split_of: dict[str, str] = {}
    notes = []
    for split, name in LIST_FILES.items():
        path = folder / name
        if not path.is_file():
            raise UserError(f"{folder}: no {name}; --splits needs train_filtered.txt, "
                            "valid_filtered.txt and test_filtered.txt (coreyker/dnn-mgr, gtzan/)")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != LIST_SHA256[split]:
            notes.append(f"{name} differs from dnn-mgr's list (sha256 mismatch): the split is "
                         "not the published one")
        for n, line in enumerate(data.decode().splitlines(), start=1):
            if not line.strip():
                continue
            stem = Path(line.strip()).stem
            if stem in split_of:
                raise UserError(f"{path}:{n}: {line.strip()} is already in the "
                                f"{split_of[stem]} list; fix the split lists")
            split_of[stem] = split
    return split_of, notes


def seeded_split(labels: dict[str, str], seed: int) -> dict[str, str]:
    """A split stratified by genre with the filtered split's proportions: each genre's clips
    are shuffled with ``seed`` and cut at the same fractions."""
    rng = np.random.default_rng(seed)
    split_of = {}
    for genre in sorted(set(labels.values())):
        stems = sorted(s for s in labels if labels[s] == genre)
        order = [stems[i] for i in rng.permutation(len(stems))]
        cut1 = round(len(order) * FALLBACK_FRACTIONS[0])
        cut2 = cut1 + round(len(order) * FALLBACK_FRACTIONS[1])
        for i, stem in enumerate(order):
            split_of[stem] = "train" if i < cut1 else "val" if i < cut2 else "test"
    return split_of


def assign_splits(audio: dict[str, Path], writer: DatasetWriter, splits: Path | None,
                  seed: int) -> dict[str, str]:
    """Split of every clip; listed clips without audio become problems."""
    if splits is None:
        writer.note(NOT_COMPARABLE.format(seed=seed))
        return seeded_split({s: genre_of(s, p) for s, p in audio.items()}, seed)
    split_of, notes = read_split_lists(splits)
    for note in notes:
        writer.note(note)
    for stem, split in split_of.items():
        if stem not in audio:
            writer.problem(f"{stem} ({LIST_FILES[split]}, {split}): audio file not found under "
                           "--raw; row left out")
    return {s: split for s, split in split_of.items() if s in audio}


def prepare(raw: Path, out: Path, *, splits: Path | None = None, seed: int = 0,
            **_: Any) -> PrepareResult:
    """Write GTZAN genre JSONL under ``<out>/data/GTZAN/``."""
    audio = find_audio(check_raw(raw))
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, PREFIX)
    split_of = assign_splits(audio, writer, splits, seed)
    for stem in sorted(split_of):
        writer.add(split_of[stem], audio[stem], genre_of(stem, audio[stem]), source=stem)
    return writer.write(split_options(writer, splits, seed))


def split_options(writer: DatasetWriter, splits: Path | None, seed: int) -> dict[str, Any]:
    """Manifest entries saying which split was written and whether it is the published one."""
    published = splits is not None and not any("sha256 mismatch" in n for n in writer.notes)
    return {"splits": str(splits) if splits else None, "seed": None if splits else seed,
            "comparable": published}

"""VocalSet → ``data/VocalSet/VocalSet{T,S}.{train,val,test}.jsonl`` (MARBLE v1's VocalSetT and
VocalSetS) of 3 s clips.

Raw layout (``--raw``): ``VocalSet11.zip`` (Zenodo record 1203819) unzipped,
``FULL/<singer>/<context>/<technique>/<file>.wav`` (singers ``f1``–``f9``, ``m1``–``m11``;
contexts ``arpeggios``, ``long_tones``, ``scales``, ``excerpts``). As MARBLE v1's preprocessing:

- only files directly in one of the 17 technique folders are used, less the five duplicates it
  deletes (``vibrato/f2_scales_vibrato_a(1).wav``, ``caro_vibrato.wav``, ``dona_vibrato.wav``,
  ``row_vibrato.wav``, ``slow_vibrato_arps.wav``); the singer is the singer folder (MARBLE reads
  it from the file name after renaming the files that lack it: the same singer);
- each recording is mixed to mono, resampled to 44.1 kHz and cut into full 3 s clips (a shorter
  tail is dropped; a recording under 3 s gives none), written as 16-bit WAV under
  ``data/VocalSet/clips/``; a clip's ``ori_uid`` is its recording, so no recording spans splits;
- technique (``VocalSetT``): the 10 techniques belt, breathy, inhaled, lip_trill, spoken,
  straight, trill, trillo, vibrato, vocal_fry; test is MARBLE's five test singers (f2, f8, m3,
  m5, m10), the other singers' recordings are split 60/40 into train and val;
- singer (``VocalSetS``): the 20 singers over all 17 techniques; 20 % of the recordings are
  test, 40 % of the rest val.

Where this differs from MARBLE v1: it trims leading silence with sox's VAD and z-scores each
clip, and draws its recording splits with scikit-learn's ``GroupShuffleSplit`` from numpy's
global random state (seed 42617) after that VAD, so its exact draws cannot be reproduced
without its files; here the same ``GroupShuffleSplit`` draws with ``--seed``. The technique
test singers are MARBLE's; the train/val draw and the singer split are not MARBLE's own draws,
and the manifest says so (``comparable: false``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.datasets.common import DatasetWriter, PrepareResult, check_raw
from mirprobe.datasets.giantsteps import cut_clips
from mirprobe.errors import UserError

FOLDER, CLIP_DIR, CLIP_S = "data/VocalSet", "clips", 3.0
SINGERS = (*(f"f{i}" for i in range(1, 10)), *(f"m{i}" for i in range(1, 12)))
TECHNIQUES = ("belt", "breathy", "inhaled", "lip_trill", "spoken", "straight", "trill", "trillo",
              "vibrato", "vocal_fry")
OTHER_TECHNIQUES = ("fast_forte", "fast_piano", "forte", "messa", "pp", "slow_forte",
                    "slow_piano")
TEST_SINGERS = ("f2", "f8", "m3", "m5", "m10")
DELETED = {"vibrato": {"f2_scales_vibrato_a(1).wav", "caro_vibrato.wav", "dona_vibrato.wav",
                       "row_vibrato.wav", "slow_vibrato_arps.wav"}}
SINGER = re.compile(r"^[fm]\d{1,2}$")
NOT_MARBLES_DRAW = ("split: recordings drawn with GroupShuffleSplit(seed {seed}); MARBLE v1's "
                    "own draw depends on its VAD-trimmed files and cannot be reproduced: scores "
                    "are close to, not comparable with, MARBLE's")


@dataclass(frozen=True)
class Recording:
    path: Path
    singer: str
    context: str
    technique: str

    @property
    def uid(self) -> str:
        return f"{self.singer}/{self.context}/{self.technique}/{self.path.stem}"


def find_recordings(raw: Path) -> list[Recording]:
    """Every usable recording: ``<singer>/<context>/<technique>/<file>.wav`` under ``raw``."""
    found = []
    for path in sorted(raw.rglob("*.wav")):
        parts = path.parts
        if len(parts) < 4 or path.name.startswith("."):
            continue
        singer, context, technique = parts[-4], parts[-3], parts[-2]
        if SINGER.match(singer) and technique in (*TECHNIQUES, *OTHER_TECHNIQUES) and \
                path.name not in DELETED.get(technique, ()):
            found.append(Recording(path, singer, context, technique))
    if not found:
        raise UserError(f"{raw}: no VocalSet recordings (FULL/<singer>/<context>/<technique>/"
                        "*.wav); unzip VocalSet11.zip under --raw")
    return found


def group_split(recordings: list[Recording], test_size: float, seed: int
                ) -> tuple[list[Recording], list[Recording]]:
    """(rest, held out): ``test_size`` of the recordings by scikit-learn's GroupShuffleSplit."""
    from sklearn.model_selection import GroupShuffleSplit

    if len(recordings) < 2:
        raise UserError(f"VocalSet: {len(recordings)} recording(s) to split; the raw folder "
                        "holds too little of VocalSet")
    groups = [r.uid for r in recordings]
    rest, held = next(GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
                      .split(np.zeros(len(groups)), groups=groups))
    return [recordings[i] for i in rest], [recordings[i] for i in held]


def technique_splits(recordings: list[Recording], seed: int) -> dict[str, list[Recording]]:
    chosen = [r for r in recordings if r.technique in TECHNIQUES]
    test = [r for r in chosen if r.singer in TEST_SINGERS]
    train, val = group_split([r for r in chosen if r.singer not in TEST_SINGERS], 0.4, seed)
    return {"train": train, "val": val, "test": test}


def singer_splits(recordings: list[Recording], seed: int) -> dict[str, list[Recording]]:
    rest, test = group_split(recordings, 0.2, seed)
    train, val = group_split(rest, 0.4, seed)
    return {"train": train, "val": val, "test": test}


def cut_recordings(recordings: list[Recording], writer: DatasetWriter
                   ) -> dict[Recording, list[str]]:
    """The clips of every recording (complete ones reused); those without any are problems."""
    out = {}
    for rec in recordings:
        target = writer.out_dir / CLIP_DIR / rec.singer / rec.context / rec.technique
        target.mkdir(parents=True, exist_ok=True)
        clips, error = cut_clips(str(rec.path), str(target), rec.path.stem, CLIP_S)
        if error or not clips:
            writer.problem(f"{rec.path}: {error or 'shorter than one 3 s clip'}; left out")
        else:
            out[rec] = clips
    return out


def prepare_task(raw: Path, out: Path, prefix: str, seed: int,
                 splits_of: Callable[[list[Recording], int], dict[str, list[Recording]]],
                 label_of: Callable[[Recording], str]) -> PrepareResult:
    """Cut the clips of every recording, split the recordings that have clips (as MARBLE splits
    its table of clips) and write one task."""
    raw = check_raw(raw)
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, prefix)
    recordings = find_recordings(raw)
    if prefix == "VocalSetT":
        recordings = [r for r in recordings if r.technique in TECHNIQUES]
    clips = cut_recordings(recordings, writer)
    splits = splits_of(list(clips), seed)
    absent = sorted(set(TEST_SINGERS) - {r.singer for r in splits["test"]})
    if prefix == "VocalSetT" and absent:
        writer.note(f"test singers absent from --raw: {', '.join(absent)}")
    for split, chosen in splits.items():
        for rec in chosen:
            for clip in clips[rec]:
                writer.add(split, Path(clip), label_of(rec), source=rec.uid,
                           first={"ori_uid": rec.uid})
    writer.note(NOT_MARBLES_DRAW.format(seed=seed))
    return writer.write({"seed": seed, "clip_s": CLIP_S, "comparable": False})


def prepare_technique(raw: Path, out: Path, *, seed: int = 0, **_: Any) -> PrepareResult:
    """Write MARBLE v1's VocalSet technique task (``VocalSetT``) under ``<out>/data/VocalSet/``."""
    return prepare_task(raw, out, "VocalSetT", seed, technique_splits, lambda r: r.technique)


def prepare_singer(raw: Path, out: Path, *, seed: int = 0, **_: Any) -> PrepareResult:
    """Write MARBLE v1's VocalSet singer task (``VocalSetS``) under ``<out>/data/VocalSet/``."""
    return prepare_task(raw, out, "VocalSetS", seed, singer_splits, lambda r: r.singer)

"""GiantSteps key → ``data/GS/GS.{train,val,test}.jsonl`` of 30 s clips with ``ori_uid``.

Raw layout (``--raw``): the two annotation repositories as unpacked from GitHub
(``giantsteps-mtg-key-dataset-<sha>/`` with ``annotations/annotations.txt`` and
``annotations/beatport_metadata.txt``; ``giantsteps-key-dataset-<sha>/`` with
``annotations/key/<ID>.LOFI.key``; both with ``md5/<ID>.LOFI.md5`` listing the tracks) and the
audio ``<ID>.LOFI.mp3`` anywhere under ``--audio`` (default: ``--raw``). Rules (JukeMIR's,
which MARBLE copies):

- train/val: GiantSteps-MTG tracks with confidence 2 and a single key; sharps become flats;
  split by artist: an artist is val when ``int(sha1(name.lower()), 16) % 116 >= 100``, all
  collaborators of a val artist become val (twice over), and a track takes its artists' split;
- test: every GiantSteps key track, its label as the key file gives it;
- each track is cut into full 30 s clips at offsets 0, 30, 60, … (a shorter tail is dropped),
  mixed to mono, written as 16-bit 44.1 kHz WAV ``giantsteps_clips/wav/<7-digit ID>-<i>.wav``
  (soundfile decoding, soxr resampling when the source rate differs); ``ori_uid`` is the
  7-digit ID so that clip predictions are merged per song. Clips already written are reused.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from mirprobe.audio import resample
from mirprobe.datasets.common import AUDIO_SUFFIXES, DatasetWriter, PrepareResult, check_raw
from mirprobe.errors import UserError

FOLDER, PREFIX = "data/GS", "GS"
CLIP_DIR = "giantsteps_clips/wav"
SAMPLE_RATE = 44100
CLIP_S = 30.0
FLATS = {"C#": "Db", "D#": "Eb", "F#": "Gb", "G#": "Ab", "A#": "Bb"}


def find_repos(raw: Path) -> tuple[Path, Path]:
    """(GiantSteps-MTG key repository, GiantSteps key repository) under ``raw``."""
    mtg = sorted(p.parent.parent for p in raw.rglob("annotations.txt")
                 if (p.parent / "beatport_metadata.txt").is_file())
    key = sorted(p.parent.parent for p in raw.rglob("key")
                 if p.is_dir() and p.parent.name == "annotations"
                 and not (p.parent / "annotations.txt").exists())
    if not mtg:
        raise UserError(f"{raw}: no giantsteps-mtg-key-dataset (annotations/annotations.txt with "
                        "beatport_metadata.txt) found; unpack it under --raw")
    if not key:
        raise UserError(f"{raw}: no giantsteps-key-dataset (annotations/key/*.LOFI.key) found; "
                        "unpack it under --raw")
    return mtg[0], key[0]


def track_ids(repo: Path) -> list[int]:
    """Track IDs listed by ``md5/`` (else by ``annotations/key/``)."""
    files = sorted((repo / "md5").glob("*.md5")) or sorted((repo / "annotations" / "key").glob("*.key"))
    return sorted({int(p.name.split(".")[0]) for p in files if p.name.split(".")[0].isdigit()})


def read_table(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as e:
        raise UserError(f"{path}: cannot read as a TAB-separated table ({e})") from e
    table.columns = [str(c).strip() for c in table.columns]
    if "ID" not in table.columns:
        raise UserError(f"{path}: no ID column; expected GiantSteps-MTG's annotation files")
    return table.apply(lambda col: col.str.strip())


def artist_splits(metadata: pd.DataFrame) -> dict[int, str]:
    """Track ID → ``train``/``val`` by JukeMIR's artist hash with two collaborator passes."""
    def artists(text: str) -> list[str]:
        return [a.strip() for a in text.strip().split(",")]

    def hashed(name: str) -> str:
        return "val" if int(hashlib.sha1(name.lower().encode()).hexdigest(), 16) % 116 >= 100 else "train"

    split_of = {a: hashed(a) for text in metadata["ARTIST"] for a in artists(text)}
    for _ in range(2):
        for text in metadata["ARTIST"]:
            names = artists(text)
            if any(split_of[a] == "val" for a in names):
                split_of.update(dict.fromkeys(names, "val"))
    return {int(i): "val" if any(split_of[a] == "val" for a in artists(text)) else "train"
            for i, text in zip(metadata["ID"], metadata["ARTIST"], strict=True)}


def flat_key(text: str) -> str | None:
    """``"D# minor"`` → ``"Eb minor"``; None for ``-``, several keys or other text."""
    parts = text.split()
    if "/" in text or len(parts) != 2 or parts[1].lower() not in ("major", "minor"):
        return None
    tonic = parts[0][:1].upper() + parts[0][1:]
    return f"{FLATS.get(tonic, tonic)} {parts[1].lower()}"


def find_audio(folder: Path) -> dict[int, Path]:
    found = {}
    for path in sorted(folder.rglob("*.LOFI.*")):
        head = path.name.split(".")[0]
        if head.isdigit() and path.suffix.lower() in AUDIO_SUFFIXES:
            found[int(head)] = path
    return found


def cut_clips(source: str, target_dir: str, uid: str, clip_s: float) -> tuple[list[str], str | None]:
    """Write the full ``clip_s`` clips of one track (reusing complete ones); (paths, error)."""
    length = int(round(clip_s * SAMPLE_RATE))
    try:
        info = sf.info(source)
        count = int(info.frames / info.samplerate // clip_s)
        paths = [os.path.join(target_dir, f"{uid}-{i}.wav") for i in range(count)]
        if all(_complete(p, length) for p in paths):
            return paths, None
        data, sr = sf.read(source, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile's errors for unreadable files
        return [], f"cannot decode audio ({str(e).strip() or type(e).__name__})"
    wave = resample(data.mean(axis=1), sr, SAMPLE_RATE)
    if not np.isfinite(wave).all():
        return [], "audio holds NaN or Inf samples"
    count = len(wave) // length
    paths = [os.path.join(target_dir, f"{uid}-{i}.wav") for i in range(count)]
    for i, path in enumerate(paths):
        clip = np.clip(wave[i * length:(i + 1) * length], -1.0, 1.0)
        tmp = f"{path}.partial-{os.getpid()}.wav"
        sf.write(tmp, clip, SAMPLE_RATE, subtype="PCM_16")
        os.replace(tmp, path)
    return paths, None


def _complete(path: str, length: int) -> bool:
    try:
        return sf.info(path).frames == length
    except Exception:
        return False


def labelled_tracks(mtg: Path, key: Path, writer: DatasetWriter) -> list[tuple[int, str, str]]:
    """(ID, split, key label) of every usable track."""
    notes = read_table(mtg / "annotations" / "annotations.txt").set_index("ID")
    metadata = read_table(mtg / "annotations" / "beatport_metadata.txt")
    split_of = artist_splits(metadata)
    tracks, dropped = [], 0
    for tid in track_ids(mtg):
        row = notes.loc[str(tid)] if str(tid) in notes.index else None
        if row is None or tid not in split_of:
            writer.problem(f"{mtg.name}: track {tid} has no annotation or metadata row; left out")
            continue
        label = flat_key(row["MANUAL KEY"])
        if row["C"] != "2" or label is None:
            dropped += 1
            continue
        tracks.append((tid, split_of[tid], label))
    writer.note(f"left out {dropped} GiantSteps-MTG track(s) with confidence < 2 or not one key")
    for tid in track_ids(key):
        path = key / "annotations" / "key" / f"{tid}.LOFI.key"
        text = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
        if len(text.split()) != 2:
            writer.problem(f"{path} (test): no '<tonic> <mode>' key; track left out")
            continue
        tracks.append((tid, "test", text))
    return tracks


def prepare(raw: Path, out: Path, *, audio: Path | None = None, workers: int | None = None,
            clip_s: float = CLIP_S, **_: Any) -> PrepareResult:
    """Cut the clips and write GiantSteps key JSONL under ``<out>/data/GS/``."""
    raw = check_raw(raw)
    mtg, key = find_repos(raw)
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, PREFIX)
    tracks = labelled_tracks(mtg, key, writer)
    files = find_audio(check_raw(audio) if audio else raw)
    target = writer.out_dir / CLIP_DIR
    target.mkdir(parents=True, exist_ok=True)
    jobs = [(t, files[t[0]]) for t in tracks if t[0] in files]
    for tid, split, _ in tracks:
        if tid not in files:
            writer.problem(f"track {tid} ({split}): no {tid}.LOFI.mp3 under "
                           f"{audio or raw}; left out")
    workers = workers or min(os.cpu_count() or 1, 8)
    args = [(str(p), str(target), f"{t[0]:07d}", clip_s) for t, p in jobs]
    with ProcessPoolExecutor(workers) if workers > 1 and len(args) > 1 else _Serial() as pool:
        results = list(pool.map(cut_clips, *zip(*args, strict=True))) if args else []
    for ((tid, split, label), source), (paths, error) in zip(jobs, results, strict=True):
        if error or not paths:
            why = error or f"shorter than one {clip_s:g} s clip"
            writer.problem(f"{source} ({split}): {why}; track left out")
        for path in paths:
            writer.add(split, Path(path), label, source=source.name, first={"ori_uid": f"{tid:07d}"})
    return writer.write({"clip_s": clip_s, "sample_rate": SAMPLE_RATE,
                         "mtg_repo": mtg.name, "key_repo": key.name})


class _Serial:
    """A stand-in for a process pool that maps in this process."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(fn: Any, *iterables: Any) -> Any:
        return map(fn, *iterables)

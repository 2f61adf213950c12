"""Shared pieces of the dataset preparers: finding raw files, audio headers, writing JSONL.

A preparer collects rows per split in a :class:`DatasetWriter`, which reads each audio file's
header (never decoding it) for MARBLE's ``duration``/``sample_rate``/``num_samples``/
``bit_depth``/``channels`` fields, turns files it cannot read into problems (row left out,
reported), and writes ``<folder>/<Prefix>.{train,val,test}.jsonl`` plus a
``<Prefix>.prepare.json`` manifest stating what was done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from mirprobe.data import SPLITS
from mirprobe.errors import UserError
from mirprobe.workfolder import atomic_write_bytes, atomic_write_json

#: Bits per sample of the PCM subtypes; compressed formats (MP3, OGG, FLAC's VBR) have none.
SUBTYPE_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32,
                "FLOAT": 32, "DOUBLE": 64}
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".au", ".aiff", ".aif")
HEADER_WORKERS = 8  # header reads are I/O bound; threads help most on network file systems


@dataclass(frozen=True)
class Header:
    """What an audio file's header says, or why it could not be read."""

    sample_rate: int = 0
    num_samples: int = 0
    channels: int = 0
    bit_depth: int | None = None
    error: str | None = None

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate if self.sample_rate else 0.0


def read_header(path: Path) -> Header:
    """Header of ``path`` without decoding; ``error`` says what is wrong instead of raising."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # LibsndfileError, RuntimeError: missing, unreadable, unknown format
        if not path.is_file():
            return Header(error="audio file not found")
        if path.stat().st_size == 0:
            return Header(error="audio file is empty (0 bytes)")
        return Header(error=f"cannot read the audio header ({str(e).strip() or type(e).__name__})")
    if info.frames <= 0:
        return Header(info.samplerate, 0, info.channels, error="audio file holds no samples")
    return Header(int(info.samplerate), int(info.frames), int(info.channels),
                  SUBTYPE_BITS.get(info.subtype))


def read_headers(paths: Iterable[Path], workers: int = HEADER_WORKERS) -> dict[Path, Header]:
    """Headers of many files (each distinct path read once), read by a few threads."""
    unique = list(dict.fromkeys(paths))
    if len(unique) < 64 or workers <= 1:
        return {p: read_header(p) for p in unique}
    with ThreadPoolExecutor(workers) as pool:
        return dict(zip(unique, pool.map(read_header, unique), strict=True))


def find_file(root: Path, name: str, what: str) -> Path:
    """The one file called ``name`` under ``root`` (searched recursively)."""
    direct = root / name
    if direct.is_file():
        return direct
    found = sorted(root.rglob(name))
    if not found:
        raise UserError(f"{root}: no {name} found ({what}); point --raw at the folder holding it")
    return found[0]


def check_raw(raw: Path) -> Path:
    raw = Path(raw).expanduser()
    if not raw.is_dir():
        raise UserError(f"raw dataset folder {raw} does not exist; give --raw the unpacked download")
    return raw


def audio_path_for(path: Path, root: Path) -> str:
    """``path`` relative to the output root when it lies inside it (MARBLE's way), else absolute."""
    path = path.resolve()
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


@dataclass
class DatasetWriter:
    """Rows per split for one MARBLE-format dataset under ``<root>/<folder>/<prefix>.*.jsonl``."""

    root: Path
    folder: str
    prefix: str
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _pending: list[tuple[str, Path, dict[str, Any], str]] = field(default_factory=list)

    @property
    def out_dir(self) -> Path:
        return self.root / self.folder

    def add(self, split: str, audio: Path, label: Any, *, source: str, first: dict | None = None,
            **extra: Any) -> None:
        """Queue a row; its header is read in :meth:`write`. ``first``: keys placed before
        ``label`` (``ori_uid``, as in MARBLE's rows); ``extra``: keys after ``bit_depth``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        row = {"audio_path": audio_path_for(audio, self.root), **(first or {}), "label": label}
        self._pending.append((split, audio, {"row": row, "extra": extra}, source))

    def add_read(self, split: str, audio: Path, read: Any, annotation: Path) -> None:
        """Queue a row labelled ``read(annotation)``; an annotation it cannot read (``ValueError``)
        is a problem naming the file, and the row is left out."""
        try:
            label = read(annotation)
        except ValueError as e:
            self.problem(f"{annotation} ({split}): {e}; row left out")
            return
        self.add(split, audio, label, source=annotation.name)

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def _complete(self, headers: dict[Path, Header]) -> None:
        for split, audio, parts, source in self._pending:
            head = headers[audio]
            if head.error:
                self.problem(f"{audio} ({source}, {split}): {head.error}; row left out")
                continue
            row = {**parts["row"], "duration": head.duration, "sample_rate": head.sample_rate,
                   "num_samples": head.num_samples, "bit_depth": head.bit_depth}
            row.update(parts["extra"])
            if "bitrate" in row and row["bitrate"] is None:
                row["bitrate"] = round(audio.stat().st_size * 8 / head.duration)
            row["channels"] = head.channels
            self.rows[split].append(row)
        self._pending.clear()

    def write(self, options: dict[str, Any] | None = None) -> PrepareResult:
        """Read the headers, write the three JSONL files and the manifest."""
        self._complete(read_headers(p for _, p, _, _ in self._pending))
        for split in SPLITS:
            if not self.rows[split]:
                raise UserError(f"{self.prefix}: no usable {split} rows ({len(self.problems)} "
                                f"problems, first: {self.problems[:1]}); check the raw folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        files = {}
        for split in SPLITS:
            files[split] = self.out_dir / f"{self.prefix}.{split}.jsonl"
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows[split])
            atomic_write_bytes(files[split], text.encode())
        result = PrepareResult(self.out_dir, self.prefix, files,
                               {s: len(self.rows[s]) for s in SPLITS}, self.problems, self.notes)
        atomic_write_json(self.out_dir / f"{self.prefix}.prepare.json",
                          {"prefix": self.prefix, "counts": result.counts, "options": options or {},
                           "notes": self.notes, "problems": self.problems,
                           "generator": "mirprobe datasets prepare"})
        return result


@dataclass
class PrepareResult:
    """What a preparer wrote."""

    folder: Path
    prefix: str
    files: dict[str, Path]
    counts: dict[str, int]
    problems: list[str]
    notes: list[str]

    def summary(self) -> str:
        counts = " / ".join(f"{self.counts[s]} {s}" for s in SPLITS)
        lines = [f"wrote {self.folder}{os.sep}{self.prefix}.{{train,val,test}}.jsonl: {counts}"]
        lines += [f"note: {n}" for n in self.notes]
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s) (also in {self.prefix}.prepare.json):")
            lines += [f"  {p}" for p in self.problems[:30]]
            if len(self.problems) > 30:
                lines.append(f"  … and {len(self.problems) - 30} more")
        return "\n".join(lines)

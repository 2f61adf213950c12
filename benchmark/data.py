"""Datasets in MARBLE v2's JSONL format: ``<Prefix>.{train,val,test}.jsonl``.

Each line is a JSON object with ``audio_path`` and ``label`` and optionally ``duration``,
``sample_rate``, ``num_samples``, ``bit_depth``, ``channels`` and ``ori_uid``. A relative
``audio_path`` is resolved against an explicit ``audio_root``, else against the JSONL's folder
and then each of its ancestors (MARBLE writes paths relative to the folder above ``data/``).
Rows that cannot be used are returned as :class:`Problem` entries, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirprobe.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    """One usable JSONL row."""

    audio_path: Path  # resolved
    label: Any
    split: str
    source: Path  # the JSONL file
    line: int  # 1-based line number
    uid: str  # ori_uid, else the resolved audio path
    duration: float | None = None
    written: str | None = None  # audio_path as the row gives it

    def missing(self, audio_root: Path | None = None) -> str | None:
        """Why the audio file is missing — the row's path and every place looked — or None."""
        if self.audio_path.exists():
            return None
        raw = self.written if self.written is not None else str(self.audio_path)
        places = ", ".join(str(p) for p in audio_candidates(raw, self.source, audio_root))
        return (f"audio_path {raw!r} not found (looked for {places}); fix the path in the row "
                "or set audio_root")

    @property
    def key(self) -> str:
        return str(self.audio_path)


@dataclass(frozen=True)
class Problem:
    """A row or item that could not be used, with what was done about it."""

    source: str
    line: int | None
    reason: str
    audio_path: str | None = None

    def describe(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


def split_files(folder: Path, prefix: str) -> dict[str, Path]:
    """The three JSONL files of a dataset; a clear error when the folder or a file is missing."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"dataset folder {folder} does not exist; set data_root or the task's "
                        f"'data' to the folder holding {prefix}.train.jsonl")
    files = {s: folder / f"{prefix}.{s}.jsonl" for s in SPLITS}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        present = sorted(p.name for p in folder.glob("*.jsonl"))[:8]
        raise UserError(f"{folder}: missing {', '.join(missing)}; found {present or 'no JSONL files'} "
                        f"(set the task's 'jsonl' prefix to match)")
    return files


def audio_candidates(raw: str, source: Path, audio_root: Path | None) -> list[Path]:
    """Every place :func:`resolve_audio` looks for a row's ``audio_path``, in order."""
    p = Path(raw).expanduser()
    if p.is_absolute():
        return [p]
    if audio_root is not None:
        return [Path(os.path.abspath(Path(audio_root).expanduser() / p))]
    folder = Path(os.path.abspath(source)).parent
    return [Path(os.path.abspath(base / p)) for base in (folder, *folder.parents)]


def resolve_audio(raw: str, source: Path, audio_root: Path | None,
                  bases: dict[str, Path] | None = None) -> Path:
    """Resolve a row's ``audio_path`` (see module docstring); unresolvable → the JSONL-relative path.

    ``bases`` caches, per first path component, the ancestor that worked, so a large JSONL costs
    one ancestor search per top folder instead of one per row.
    """
    p = Path(raw).expanduser()
    if p.is_absolute():
        return p
    if audio_root is not None:
        return Path(os.path.abspath(Path(audio_root).expanduser() / p))
    folder = Path(os.path.abspath(source)).parent
    top = p.parts[0] if p.parts else ""
    if bases is not None and top in bases and (bases[top] / p).exists():
        return Path(os.path.abspath(bases[top] / p))
    for base in (folder, *folder.parents):
        if (base / p).exists():
            if bases is not None:
                bases[top] = base
            return Path(os.path.abspath(base / p))
    return Path(os.path.abspath(folder / p))


def read_jsonl(path: Path, split: str, audio_root: Path | None = None) -> tuple[list[Item], list[Problem]]:
    """Parse one JSONL file into items and problems (bad JSON, missing keys)."""
    items: list[Item] = []
    problems: list[Problem] = []
    bases: dict[str, Path] = {}
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            if not text.strip():
                continue
            item = _parse_row(text, path, n, split, audio_root, bases)
            (problems if isinstance(item, Problem) else items).append(item)
    return items, problems


def _parse_row(text: str, path: Path, n: int, split: str, audio_root: Path | None,
               bases: dict[str, Path]) -> Item | Problem:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        return Problem(str(path), n, f"not valid JSON ({e.msg}); row skipped")
    if not isinstance(row, dict):
        return Problem(str(path), n, "row is not a JSON object; row skipped")
    for key in ("audio_path", "label"):
        if key not in row or row[key] is None:
            return Problem(str(path), n, f"row has no {key!r}; row skipped", row.get("audio_path"))
    audio = resolve_audio(str(row["audio_path"]), path, audio_root, bases)
    uid = row.get("ori_uid")
    duration = row.get("duration")
    return Item(audio, row["label"], split, path, n, str(uid) if uid is not None else str(audio),
                float(duration) if isinstance(duration, (int, float)) else None,
                str(row["audio_path"]))


@dataclass
class Dataset:
    """The three splits of one task's data, with every problem found while reading."""

    name: str
    folder: Path
    splits: dict[str, list[Item]]
    problems: list[Problem]
    audio_root: Path | None = None

    def all_items(self) -> list[Item]:
        return [it for s in SPLITS for it in self.splits[s]]

    def digest(self) -> str:
        """Content address of the rows (paths, labels, uids), for run-record ids."""
        h = hashlib.sha256()
        for it in self.all_items():
            h.update(json.dumps([it.split, it.key, it.label, it.uid], sort_keys=True).encode())
        return h.hexdigest()[:16]


def load_dataset(folder: Path, prefix: str, audio_root: Path | None = None) -> Dataset:
    """Read ``<folder>/<prefix>.{train,val,test}.jsonl``."""
    files = split_files(folder, prefix)
    splits: dict[str, list[Item]] = {}
    problems: list[Problem] = []
    for split, path in files.items():
        splits[split], found = read_jsonl(path, split, audio_root)
        problems += found
    for split in SPLITS:
        if not splits[split]:
            raise UserError(f"{files[split]}: no usable rows; check the file")
    return Dataset(prefix, Path(folder), splits, problems, audio_root)

"""Run records on disk: :class:`RecordStore` keeps one ``<id>.json`` per probe job (the format,
and that of the test predictions beside it, is :mod:`mirprobe.record`'s).

Records are content-addressed: a record's id is a digest of the job's identity
(:func:`mirprobe.jobs.job_identity`), so a re-run finds it and does nothing, and a changed config
writes a new record. Records are never overwritten, except one of another schema, which the
store treats as absent.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.locks import hold
from mirprobe.record import Record, RecordFormatError
from mirprobe.workfolder import atomic_write_bytes, atomic_write_json  # noqa: F401 - callers' old home


def record_id(identity: dict[str, Any]) -> str:
    """Content address of a probe job."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def versions() -> dict[str, str]:
    import mir_eval
    import sklearn
    import torch

    import mirprobe

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "sklearn": sklearn.__version__,
            "mir_eval": mir_eval.__version__, "mirprobe": mirprobe.__version__}


class RecordStore:
    """Run records under ``<work_dir>/records``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, rid: str) -> Path:
        return self.root / f"{rid}.json"

    def get(self, rid: str) -> Record | None:
        """The record ``rid``; None when there is none, or only one of another schema."""
        p = self.path(rid)
        if not p.exists():
            return None
        try:
            return Record.read(p)
        except RecordFormatError:
            return None

    @contextmanager
    def claim(self, rid: str) -> Iterator[Record | None]:
        """Hold record ``rid``'s lock: yields the record if it exists (made meanwhile by another
        process), else None, and the caller then makes it and puts it before leaving."""
        with hold(self.root / rid, f"run record {rid}"):
            yield self.get(rid)

    def put(self, record: Record) -> Path:
        """Write a new record (append-only: a readable record of that id is left untouched)."""
        p = self.path(record.id)
        if self.get(record.id) is None:
            atomic_write_bytes(p, record.to_json().encode())
        return p

    def all(self) -> list[Record]:
        """Every readable record, in the order they were written (a run's models and tasks in
        its config's order); records of another schema are skipped with a one-line note on
        stderr."""
        if not self.root.exists():
            return []
        paths = sorted(self.root.glob("*.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        records, stale = [], []
        for p in paths:
            try:
                records.append(Record.read(p))
            except RecordFormatError as e:
                stale.append(str(e))
        if stale:
            print(f"mirprobe: skipped {len(stale)} run record(s) in {self.root} that this version "
                  f"cannot read (first: {stale[0]})", file=sys.stderr)
        return records

    def predictions_path(self, record: Record) -> Path:
        return self.root / record.predictions

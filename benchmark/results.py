"""Run records on disk, and the saved test predictions beside them.

:class:`RecordStore` keeps one ``<id>.json`` per probe job (the format is
:mod:`mirprobe.record`'s), content-addressed: its id is a digest of the job's identity
(:func:`mirprobe.jobs.job_identity`), so a re-run finds it and does nothing, and a changed config
writes a new record. Records are never overwritten, except one of another schema, which the
store treats as absent.

Predictions are an ``.npz`` (loaded with ``allow_pickle=False``) holding ``uids`` and
``labels`` (JSON strings, one per test track) and, per layer index ``k``, either
``layer{k}`` (an array ``[tracks, out]`` or ``[seeds, tracks, out]``) or ``layer{k}.json``
(JSON-encoded per-track predictions, e.g. beat times).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.locks import hold
from mirprobe.record import Record, RecordFormatError, jsonable


def record_id(identity: dict[str, Any]) -> str:
    """Content address of a probe job."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=jsonable) + "\n").encode())


def versions() -> dict[str, str]:
    import mir_eval
    import sklearn
    import torch

    import mirprobe

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "sklearn": sklearn.__version__,
            "mir_eval": mir_eval.__version__, "mirprobe": mirprobe.__version__}


def probe_precision(device: Any) -> str:
    """The precision probes train in on ``device`` (float32; TF32 matmuls when torch allows them)."""
    import torch

    matmul = torch.get_float32_matmul_precision()
    tf32 = str(device).startswith("cuda") and (matmul != "highest" or torch.backends.cuda.matmul.allow_tf32)
    return "float32 (tf32 matmuls)" if tf32 else "float32"


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
        its config's order); records of another schema are skipped with a one-line note."""
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


def save_predictions(path: Path, per_layer: dict[int, Any], labels: Sequence[Any],
                     uids: Sequence[str]) -> None:
    """Atomically save per-track test predictions of each layer's chosen head(s)."""
    arrays: dict[str, np.ndarray] = {
        "uids": np.asarray([str(u) for u in uids], dtype=str),
        "labels": np.asarray([json.dumps(lab, default=jsonable) for lab in labels], dtype=str),
    }
    for k, pred in per_layer.items():
        if isinstance(pred, np.ndarray):
            arrays[f"layer{k}"] = pred.astype(np.float32)
        else:
            arrays[f"layer{k}.json"] = np.asarray(json.dumps(pred, default=jsonable))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_predictions(path: Path) -> tuple[dict[int, Any], list[Any], list[str]]:
    """Inverse of :func:`save_predictions`: ``(per_layer, labels, uids)``."""
    with np.load(path, allow_pickle=False) as z:
        labels = [json.loads(s) for s in z["labels"]]
        uids = [str(u) for u in z["uids"]]
        per_layer: dict[int, Any] = {}
        for key in z.files:
            if key.startswith("layer"):
                stem = key.removesuffix(".json")
                k = int(stem[len("layer"):])
                per_layer[k] = json.loads(str(z[key])) if key.endswith(".json") else z[key]
    return per_layer, labels, uids

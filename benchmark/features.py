"""The feature cache: one entry per (model fingerprint, dataset items, view, windowing).

Layout of a complete entry ``<root>/<entry_id>/``::

    meta.json       what made it: model identity, view, window, items, shapes, versions; for a
                    model whose layers differ in width, ``layer_dims`` (true widths) and
                    ``layer_rates`` (native vectors per second of each layer)
    features.npy    float16 [rows, layers, dim], memory-mapped on read
    offsets.npy     int64 [items + 1]: item i owns rows offsets[i]:offsets[i+1]
    failed.json     items that could not be extracted: [{index, path, reason}]

Rows are windows (clip view: each window pooled over frames) or frames (frame view:
the frames of a track's consecutive windows). An entry is written under
``<entry_id>.partial/`` in chunks of items, each chunk file written atomically, and
renamed to ``<entry_id>/`` only when every chunk is there: a reader sees a complete
entry or none, and an interrupted extraction resumes from its finished chunks.
Layers narrower than the entry's width are zero-padded at the end (one array, one memory map); the
probes standardise padded columns to 0, so they add nothing to a head's output. The padding costs
disk, memory and the heads' first matrix product: for musicnn 6,024 stored columns per clip row
for 2,509 true ones (2.4×), 2,244 per frame row for 753 (3.0×).
Nothing here is ever unpickled (``np.load(..., allow_pickle=False)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.locks import hold


@dataclass
class FeatureEntry:
    """A complete feature entry (or an in-memory one built by :meth:`from_arrays`)."""

    features: np.ndarray  # [rows, layers, dim] float16 (np.memmap when read from disk)
    offsets: np.ndarray  # [items + 1] int64
    meta: dict[str, Any]
    path: Path | None = None
    failed: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_arrays(cls, features: np.ndarray, offsets: np.ndarray, *, frame_rate: float,
                    view: str = "clip", layer_names: list[str] | None = None,
                    items: list[str] | None = None) -> FeatureEntry:
        n_items = len(offsets) - 1
        meta = {"id": "memory", "view": view, "frame_rate": frame_rate,
                "layer_names": layer_names or [f"layer{i}" for i in range(features.shape[1])],
                "items": items or [f"item{i}" for i in range(n_items)]}
        return cls(np.asarray(features), np.asarray(offsets, dtype=np.int64), meta)

    @classmethod
    def open(cls, path: Path) -> FeatureEntry:
        meta = json.loads((path / "meta.json").read_text())
        features = np.load(path / "features.npy", mmap_mode="r", allow_pickle=False)
        offsets = np.load(path / "offsets.npy", allow_pickle=False)
        failed_path = path / "failed.json"
        failed = json.loads(failed_path.read_text()) if failed_path.exists() else []
        return cls(features, offsets, meta, path, failed)

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def view(self) -> str:
        return self.meta["view"]

    @property
    def frame_rate(self) -> float:
        return float(self.meta["frame_rate"])

    @property
    def layer_names(self) -> list[str]:
        return list(self.meta["layer_names"])

    @property
    def items(self) -> list[str]:
        """Item keys (resolved audio paths) in row order."""
        return list(self.meta["items"])

    @property
    def layer_dims(self) -> list[int]:
        """True width of each layer (columns past it are zero padding)."""
        return [int(d) for d in self.meta.get("layer_dims") or [self.dim] * self.num_layers]

    @property
    def num_layers(self) -> int:
        return int(self.features.shape[1])

    @property
    def dim(self) -> int:
        return int(self.features.shape[2])

    def rows(self, i: int) -> slice:
        """Rows of item ``i`` (empty when it failed)."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def index(self) -> dict[str, int]:
        """Item key → item index."""
        return {key: i for i, key in enumerate(self.meta["items"])}


# --------------------------------------------------------------------------- extraction

VIEWS = ("clip", "frame")


def entry_identity(extractor: Any, keys: list[str], view: str, window_s: float,
                   precision: str = "float32") -> dict[str, Any]:
    """What determines an entry: the model, the items (path, size, mtime), the view, the window
    and the compute precision."""
    import os

    stats = []
    for key in keys:
        try:
            st = os.stat(key)
            stats.append([key, st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append([key, None, None])
    identity = {"model": extractor.identity(), "view": view, "window_s": float(window_s),
                "items": stats, "format": 2}  # 2: streamed decoding
    if precision != "float32":  # float32 entries keep the ids they had before precision counted
        identity["precision"] = precision
    return identity


def entry_id(identity: dict[str, Any]) -> str:
    import hashlib

    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class FeatureStore:
    """Feature entries under ``<work_dir>/features``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def final_path(self, eid: str) -> Path:
        return self.root / eid

    def partial_path(self, eid: str) -> Path:
        return self.root / f"{eid}.partial"

    def get(self, eid: str) -> FeatureEntry | None:
        path = self.final_path(eid)
        return FeatureEntry.open(path) if (path / "meta.json").exists() else None

    def extract(self, extractor: Any, keys: list[str], *, view: str = "clip",
                window_s: float | None = None, batch_size: int = 16, num_workers: int = 0,
                chunk_items: int = 64, dtype: str = "auto", progress: bool = True,
                rank: int = 0, world_size: int = 1, barrier: Callable[[], None] | None = None,
                label: str = "", identity: dict[str, Any] | None = None,
                deform: Any = None) -> FeatureEntry | None:
        """Extract (or find) the entry for ``keys`` (audio paths). Resumes finished chunks.

        With ``world_size > 1`` this rank extracts chunks ``k % world_size == rank``; every rank
        must call this with the same arguments. Given ``barrier`` (a collective sync), rank 0
        publishes the entry once all ranks are done and every rank returns it; without one,
        ranks return None after their own share (a later one-process call publishes the entry).

        Any number of independent processes may call this for one entry: its lock (held by rank
        0 for all ranks of a job) lets one extract it while the others wait, then find it.

        ``identity``: the entry's :func:`entry_identity` when the caller has computed it (a run
        computes it once, for the job's id too); else it is computed here.

        ``deform``: extract the audio under a :class:`mirprobe.deform.Deformation` (robustness);
        the caller's ``identity`` must then name it (its ``deformation`` key).
        """
        from mirprobe.extraction import precision

        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        window_s = float(window_s or extractor.context_s)
        if deform is not None and (identity or {}).get("deformation") != deform.identity():
            raise ValueError("a deformed entry's identity must hold its deformation")
        if identity is None:
            identity = entry_identity(extractor, keys, view, window_s,
                                      precision(extractor.device, dtype))
        eid = entry_id(identity)
        num_chunks = len(_chunks(len(keys), chunk_items))
        job = dict(extractor=extractor, keys=keys, view=view, window_s=window_s,
                   batch_size=batch_size, num_workers=num_workers, chunk_items=chunk_items,
                   dtype=dtype, progress=progress, label=label, deform=deform)
        if world_size == 1:
            found = self.get(eid)
            if found is not None:
                return found
            with hold(self.final_path(eid), f"feature entry {eid} ({label or extractor.name})"):
                found = self.get(eid)  # published by another process while this one waited
                if found is None:
                    self._extract_share(eid, rank, world_size, **job)
                    found = self.finalize(eid, identity, extractor, keys, num_chunks, view, window_s)
            return found
        if barrier is None:  # no collective: this rank's share only; a later call publishes
            if self.get(eid) is None:
                self._extract_share(eid, rank, world_size, **job)
            return None
        # Rank 0 holds the entry's lock for all ranks: other jobs on this work folder wait, and
        # every rank sees the same published-or-not state (nobody else can publish meanwhile).
        with hold(self.final_path(eid), f"feature entry {eid}") if rank == 0 else nullcontext():
            barrier()
            if self.get(eid) is None:
                self._extract_share(eid, rank, world_size, **job)
                barrier()  # every rank's chunks are on disk
                if rank == 0:
                    self.finalize(eid, identity, extractor, keys, num_chunks, view, window_s)
            barrier()  # the entry is published
        return self.get(eid)

    def _extract_share(self, eid: str, rank: int, world_size: int, *, extractor: Any,
                       keys: list[str], chunk_items: int, **options: Any) -> None:
        """Extract this rank's missing chunks into ``<eid>.partial/`` (kept from earlier runs)."""
        from mirprobe.extraction import run_chunks

        partial = self.partial_path(eid)
        partial.mkdir(parents=True, exist_ok=True)
        chunks = _chunks(len(keys), chunk_items)
        todo = [k for k in range(len(chunks)) if k % world_size == rank and not _chunk_file(partial, k).exists()]
        run_chunks(extractor, keys, chunks, todo, partial, **options)

    def finalize(self, eid: str, identity: dict[str, Any], extractor: Any, keys: list[str],
                 num_chunks: int, view: str, window_s: float) -> FeatureEntry:
        """Join the chunk files into one memory-mappable array and publish the entry atomically.

        The caller holds the entry's lock (:func:`mirprobe.locks.hold` of its final path)."""
        import os

        from mirprobe.results import versions
        from mirprobe.workfolder import atomic_write_json

        final = self.final_path(eid)
        if (final / "meta.json").exists():
            return FeatureEntry.open(final)
        partial = self.partial_path(eid)
        missing = [k for k in range(num_chunks) if not _chunk_file(partial, k).exists()]
        if missing:
            raise RuntimeError(f"feature entry {eid}: chunks {missing[:5]} not extracted yet")
        counts, failed, layers, dim = [], [], None, None
        for k in range(num_chunks):
            with np.load(_chunk_file(partial, k), allow_pickle=False) as z:
                counts.append(z["counts"])
                failed += json.loads(str(z["failed"]))
                if z["features"].shape[0]:
                    layers, dim = z["features"].shape[1:]
        counts_all = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts_all)]).astype(np.int64)
        if layers is None:
            layers = len(extractor.view_layers(view))
            dim = extractor.dim if view == "frame" else extractor.clip_dim
        tmp = partial / "features.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                        shape=(int(offsets[-1]), layers, dim))
        row = 0
        for k in range(num_chunks):
            with np.load(_chunk_file(partial, k), allow_pickle=False) as z:
                part = z["features"]
                if len(part):  # a chunk whose items all failed holds no rows (and no shape)
                    out[row: row + len(part)] = part
                    row += len(part)
        out.flush()
        del out
        np.save(partial / "offsets.npy", offsets)
        atomic_write_json(partial / "failed.json", failed)
        meta = {"id": eid, "view": view, "window_s": window_s, "frame_rate": extractor.frame_rate,
                "sample_rate": extractor.sample_rate, "layer_names": extractor.view_layers(view),
                "model_name": extractor.name, "model": identity["model"], "items": list(keys),
                "precision": identity.get("precision", "float32"),
                "shape": [int(offsets[-1]), int(layers), int(dim)], "versions": versions(),
                **({"deformation": identity["deformation"]} if "deformation" in identity else {}),
                **layer_layout(extractor, view, int(dim))}
        atomic_write_json(partial / "meta.json", meta)
        for k in range(num_chunks):
            _chunk_file(partial, k).unlink()
        os.replace(partial, final)
        return FeatureEntry.open(final)


def layer_layout(extractor: Any, view: str, width: int) -> dict[str, Any]:
    """Meta of a model whose layers differ in width or rate: each layer's true width (the rest of
    its ``width`` columns are zeros) and native rate. Empty for uniform models, whose meta stays
    as it was."""
    dims = [int(d) for d in extractor.layer_dims(view)]
    rates = extractor.layer_rates()
    if all(d == width for d in dims) and len(set(rates.values())) <= 1:
        return {}
    return {"layer_dims": dims,
            "layer_rates": [float(rates[name]) for name in extractor.view_layers(view)]}


def _chunks(n: int, chunk_items: int) -> list[list[int]]:
    """Item indices of each chunk."""
    return [list(range(s, min(s + chunk_items, n))) for s in range(0, n, chunk_items)]


def _chunk_file(partial: Path, k: int) -> Path:
    return partial / f"chunk{k:05d}.npz"

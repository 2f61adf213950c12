"""The feature cache: one entry per (model fingerprint, dataset items, view, windowing).

Layout of a complete entry ``<root>/<entry_id>/``::

    meta.json       what made it: model identity, view, window, items, shapes, versions
    features.npy    float16 [rows, layers, dim], memory-mapped on read
    offsets.npy     int64 [items + 1]: item i owns rows offsets[i]:offsets[i+1]
    failed.json     items that could not be extracted: [{index, path, reason}]

Rows are windows (clip view: each window pooled over frames) or frames (frame view:
the frames of a track's consecutive windows). An entry is written under
``<entry_id>.partial/`` in chunks of items, each chunk file written atomically, and
renamed to ``<entry_id>/`` only when every chunk is there: a reader sees a complete
entry or none, and an interrupted extraction resumes from its finished chunks.
Nothing here is ever unpickled (``np.load(..., allow_pickle=False)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


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

"""What a probe job reads: split rows and targets, standardisation, resident or streamed features.

Features are standardised per layer and dimension with train statistics only (z-scores); columns
constant on train (the zero padding of a narrower layer, see ``FeatureEntry.layer_dims``) stay 0. MARBLE
feeds raw hidden states; the layers of a transformer differ in scale by orders of magnitude, so
one learning-rate grid fits every layer only after standardisation, which makes the per-layer
comparison fairer and linear probes converge to the logistic-regression optimum.

Features stay on the device (float16) when they fit in the memory budget; otherwise they are
streamed from the feature file in large chunks (read with plain file reads, so that the pages of
the memory map never accumulate in the process), chunk order and rows within a chunk shuffled.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from mirprobe.errors import UserError

STREAM_SHARE = 0.25  # budget share of one streamed chunk (a chunk, its shuffled copy, the carry)
STEP_BYTES = 32 << 20  # float32 bytes of one evaluation / statistics sub-batch


@dataclass
class SplitRows:
    """One split as the engine sees it: its feature rows, tracks and scored units."""

    name: str
    rows: np.ndarray  # [R] int64 feature rows, track by track
    row_track: torch.Tensor  # [R] int64 track of each row
    track_unit: torch.Tensor  # [T] int64 scored unit (song when grouping by uid) of each track
    track_lengths: list[int]  # rows per track
    track_targets: torch.Tensor | None  # [T, ...] clip view
    row_targets: torch.Tensor | None  # [R, out] frame view
    unit_targets: torch.Tensor | None  # [U, ...] clip view targets of scored units
    track_labels: list  # raw labels of the tracks
    unit_labels: list
    unit_uids: list[str]

    @property
    def num_tracks(self) -> int:
        return len(self.track_lengths)

    @property
    def num_units(self) -> int:
        return len(self.unit_labels)


def build_split(task, entry, name: str, split, group: bool, device: torch.device) -> SplitRows:  # noqa: ANN001
    """Rows, targets and units of one split; tracks without feature rows are left out."""
    rows, row_track, lengths, labels, uids = [], [], [], [], []
    for item, label, uid in zip(split.items, split.labels, split.uids, strict=True):
        sl = entry.rows(int(item))
        if sl.stop <= sl.start:
            continue
        row_track.append(np.full(sl.stop - sl.start, len(lengths), dtype=np.int64))
        rows.append(np.arange(sl.start, sl.stop, dtype=np.int64))
        lengths.append(sl.stop - sl.start)
        labels.append(label)
        uids.append(str(uid))
    if not lengths:
        raise UserError(f"the {name} split has no track with features; re-run extraction for it")
    if len(lengths) < len(split.items):
        warnings.warn(f"{name}: {len(split.items) - len(lengths)} tracks have no features and are "
                      "left out", stacklevel=2)
    unit_of: dict[str, int] = {}
    track_unit = [unit_of.setdefault(u, len(unit_of)) if group else i for i, u in enumerate(uids)]
    first = {}
    for t, u in enumerate(track_unit):
        first.setdefault(u, t)
    unit_tracks = [first[u] for u in range(len(first))]
    split_rows = SplitRows(
        name=name, rows=np.concatenate(rows),
        row_track=torch.from_numpy(np.concatenate(row_track)).to(device),
        track_unit=torch.tensor(track_unit, dtype=torch.int64, device=device),
        track_lengths=lengths, track_targets=None, row_targets=None, unit_targets=None,
        track_labels=labels, unit_labels=[labels[t] for t in unit_tracks],
        unit_uids=[uids[t] for t in unit_tracks])
    if entry.view == "frame" or task.view == "frame":
        frames = [_encode(task.encode_frames, name, lab, n, entry.frame_rate)
                  for lab, n in zip(labels, lengths, strict=True)]
        split_rows.row_targets = torch.from_numpy(np.concatenate(frames)).float().to(device)
    else:
        targets = torch.from_numpy(np.stack([_encode(task.encode, name, lab) for lab in labels]))
        split_rows.track_targets = targets.to(device)
        split_rows.unit_targets = targets[unit_tracks].to(device)
    return split_rows


def _encode(fn, split: str, label, *args):  # noqa: ANN001, ANN202
    try:
        return np.asarray(fn(label, *args))
    except ValueError as e:
        raise UserError(f"{split} split: cannot encode label {label!r} ({e}); fix the label or "
                        "the task's classes") from e


def default_budget(device: torch.device) -> int:
    """Bytes of features kept resident when no budget is configured: half the free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return 4 << 30


class RowReader:
    """Reads rows ``[a, b)`` of a ``[rows, L, D]`` array without keeping memory-map pages."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = features
        self.shape = features.shape
        self.row_bytes = int(np.prod(features.shape[1:])) * features.dtype.itemsize
        filename = getattr(features, "filename", None)
        offset = getattr(features, "offset", None)
        base_ok = isinstance(features, np.memmap) and filename and offset is not None
        self.path = str(filename) if base_ok and features.flags.c_contiguous else None
        self.offset = int(offset or 0)

    def read(self, a: int, b: int) -> np.ndarray:
        if self.path is None:
            return np.ascontiguousarray(self.features[a:b])
        out = np.empty((b - a, *self.shape[1:]), dtype=self.features.dtype)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset + a * self.row_bytes)
            f.readinto(memoryview(out).cast("B"))
        return out


class FeatureSource:
    """The features of the needed rows, resident on the device or streamed in chunks.

    Batches come out as float32 z-scores ``[B, L, D]`` with the positions of their rows in the
    split's row array (to look targets up).
    """

    def __init__(self, features: np.ndarray, needed: np.ndarray, device: torch.device,
                 budget: int, chunk_bytes: int | None = None) -> None:
        self.reader = RowReader(features)
        self.device = device
        self.num_layers, self.dim = features.shape[1], features.shape[2]
        row_bytes = self.num_layers * self.dim * 2
        self.budget = budget
        self.needed = needed
        self.resident = len(needed) * row_bytes <= budget
        self.step_bytes = min(STEP_BYTES, max(1, int(budget * STREAM_SHARE)))
        self.chunk_rows = max(1, int((chunk_bytes or budget * STREAM_SHARE) // row_bytes))
        self.mean = torch.zeros(self.num_layers, self.dim, device=device)
        self.inv_std = torch.ones(self.num_layers, self.dim, device=device)
        self.widths = [self.dim] * self.num_layers
        self.data: torch.Tensor | None = None  # resident z-scores, once the statistics are known

    def _load_resident(self) -> None:
        """The needed rows as z-scores on the device: float32 when that fits the budget, else
        float16 (z-scores round better than raw values of a large mean)."""
        self.index = np.unique(self.needed)
        shape = (len(self.index), self.num_layers, self.dim)
        wide = len(self.index) * self.num_layers * self.dim * 4 <= self.budget
        self.data = torch.empty(shape, dtype=torch.float32 if wide else torch.float16,
                                device=self.device)
        for pos, (a, b) in _runs(self.index, self.chunk_rows):
            raw = torch.from_numpy(self.reader.read(a, b)).to(self.device)
            self.data[pos: pos + b - a] = self._z(raw)

    def _chunks(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(positions, rows)`` in chunks of the split's rows, in row order: resident z-scores,
        or raw rows read from the file."""
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        # Resident copies are bounded too: a split's rows are gathered a chunk at a time.
        resident = self.data is not None
        span = min(self.chunk_rows, 8 * self.step_rows()) if resident else self.chunk_rows
        start = 0
        while start < len(rows):
            a = sorted_rows[start]
            stop = int(np.searchsorted(sorted_rows, a + span, side="left"))
            if resident:
                loc = torch.from_numpy(np.searchsorted(self.index, sorted_rows[start:stop]))
                x = self.data[loc.to(self.device)]
            else:
                block = self.reader.read(int(a), int(sorted_rows[stop - 1]) + 1)
                x = torch.from_numpy(block[sorted_rows[start:stop] - a]).to(self.device)
            yield order[start:stop], x
            start = stop

    @contextmanager
    def reading(self, features: np.ndarray) -> Iterator[FeatureSource]:
        """Within the block, rows come from ``features`` (the same layers and width: e.g. the
        same tracks' features under a deformation), streamed and standardised with this source's
        train statistics; the source is restored on leaving."""
        if tuple(features.shape[1:]) != (self.num_layers, self.dim):
            raise UserError(f"features of shape {tuple(features.shape[1:])} cannot be read "
                            f"through a source of {self.num_layers} layers × {self.dim}")
        saved = self.reader, self.data
        self.reader, self.data = RowReader(features), None
        try:
            yield self
        finally:
            self.reader, self.data = saved

    def _z(self, x: torch.Tensor) -> torch.Tensor:
        """Raw rows → float32 z-scores (one new tensor, updated in place)."""
        return x.to(torch.float32, copy=True).sub_(self.mean).mul_(self.inv_std)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Rows as this source yields them (resident z-scores, or raw streamed rows) → float32
        z-scores."""
        return x.float() if self.data is not None else self._z(x)

    def fit_standardiser(self, rows: np.ndarray) -> None:
        """Per layer and dimension mean and std over ``rows`` (the train split only); then the
        resident rows are standardised once, so that batches are plain gathers."""
        total = torch.zeros(self.num_layers, self.dim, dtype=torch.float64, device=self.device)
        sq = torch.zeros_like(total)
        self.data = None
        for _, x in self._raw(rows, self.step_rows() // 2):
            x = x.double()
            total += x.sum(0)
            sq += (x * x).sum(0)
        mean = total / len(rows)
        var = (sq / len(rows) - mean * mean).clamp_min(0)
        self.mean = mean.float()
        # A column constant on train (a layer's zero padding, a dead unit) is set to 0, not blown
        # up: 1/std of a constant would turn any later variation into huge z-scores.
        std = var.sqrt().float()
        self.inv_std = torch.where(std > 1e-6, 1.0 / std.clamp_min(1e-6), torch.zeros_like(std))
        # Trailing columns that are 0 in every z-score (a narrower layer's padding) are left out
        # of the heads' products.
        live = (self.inv_std > 0).cpu().numpy()
        self.widths = [int(np.flatnonzero(c)[-1]) + 1 if c.any() else 1 for c in live]
        if self.resident:
            self._load_resident()

    def train_batches(self, rows: np.ndarray, batch_size: int,
                      gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled batches ``(positions, x)``; streamed: chunk order and rows within shuffled."""
        if self.data is not None:
            perm = torch.randperm(len(rows), generator=gen)
            loc = torch.from_numpy(np.searchsorted(self.index, rows))
            for i in range(0, len(rows), batch_size):
                pos = perm[i: i + batch_size]
                yield pos.to(self.device), self.standardise(self.data[loc[pos].to(self.device)])
            return
        chunks = list(self._chunk_bounds(rows))
        carry_pos, carry_x = None, None
        for c in torch.randperm(len(chunks), generator=gen).tolist():
            pos, x = self._read_chunk(rows, *chunks[c])
            shuffle = torch.randperm(len(pos), generator=gen)
            pos, x = torch.from_numpy(pos)[shuffle].to(self.device), x[shuffle.to(self.device)]
            if carry_pos is not None:
                pos, x = torch.cat([carry_pos, pos]), torch.cat([carry_x, x])
            full = len(pos) - len(pos) % batch_size
            for i in range(0, full, batch_size):
                yield pos[i: i + batch_size], self.standardise(x[i: i + batch_size])
            carry_pos, carry_x = (pos[full:], x[full:]) if full < len(pos) else (None, None)
        if carry_pos is not None:
            yield carry_pos, self.standardise(carry_x)

    def _chunk_bounds(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, int, int]]:
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        start = 0
        while start < len(rows):
            stop = int(np.searchsorted(sorted_rows, sorted_rows[start] + self.chunk_rows))
            yield order, start, stop
            start = stop

    def _read_chunk(self, rows: np.ndarray, order: np.ndarray, start: int,
                    stop: int) -> tuple[np.ndarray, torch.Tensor]:
        sel = rows[order[start:stop]]
        a = int(sel[0])
        block = self.reader.read(a, int(sel[-1]) + 1)
        return order[start:stop], torch.from_numpy(block[sel - a]).to(self.device)

    def step_rows(self) -> int:
        return max(1, self.step_bytes // (self.num_layers * self.dim * 4))

    def _raw(self, rows: np.ndarray, step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for pos, x in self._chunks(rows):
            pos_t = torch.from_numpy(pos).to(self.device)
            for i in range(0, len(pos), max(1, step)):
                yield pos_t[i: i + step], x[i: i + step]

    def ordered(self, rows: np.ndarray,
                max_rows: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every row once, ``(positions, x)`` standardised, in sub-batches of bounded size."""
        step = min(self.step_rows(), max_rows or self.step_rows())
        for pos, x in self._raw(rows, step):
            yield pos, self.standardise(x)


def _runs(index: np.ndarray, max_rows: int) -> Iterator[tuple[int, tuple[int, int]]]:
    """Runs of consecutive rows of sorted ``index`` (at most ``max_rows`` long)."""
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    for s, e in zip(np.r_[0, breaks], np.r_[breaks, len(index)], strict=True):
        for a in range(int(s), int(e), max_rows):
            b = min(int(e), a + max_rows)
            yield a, (int(index[a]), int(index[b - 1]) + 1)

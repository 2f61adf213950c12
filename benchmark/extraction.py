"""Batched feature extraction into the chunks of a cache entry.

Worker processes (a torch DataLoader) decode and resample whole tracks and cut them into
windows; the main process batches windows of equal length across tracks, runs one forward pass
per batch for every hidden state, and writes each finished chunk of items atomically. Memory
stays flat in the track length: only a batch of windows is ever on the device.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from benchmark.audio import load_audio, window_bounds
from benchmark.errors import DataError, UserError

F16_MAX = float(np.finfo(np.float16).max)


def normalize_wave(wave: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per window (Wav2Vec2FeatureExtractor's do_normalize)."""
    return ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32)


class WindowedTracks(Dataset):
    """Item ``j`` → ``(index, [windows], error)`` for the items to extract, decoded in workers."""

    def __init__(self, keys: list[str], indices: list[int], sample_rate: int, window: int,
                 min_samples: int, normalize: bool) -> None:
        self.keys, self.indices = keys, indices
        self.sample_rate, self.window, self.min_samples = sample_rate, window, min_samples
        self.normalize = normalize

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[int, list[np.ndarray] | None, str | None]:
        i = self.indices[j]
        try:
            wave = load_audio(self.keys[i], self.sample_rate)
        except DataError as e:
            return i, None, str(e)
        bounds = window_bounds(len(wave), self.window, self.min_samples)
        if not bounds:
            return i, None, (f"{self.keys[i]}: {len(wave) / self.sample_rate:.3f} s of audio is "
                             f"shorter than one feature frame; item skipped")
        windows = [wave[a:b] for a, b in bounds]
        if self.normalize:
            windows = [normalize_wave(w) for w in windows]
        return i, windows, None


def min_window_samples(extractor: Any) -> int:
    """Fewest samples for which the extractor returns at least one frame."""
    n = 1
    while extractor.num_frames(n) < 1:
        if n > 60 * extractor.sample_rate:  # a broken extractor: let its own checks report it
            return n
        n *= 2
    lo, hi = n // 2, n
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if extractor.num_frames(mid) >= 1 else (mid, hi)
    return hi


def precision(device: torch.device, dtype: str) -> str:
    """The compute precision ``extract.dtype`` means on ``device``: ``auto`` is bfloat16 on CUDA
    and float32 elsewhere; ``bfloat16`` also runs on CPUs (fast where they have bf16 units)."""
    if dtype == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    if dtype == "float16" and device.type != "cuda":
        raise UserError("extract.dtype=float16 needs a CUDA GPU; use bfloat16 or float32 on CPU")
    return dtype


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Autocast to the :func:`precision` of ``dtype`` on ``device`` (nothing for float32)."""
    name = precision(device, dtype)
    if name == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, name))


class _Batcher:
    """Groups windows by length; a full group (or a flush) runs one forward pass."""

    def __init__(self, extractor: Any, view: str, batch_size: int, dtype: str) -> None:
        self.extractor, self.view, self.batch_size, self.dtype = extractor, view, batch_size, dtype
        self.groups: dict[int, list[tuple[int, int, np.ndarray]]] = defaultdict(list)
        self.outputs: dict[int, dict[int, np.ndarray]] = defaultdict(dict)

    def add(self, i: int, w: int, wave: np.ndarray) -> None:
        group = self.groups[len(wave)]
        group.append((i, w, wave))
        if len(group) >= self.batch_size:
            self._run(len(wave))

    def flush(self) -> None:
        for length in list(self.groups):
            self._run(length)

    @torch.inference_mode()
    def _run(self, length: int) -> None:
        group = self.groups.pop(length)
        ex = self.extractor
        waves = torch.from_numpy(np.stack([g[2] for g in group]))
        if ex.device.type == "cuda":  # page-locked: the copy to the GPU runs asynchronously
            waves = waves.pin_memory()
        waves = waves.to(ex.device, non_blocking=True)
        with autocast(ex.device, self.dtype):
            hidden = ex.forward(waves)  # [L, B, F, D]
        out = ex.pool(hidden) if self.view == "clip" else hidden.float()
        out = out.clamp_(-F16_MAX, F16_MAX).to(torch.float16).cpu().numpy()
        for b, (i, w, _) in enumerate(group):
            self.outputs[i][w] = out[:, b]  # clip: [L, Dc]; frame: [L, F, D]


def _rows(parts: dict[int, np.ndarray], view: str) -> np.ndarray:
    """One item's windows → rows ``[rows, L, D]``."""
    ordered = [parts[w] for w in sorted(parts)]
    if view == "clip":
        return np.stack(ordered)
    return np.concatenate([p.transpose(1, 0, 2) for p in ordered])


def _write_chunk(path: Path, rows: list[np.ndarray], counts: list[int], failed: list[dict]) -> None:
    shape_tail = next((r.shape[1:] for r in rows if len(r)), (0, 0))
    feats = np.concatenate(rows) if rows else np.zeros((0, *shape_tail), dtype=np.float16)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, features=feats.astype(np.float16), counts=np.asarray(counts, dtype=np.int64),
                 failed=np.asarray(json.dumps(failed)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_chunks(extractor: Any, keys: list[str], chunks: list[list[int]], todo: list[int],
               partial: Path, *, view: str, window_s: float, batch_size: int, num_workers: int,
               dtype: str, progress: bool, label: str = "") -> None:
    """Extract the chunks ``todo`` (lists of item indices) into ``partial/chunkNNNNN.npz``."""
    if not todo:
        return
    indices = [i for k in todo for i in chunks[k]]
    window = int(round(window_s * extractor.sample_rate))
    dataset = WindowedTracks(keys, indices, extractor.sample_rate, window,
                             min_window_samples(extractor), bool(getattr(extractor, "normalize", False)))
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers,
                        prefetch_factor=4 if num_workers else None, persistent_workers=False)
    batcher = _Batcher(extractor, view, batch_size, dtype)
    chunk_of = {i: k for k in todo for i in chunks[k]}
    remaining = {k: len(chunks[k]) for k in todo}
    expected: dict[int, int] = {}  # windows of each item still in flight
    errors: dict[int, str] = {}
    bar = tqdm(total=len(indices), desc=f"extract {label}".strip(), unit="track", disable=not progress,
               dynamic_ncols=True)

    def finish(i: int) -> None:
        expected.pop(i, None)
        bar.update(1)
        k = chunk_of[i]
        remaining[k] -= 1
        if remaining[k] == 0:
            _finish_chunk(k)

    def _finish_chunk(k: int) -> None:
        rows, counts, failed = [], [], []
        for i in chunks[k]:
            if i in errors:
                counts.append(0)
                failed.append({"index": i, "path": keys[i], "reason": errors[i]})
            else:
                r = _rows(batcher.outputs.pop(i), view)
                rows.append(r)
                counts.append(len(r))
        _write_chunk(partial / f"chunk{k:05d}.npz", rows, counts, failed)

    def settle() -> None:
        for i in [i for i, n in expected.items() if len(batcher.outputs.get(i, ())) == n]:
            finish(i)

    current = None
    for i, windows, error in loader:
        if chunk_of[i] != current:  # batches never span chunks: a chunk's rows do not depend on
            batcher.flush()  # which other chunks this process runs (ranks, resumed runs)
            settle()
            current = chunk_of[i]
        if error is not None:
            errors[i] = error
            finish(i)
            continue
        expected[i] = len(windows)
        for w, wave in enumerate(windows):
            batcher.add(i, w, wave)
        settle()
        if len(batcher.groups) > 0 and sum(len(g) for g in batcher.groups.values()) > 4 * batch_size:
            batcher.flush()  # many odd-length tails pending: run them rather than hold them
            settle()
    batcher.flush()
    settle()
    bar.close()

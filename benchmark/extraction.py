"""Batched feature extraction into the chunks of a cache entry.

Worker processes (a torch DataLoader) decode and resample whole tracks and cut them into
windows; the main process batches windows of equal length across tracks, runs one forward pass
per batch for every hidden state, and writes each finished chunk of items atomically. Memory
stays flat in the track length: only a batch of windows is ever on the device.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mirprobe.errors import DataError, UserError
from mirprobe.progress import progress_bar
from mirprobe.windowing import file_windows, min_window_samples, window_samples
from mirprobe.workfolder import atomic_file

F16_MAX = float(np.finfo(np.float16).max)


class WindowStream(IterableDataset):
    """Yields ``(item, window index, wave, error, done)`` for every window of the chunks to extract,
    decoded, resampled and prepared (``Extractor.prepare``) in worker processes. Each worker takes
    whole chunks, items in order, so a chunk's windows arrive in the same order whatever the
    number of workers or ranks; an item ends with a ``done`` element carrying its window count
    (or its error). ``deform``: a :class:`mirprobe.deform.Deformation` whose ``windows`` cut the
    deformed audio instead (robustness)."""

    def __init__(self, keys: list[str], chunks: list[list[int]], sample_rate: int, window: int,
                 min_samples: int, prepare: Callable[[np.ndarray], np.ndarray],
                 deform: Any = None) -> None:
        self.keys, self.chunks = keys, chunks
        self.sample_rate, self.window, self.min_samples = sample_rate, window, min_samples
        self.prepare = prepare
        self.windows = file_windows if deform is None else deform.windows

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray | None, str | None, bool]]:
        info = get_worker_info()
        mine = self.chunks[info.id::info.num_workers] if info else self.chunks
        for chunk in mine:
            for i in chunk:
                yield from self._item(i)

    def _item(self, i: int) -> Iterator[tuple[int, int, np.ndarray | None, str | None, bool]]:
        n = 0
        try:
            for wave in self.windows(self.keys[i], self.sample_rate, self.window, self.min_samples,
                                     self.prepare):
                yield i, n, wave, None, False
                n += 1
        except DataError as e:
            yield i, n, None, str(e), True
            return
        error = None if n else (f"{self.keys[i]}: shorter than one feature frame of the model; "
                                f"item skipped")
        yield i, n, None, error, True


def batch_windows(batch_size: int | str, device: torch.device) -> int:
    """Windows per forward pass for ``extract.batch_size``. ``auto``: 16 on a GPU; 2 on CPU, where
    the forward pass is compute-bound at any batch size and a conv front end's activations stay in
    cache only for a window or two (measured: the small random model extracts 2× faster at batch
    2 than at 16; see perf/README.md)."""
    if batch_size == "auto":
        return 2 if device.type == "cpu" else 16
    return int(batch_size)


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
    """Groups windows by chunk and length; a full group (or its chunk's end) runs one forward
    pass. Batches never span chunks, so a chunk's rows do not depend on which other chunks a
    process runs (ranks, resumed runs)."""

    def __init__(self, extractor: Any, view: str, batch_size: int, dtype: str) -> None:
        self.extractor, self.view, self.batch_size, self.dtype = extractor, view, batch_size, dtype
        self.groups: dict[tuple[int, int], list[tuple[int, int, np.ndarray]]] = defaultdict(list)
        self.outputs: dict[int, dict[int, np.ndarray]] = defaultdict(dict)

    def add(self, chunk: int, i: int, w: int, wave: np.ndarray) -> None:
        key = (chunk, len(wave))
        self.groups[key].append((i, w, wave))
        if len(self.groups[key]) >= self.batch_size:
            self._run(key)

    def flush(self, chunk: int) -> None:
        for key in [key for key in self.groups if key[0] == chunk]:
            self._run(key)

    def drop(self, i: int) -> None:
        """Forget an item that failed part-way (its windows already queued or computed)."""
        for key in list(self.groups):
            self.groups[key] = [g for g in self.groups[key] if g[0] != i]
            if not self.groups[key]:
                del self.groups[key]
        self.outputs.pop(i, None)

    @torch.inference_mode()
    def _run(self, key: tuple[int, int]) -> None:
        group = self.groups.pop(key)
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
    with atomic_file(path) as f:
        np.savez(f, features=feats.astype(np.float16), counts=np.asarray(counts, dtype=np.int64),
                 failed=np.asarray(json.dumps(failed)))


def run_chunks(extractor: Any, keys: list[str], chunks: list[list[int]], todo: list[int],
               partial: Path, *, view: str, window_s: float, batch_size: int, num_workers: int,
               dtype: str, progress: bool, label: str = "", deform: Any = None) -> None:
    """Extract the chunks ``todo`` (lists of item indices) into ``partial/chunkNNNNN.npz``
    (``deform``: of the audio under that deformation)."""
    if not todo:
        return
    dataset = WindowStream(keys, [chunks[k] for k in todo], extractor.sample_rate,
                           window_samples(extractor, window_s), min_window_samples(extractor),
                           extractor.prepare, deform)
    workers = min(num_workers, len(todo))
    loader = DataLoader(dataset, batch_size=None, num_workers=workers,
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    batcher = _Batcher(extractor, view, batch_size, dtype)
    chunk_of = {i: k for k in todo for i in chunks[k]}
    arriving = {k: len(chunks[k]) for k in todo}  # items whose windows are still arriving
    finishing = {k: len(chunks[k]) for k in todo}  # items not yet finished
    expected: dict[int, int] = {}  # window count of items whose windows have all arrived
    errors: dict[int, str] = {}
    bar = progress_bar(total=sum(arriving.values()), desc=f"extract {label}".strip(), unit="track",
                       enabled=progress)

    def settle() -> None:
        for i in [i for i, n in expected.items() if i in errors or len(batcher.outputs[i]) == n]:
            del expected[i]
            bar.update(1)
            k = chunk_of[i]
            finishing[k] -= 1
            if finishing[k] == 0:
                _write_chunk(partial / f"chunk{k:05d}.npz", *_chunk_rows(k))

    def _chunk_rows(k: int) -> tuple[list[np.ndarray], list[int], list[dict]]:
        rows, counts, failed = [], [], []
        for i in chunks[k]:
            if i in errors:
                counts.append(0)
                failed.append({"index": i, "path": keys[i], "reason": errors[i]})
            else:
                rows.append(_rows(batcher.outputs.pop(i), view))
                counts.append(len(rows[-1]))
        return rows, counts, failed

    for i, n, wave, error, done in loader:
        k = chunk_of[i]
        if wave is not None:
            batcher.add(k, i, n, wave)
        if error is not None:
            errors[i] = error
            batcher.drop(i)
        if done:
            expected[i] = n
            arriving[k] -= 1
            if arriving[k] == 0:
                batcher.flush(k)
        settle()
    bar.close()


def compile_extractor(extractor: Any, mode: str | None = None) -> Any:
    """``torch.compile`` the network of a transformers-based extractor (others are returned as is).

    Windows of a batch have one length, but tails make a few more lengths: ``dynamic=None`` lets
    torch compile a shape-generic graph after the first recompilation instead of one per length.
    """
    model = getattr(extractor, "model", None)
    if isinstance(model, torch.nn.Module):
        extractor.model = torch.compile(model, mode=mode, dynamic=None)
    return extractor

"""One windowing path for feature extraction, ``Extractor.embed()`` and ``models verify``.

A clip is cut into consecutive windows of the model's context (or the task's ``window_s``); the
tail, or a whole clip shorter than a window, is its own shorter window, dropped only when too
short for one feature frame (never zero-padded: :func:`mirprobe.audio.window_bounds`). Every
window goes through ``Extractor.prepare()`` (per-window normalisation) before ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mirprobe.audio import stream_windows, window_bounds


def normalize_wave(wave: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per window (Wav2Vec2FeatureExtractor's do_normalize)."""
    return ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32)


def window_samples(extractor: Any, window_s: float | None = None) -> int:
    """Samples per window at the extractor's rate (``window_s`` None: its native context)."""
    return int(round(float(window_s or extractor.context_s) * extractor.sample_rate))


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


def file_windows(path: str | Path, sample_rate: int, window: int, min_samples: int,
                 prepare: Callable[[np.ndarray], np.ndarray]) -> Iterator[np.ndarray]:
    """The prepared windows of an audio file, decoded and resampled block by block (memory
    flat in the track's length); ``DataError`` naming the file, possibly after some windows."""
    for wave in stream_windows(path, sample_rate, window, min_samples):
        yield np.ascontiguousarray(prepare(wave), dtype=np.float32)


def clip_windows(extractor: Any, wave: np.ndarray, window_s: float | None = None
                 ) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """``(bounds, prepared window)`` of a waveform already at the extractor's rate."""
    bounds = window_bounds(len(wave), window_samples(extractor, window_s),
                           min_window_samples(extractor))
    for a, b in bounds:
        yield (a, b), np.ascontiguousarray(extractor.prepare(wave[a:b]), dtype=np.float32)


@torch.inference_mode()
def embed_windows(extractor: Any, wave: np.ndarray, window_s: float | None = None
                  ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All hidden states ``[layers, frames, dim]`` of a waveform at the extractor's rate, one
    window per forward pass, in the dtype ``forward`` returns; and the windows' bounds."""
    bounds, parts = [], []
    for span, window in clip_windows(extractor, wave, window_s):
        bounds.append(span)
        chunk = torch.from_numpy(window)[None].to(extractor.device)
        parts.append(extractor.forward(chunk)[:, 0].cpu().numpy())
    if not parts:
        return np.zeros((extractor.num_layers, 0, extractor.dim), dtype=np.float32), bounds
    return np.concatenate(parts, axis=1), bounds

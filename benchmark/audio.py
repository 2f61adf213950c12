"""Audio I/O: decode any file soundfile reads to mono float32 at a model's rate, and windowing.

Decoding errors, empty files and non-finite samples raise :class:`DataError` naming the file, so
a run over a dataset can report the item and carry on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from benchmark.errors import DataError


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``sample_rate`` (channels averaged, soxr resampling)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: audio file not found; check the path or audio_root")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise DataError(f"{path}: cannot decode audio ({e}); re-encode or remove the file") from e
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file holds no samples; re-encode or remove the file")
    wave = data.mean(axis=1)
    if not np.isfinite(wave).all():
        raise DataError(f"{path}: audio holds NaN or Inf samples; re-encode or remove the file")
    return resample(wave, sr, sample_rate)


def resample(wave: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """soxr high-quality resampling (a no-op at equal rates)."""
    if sr_in == sr_out:
        return np.ascontiguousarray(wave, dtype=np.float32)
    return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def window_bounds(num_samples: int, window: int, min_samples: int = 1) -> list[tuple[int, int]]:
    """Consecutive non-overlapping windows of ``window`` samples covering the signal.

    The tail (or a whole signal shorter than a window) is its own shorter window — never
    zero-padded, since group-norm front ends change their output under padding. A tail shorter
    than ``min_samples`` (too short for one feature frame) is dropped.
    """
    bounds = [(s, min(s + window, num_samples)) for s in range(0, num_samples, window)]
    return [(a, b) for a, b in bounds if b - a >= min_samples]


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """Header of an audio file (no decoding)."""
    try:
        return sf.info(str(path))
    except Exception as e:
        raise DataError(f"{path}: cannot read the audio header ({e})") from e

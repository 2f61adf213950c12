"""torchaudio's ``MelSpectrogram`` and ``AmplitudeToDB``, computed in plain torch.

MuQ, MusicFM and Dasheng compute their input with these two torchaudio transforms; torchaudio is
not a dependency of mirprobe (its wheels are tied to one torch build), so the same arithmetic is
written here: a centred, reflect-padded STFT with a periodic Hann window, the power spectrum, the
mel filter bank (``torchaudio.functional.melscale_fbanks``: HTK scale without area
normalisation by default, as MuQ, MusicFM and Dasheng use it; Slaney for OMAR-RQ), then
``10·log10(max(x, 1e-10))`` with an optional floor ``top_db`` below the peak.
"""

from __future__ import annotations

import numpy as np
import torch


def _hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    linear = hz / (200.0 / 3)  # Slaney: linear below 1 kHz, logarithmic above
    logstep = np.log(6.4) / 27.0
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / logstep, linear)


def _mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (10 ** (mel / 2595.0) - 1.0)
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(logstep * (mel - 15.0)), mel * 200.0 / 3)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None, scale: str = "htk", norm: str | None = None) -> np.ndarray:
    """``melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm, scale)`` →
    ``[n_mels, bins]``: triangles between mel-spaced edges (``htk`` or ``slaney`` scale), peak 1,
    or unit area with ``norm="slaney"``."""
    if scale not in ("htk", "slaney") or norm not in (None, "slaney"):
        raise ValueError(f"mel scale {scale!r} / norm {norm!r}: use htk or slaney, None or slaney")
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min, scale), _hz_to_mel(f_max, scale), n_mels + 2), scale)
    slopes = edges[None, :] - freqs[:, None]  # [bins, n_mels + 2]
    width = np.diff(edges)
    fb = np.maximum(0.0, np.minimum(-slopes[:, :-2] / width[:-1], slopes[:, 2:] / width[1:]))
    if norm == "slaney":
        fb *= 2.0 / (edges[2:] - edges[:-2])
    return fb.T.astype(np.float32)


def htk_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                       f_max: float | None = None) -> np.ndarray:
    """torchaudio's default filter bank: HTK scale, no area normalisation."""
    return mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)


class MelSpectrogram(torch.nn.Module):
    """``[B, samples]`` → power mel ``[B, n_mels, 1 + samples // hop]`` (torchaudio's defaults:
    power 2, centred, reflect padding, window as long as the FFT)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, f_min: float = 0.0,
                 f_max: float | None = None, win_length: int | None = None, scale: str = "htk",
                 norm: str | None = None) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.win_length = win_length or n_fft
        fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, scale, norm)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waves.float(), self.n_fft, self.hop, self.win_length, self.window,
                          center=True, pad_mode="reflect", return_complex=True)
        power = spec.real.square() + spec.imag.square()
        return torch.matmul(self.fb, power)

    def min_samples(self) -> int:
        """Reflect padding needs more samples than half an FFT."""
        return self.n_fft // 2 + 1


def power_to_db(power: torch.Tensor, top_db: float | None = None) -> torch.Tensor:
    """``AmplitudeToDB(stype="power", top_db)`` of each item alone: ``[B, F, T]`` in dB, floored
    ``top_db`` below the item's own peak (torchaudio floors a 3-D batch at the batch's peak)."""
    db = 10.0 * torch.log10(power.clamp(min=1e-10))
    if top_db is not None:
        db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - top_db)
    return db

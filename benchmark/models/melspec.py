"""torchaudio's ``MelSpectrogram`` and ``AmplitudeToDB``, computed in plain torch.

MuQ, MusicFM and Dasheng compute their input with these two torchaudio transforms; torchaudio is
not a dependency of mirprobe (its wheels are tied to one torch build), so the same arithmetic is
written here: a centred, reflect-padded STFT with a periodic Hann window, the power spectrum, the
HTK mel filter bank without area normalisation (``torchaudio.functional.melscale_fbanks``), then
``10·log10(max(x, 1e-10))`` with an optional floor ``top_db`` below the peak.
"""

from __future__ import annotations

import numpy as np
import torch


def htk_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                       f_max: float | None = None) -> np.ndarray:
    """``melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate)`` → ``[n_mels, bins]``:
    triangles between HTK-mel-spaced edges, peak 1, no area normalisation."""
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)

    def mel(hz: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    edges = 700.0 * (10 ** (np.linspace(mel(f_min), mel(f_max), n_mels + 2) / 2595.0) - 1.0)
    slopes = edges[None, :] - freqs[:, None]  # [bins, n_mels + 2]
    width = np.diff(edges)
    down = -slopes[:, :-2] / width[:-1]
    up = slopes[:, 2:] / width[1:]
    return np.maximum(0.0, np.minimum(down, up)).T.astype(np.float32)


class MelSpectrogram(torch.nn.Module):
    """``[B, samples]`` → power mel ``[B, n_mels, 1 + samples // hop]`` (torchaudio's defaults:
    power 2, centred, reflect padding, window as long as the FFT)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, f_min: float = 0.0,
                 f_max: float | None = None, win_length: int | None = None) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.win_length = win_length or n_fft
        fb = htk_mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)
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

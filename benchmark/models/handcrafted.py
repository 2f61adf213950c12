"""Handcrafted features: the weightless baseline. Its "layers" are feature groups.

Per frame (16 kHz, hop 320 → 50 Hz, like MERT-v0): log-mel (64 bands, dB), chroma (12),
MFCC (20), onset strength and RMS (2), and their concatenation as the last layer. Groups are
zero-padded to a common width so the cache keeps one array; the clip view pools each window
with mean and standard deviation, so it holds per-window statistics.

The features are computed in torch by :mod:`mirprobe.dsp`, batched over the windows of a forward
pass, and equal librosa's on each window (tests/test_dsp.py): power spectrogram of a centred,
zero-padded STFT (n_fft 1024, periodic Hann); ``power_to_db`` of the mel power (ref 1, amin 1e-10,
top_db 80 below the window's peak); ``chroma_stft`` (tuning 0, each frame scaled to peak 1);
``mfcc`` of the log-mel (DCT-II, orthonormal); ``onset_strength`` of the log-mel; ``rms``.
librosa itself is not imported (its numba compilation would dominate a short run).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from mirprobe import dsp
from mirprobe.models.base import Extractor

GROUPS = ("logmel", "chroma", "mfcc", "onset")
WIDTHS = {"logmel": 64, "chroma": 12, "mfcc": 20, "onset": 2}


class HandcraftedExtractor(Extractor):
    kind = "handcrafted"
    sample_rate = 16000
    frame_rate = 50.0
    hop = 320
    n_fft = 1024

    def __init__(self, name: str = "handcrafted", context_s: float = 5.0, **_: Any) -> None:
        super().__init__(name)
        self.context_s = float(context_s)
        self.dim = sum(WIDTHS.values())
        self.num_layers = len(GROUPS) + 1

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "groups": WIDTHS, "n_fft": self.n_fft, "hop": self.hop,
                "sample_rate": self.sample_rate, "version": 2}

    def layer_names(self) -> list[str]:
        return [*GROUPS, "all"]

    @property
    def clip_dim(self) -> int:
        return 2 * self.dim

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        h = hidden.float()
        return torch.cat([h.mean(dim=2), h.std(dim=2, unbiased=False)], dim=-1)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        frames = self.num_frames(waves.shape[-1])
        # float32 whatever extract.dtype asks: autocast would run the filter banks in bfloat16
        with torch.no_grad(), torch.autocast(waves.device.type, enabled=False):
            feats = self.features(waves.detach().float())[:, :frames]  # [B, frames, dim]
        out = feats.new_zeros(self.num_layers, *feats.shape)
        col = 0
        for i, name in enumerate(GROUPS):
            out[i, ..., : WIDTHS[name]] = feats[..., col : col + WIDTHS[name]]
            col += WIDTHS[name]
        out[-1] = feats
        return out.to(self.device)

    def features(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` → ``[B, stft frames, dim]``: the groups side by side, every STFT frame
        (one more than :meth:`num_frames`: the top_db floor and the onset envelope see it)."""
        bases = _bases(self.sample_rate, self.n_fft)
        mel, chroma, dct = (torch.from_numpy(b).to(waves.device) for b in bases)
        power = dsp.power_spectrogram(waves, self.n_fft, self.hop)  # [B, bins, frames]
        logmel = dsp.power_to_db(mel @ power)
        groups = [
            logmel,
            dsp.peak_normalize(chroma @ power),
            dct @ logmel,
            dsp.onset_strength(logmel, hop=self.hop)[:, None],
            dsp.rms(power, self.n_fft)[:, None],
        ]
        return torch.cat(groups, dim=1).transpose(1, 2)


@functools.cache
def _bases(sample_rate: int, n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mel, chroma (tuning fixed at A440: per-window tuning estimation would dominate the run
    time) and DCT matrices."""
    n_mels = WIDTHS["logmel"]
    return (dsp.mel_filterbank(sample_rate, n_fft, n_mels),
            dsp.chroma_filterbank(sample_rate, n_fft), dsp.dct_matrix(WIDTHS["mfcc"], n_mels))

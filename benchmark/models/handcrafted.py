"""Handcrafted features: the weightless baseline. Its "layers" are feature groups.

Per frame (16 kHz, hop 320 → 50 Hz, like MERT-v0): log-mel (64 bands, dB), chroma (12),
MFCC (20), onset strength and RMS (2), and their concatenation as the last layer. Groups are
zero-padded to a common width so the cache keeps one array; the clip view pools each window
with mean and standard deviation, so it holds per-window statistics.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

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
        import librosa

        return {"kind": self.kind, "groups": WIDTHS, "n_fft": self.n_fft, "hop": self.hop,
                "sample_rate": self.sample_rate, "librosa": librosa.__version__, "version": 1}

    def layer_names(self) -> list[str]:
        return [*GROUPS, "all"]

    @property
    def clip_dim(self) -> int:
        return 2 * self.dim

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        h = hidden.float()
        return torch.cat([h.mean(dim=2), h.std(dim=2, unbiased=False)], dim=-1)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        out = [self._clip(w) for w in waves.detach().cpu().numpy()]
        return torch.from_numpy(np.stack(out, axis=1)).to(self.device)

    @functools.cache  # noqa: B019 - one filter bank per extractor, built once
    def _mel_basis(self) -> np.ndarray:
        import librosa

        return librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=WIDTHS["logmel"])

    def _clip(self, wave: np.ndarray) -> np.ndarray:
        """``[samples]`` → ``[layers, frames, dim]``."""
        import librosa

        frames = self.num_frames(len(wave))
        power = np.abs(librosa.stft(wave, n_fft=self.n_fft, hop_length=self.hop)) ** 2
        logmel = librosa.power_to_db(self._mel_basis() @ power, ref=1.0, amin=1e-10)
        groups = {
            "logmel": logmel,
            # tuning fixed at A440: per-window tuning estimation would dominate the run time
            "chroma": librosa.feature.chroma_stft(S=power, sr=self.sample_rate, n_fft=self.n_fft,
                                                  tuning=0.0),
            "mfcc": librosa.feature.mfcc(S=logmel, n_mfcc=WIDTHS["mfcc"]),
            "onset": np.stack([
                librosa.onset.onset_strength(S=logmel, sr=self.sample_rate, hop_length=self.hop),
                librosa.feature.rms(S=np.sqrt(power), frame_length=self.n_fft)[0],
            ]),
        }
        out = np.zeros((self.num_layers, frames, self.dim), dtype=np.float32)
        col = 0
        for i, name in enumerate(GROUPS):
            g = groups[name][:, :frames].T  # [frames, width]
            out[i, : len(g), : g.shape[1]] = g
            out[-1, : len(g), col : col + g.shape[1]] = g
            col += g.shape[1]
        return out

"""The extractor contract: waveforms in, every hidden state out.

An extractor maps a batch of equal-length mono waveforms at its own sample rate to
all hidden states ``[layers, batch, frames, dim]``. Layer 0 is the embedding output
(for handcrafted features: the first feature group). Windowing, resampling and
caching live elsewhere (``mirprobe.audio``, ``mirprobe.features``); an extractor
only runs its network.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch


class Extractor(ABC):
    """Base class for every model kind (handcrafted, random, mert, hf, hear)."""

    kind: str = ""
    #: Native sample rate of the waveforms ``forward`` takes.
    sample_rate: int
    #: Feature frames per second of audio.
    frame_rate: float
    #: Number of hidden states returned, the embedding output counted as layer 0.
    num_layers: int
    #: Width of one hidden state (frame view).
    dim: int
    #: Native context in seconds: the default window length.
    context_s: float = 5.0
    #: Whether waveforms are normalised to zero mean / unit variance per window before forward.
    normalize: bool = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.device = torch.device("cpu")

    @abstractmethod
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` float32 at ``sample_rate`` → ``[layers, batch, frames, dim]``."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything that determines the output (architecture, weights digest, options)."""

    def layer_names(self) -> list[str]:
        return [f"layer{i}" for i in range(self.num_layers)]

    # Layers that differ in width or time resolution (CNN encoders: musicnn). The defaults describe
    # a model whose every layer is ``dim`` wide at ``frame_rate`` in both views.

    def view_layers(self, view: str) -> list[str]:
        """Names of the layers the ``clip`` or ``frame`` view holds, in row order. A model with
        per-window layers (pooled, dense) keeps only its frame-level layers in the frame view."""
        return self.layer_names()

    def layer_dims(self, view: str) -> list[int]:
        """True width of each layer of ``view``. A narrower layer is zero-padded at the end to the
        view's width (``dim`` for frames, ``clip_dim`` for clips): the cache keeps one array."""
        width = self.dim if view == "frame" else self.clip_dim
        return [width] * len(self.view_layers(view))

    def layer_rates(self) -> dict[str, float]:
        """Native time resolution of each layer, in vectors per second of audio."""
        return dict.fromkeys(self.layer_names(), float(self.frame_rate))

    def num_frames(self, num_samples: int) -> int:
        """Frames ``forward`` returns for a window of ``num_samples`` samples."""
        return int(num_samples * self.frame_rate / self.sample_rate)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """Clip view of one window batch: ``[L, B, F, D]`` → ``[L, B, clip_dim]`` (mean over frames)."""
        return hidden.float().mean(dim=2)

    @property
    def clip_dim(self) -> int:
        return self.dim

    def fingerprint(self) -> str:
        """Content address of this extractor: same identity → same features."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to(self, device: torch.device | str) -> Extractor:
        self.device = torch.device(device)
        return self

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """Per-window waveform preprocessing (normalisation) before batching."""
        from mirprobe.extraction import normalize_wave

        return normalize_wave(wave) if self.normalize else wave

    @torch.inference_mode()
    def embed(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """All hidden states of one clip, ``[layers, frames, dim]`` (resampled, windowed, normalised)."""
        from mirprobe.audio import resample, window_bounds
        from mirprobe.extraction import min_window_samples

        wave = resample(np.asarray(waveform, dtype=np.float32), sample_rate, self.sample_rate)
        window = int(round(self.context_s * self.sample_rate))
        parts = []
        for start, stop in window_bounds(len(wave), window, min_window_samples(self)):
            chunk = torch.from_numpy(self.prepare(wave[start:stop]))[None].to(self.device)
            parts.append(self.forward(chunk)[:, 0].float().cpu().numpy())
        if not parts:
            return np.zeros((self.num_layers, 0, self.dim), dtype=np.float32)
        return np.concatenate(parts, axis=1)

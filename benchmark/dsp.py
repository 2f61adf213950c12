"""Spectral features without librosa: filter banks in numpy, batched transforms in torch.

Each function equals the librosa 0.11 function it names, with the defaults mirprobe uses
(tests/test_dsp.py compares them). librosa is not imported on the run path: its first import
compiles numba code for tens of seconds on a fresh install, and loading that cache costs seconds
in every later process.

Filter banks are float32 ``[bands, n_fft // 2 + 1]`` numpy arrays. The torch functions take
spectrograms ``[..., bins, frames]`` (any leading batch axes) and keep their dtype and device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz (15 mels), log above.
_MEL_HZ, _BREAK_HZ, _BREAK_MEL, _LOG_STEP = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """``librosa.hz_to_mel`` (Slaney)."""
    hz = np.asarray(hz, dtype=np.float64)
    log = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, log, hz / _MEL_HZ)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """``librosa.mel_to_hz`` (Slaney)."""
    mel = np.asarray(mel, dtype=np.float64)
    log = _BREAK_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _BREAK_MEL) - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, log, mel * _MEL_HZ)


def mel_filterbank(sr: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """``librosa.filters.mel`` (Slaney scale, Slaney area norm): triangles between mel-spaced
    edges, each scaled to unit area in Hz."""
    fmax = sr / 2 if fmax is None else fmax
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))[:, None]
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    tri = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return (tri * (2.0 / (hi - lo))).astype(np.float32)


def chroma_filterbank(sr: float, n_fft: int, n_chroma: int = 12, tuning: float = 0.0) -> np.ndarray:
    """``librosa.filters.chroma`` with its defaults (Ellis' chromagram weights): per FFT bin, a
    Gaussian over pitch classes one bin-spacing wide (at least one class), unit L2 norm per bin,
    weighted by a Gaussian over octaves (centre 5, width 2); rows start at C."""
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    pitch = n_chroma * np.log2(np.arange(1, n_fft) * (sr / n_fft) / (a440 / 16))  # in chroma bins
    pitch = np.concatenate([[pitch[0] - 1.5 * n_chroma], pitch])  # DC: 1.5 octaves below bin 1
    width = np.concatenate([np.maximum(np.diff(pitch), 1.0), [1.0]])
    half = np.round(n_chroma / 2)
    # signed distance from each bin's pitch to each class, wrapped to [-half, half)
    dist = pitch - np.arange(n_chroma)[:, None]
    dist = np.remainder(dist + half + 10 * n_chroma, n_chroma) - half
    w = np.exp(-0.5 * (2 * dist / width) ** 2)
    w /= np.sqrt(np.sum(w**2, axis=0))
    w *= np.exp(-0.5 * ((pitch / n_chroma - 5.0) / 2.0) ** 2)
    w = np.roll(w, -3 * (n_chroma // 12), axis=0)  # rows from A to rows from C
    return np.ascontiguousarray(w[:, : n_fft // 2 + 1], dtype=np.float32)


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """The first ``n_out`` rows of the orthonormal DCT-II of length ``n_in`` (``scipy.fft.dct``,
    ``norm="ortho"``): ``matrix @ x`` is ``dct(x, axis=0)[:n_out]``."""
    k, n = np.arange(n_out)[:, None], np.arange(n_in)
    m = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def power_spectrogram(waves: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """``|librosa.stft(waves, n_fft, hop)|²``: periodic Hann window, centred frames, zero padding.
    ``[..., samples]`` → ``[..., n_fft // 2 + 1, 1 + samples // hop]``."""
    lead = waves.shape[:-1]
    window = torch.hann_window(n_fft, periodic=True, dtype=waves.dtype, device=waves.device)
    spec = torch.stft(waves.reshape(-1, waves.shape[-1]), n_fft, hop, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    return power.reshape(*lead, *power.shape[-2:])


def power_to_db(power: torch.Tensor, amin: float = 1e-10,
                top_db: float | None = 80.0) -> torch.Tensor:
    """``librosa.power_to_db(power, ref=1.0, amin, top_db)``, the ``top_db`` floor taken per
    spectrogram (the last two axes): librosa's floor on one spectrogram at a time."""
    db = 10.0 * torch.log10(power.clamp_min(amin))
    if top_db is None:
        return db
    return torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - top_db)


def peak_normalize(x: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """``librosa.util.normalize(x, norm=inf, axis=dim)``: divide by the largest magnitude along
    ``dim``; vectors whose peak is below the dtype's smallest normal number are left as they are."""
    peak = x.abs().amax(dim=dim, keepdim=True)
    return x / torch.where(peak < torch.finfo(x.dtype).tiny, torch.ones_like(peak), peak)


def onset_strength(spec: torch.Tensor, hop: int, lag: int = 1, n_fft: int = 2048) -> torch.Tensor:
    """``librosa.onset.onset_strength(S=spec, hop_length=hop)`` with its defaults: the mean over
    bins of the positive change from ``lag`` frames earlier, delayed by ``lag + n_fft // (2 hop)``
    frames (librosa's centring; ``n_fft`` is its default 2048, not the spectrogram's) with zeros
    in front, cut to the spectrogram's length. ``[..., bins, frames]`` → ``[..., frames]``."""
    flux = (spec[..., lag:] - spec[..., :-lag]).clamp_min(0).mean(dim=-2)
    return F.pad(flux, (lag + n_fft // (2 * hop), 0))[..., : spec.shape[-1]]


def rms(power: torch.Tensor, frame_length: int) -> torch.Tensor:
    """``librosa.feature.rms(S=sqrt(power), frame_length)``: Parseval over the one-sided power
    spectrum, the DC bin (and the Nyquist bin of an even frame) counted once, the others twice.
    ``[..., bins, frames]`` → ``[..., frames]``."""
    total = power.sum(dim=-2) - 0.5 * power[..., 0, :]
    if frame_length % 2 == 0:
        total = total - 0.5 * power[..., -1, :]
    return torch.sqrt(2.0 * total / frame_length**2)

"""Handcrafted features computed by librosa 0.11, one window at a time: the independent reference
for ``mirprobe.dsp`` (tests/test_dsp.py) and the "before" path of perf/handcrafted.py."""

from __future__ import annotations

import librosa
import numpy as np

from mirprobe.models.handcrafted import GROUPS, WIDTHS

SR, N_FFT, HOP = 16000, 1024, 320


def librosa_window(wave: np.ndarray, frames: int) -> np.ndarray:
    """One window's handcrafted features by librosa: ``[layers, frames, dim]``."""
    power = np.abs(librosa.stft(wave, n_fft=N_FFT, hop_length=HOP)) ** 2
    mel = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=WIDTHS["logmel"])
    logmel = librosa.power_to_db(mel @ power, ref=1.0, amin=1e-10)
    groups = [
        logmel,
        librosa.feature.chroma_stft(S=power, sr=SR, n_fft=N_FFT, tuning=0.0),
        librosa.feature.mfcc(S=logmel, n_mfcc=WIDTHS["mfcc"]),
        np.stack([librosa.onset.onset_strength(S=logmel, sr=SR, hop_length=HOP),
                  librosa.feature.rms(S=np.sqrt(power), frame_length=N_FFT)[0]]),
    ]
    feats = np.concatenate(groups)[:, :frames].T  # [frames, dim]
    out = np.zeros((len(GROUPS) + 1, frames, feats.shape[1]), dtype=np.float32)
    col = 0
    for i, g in enumerate(groups):
        out[i, :, : len(g)] = feats[:, col : col + len(g)]
        col += len(g)
    out[-1] = feats
    return out

"""Audio formats a dataset may hold (WAV, FLAC, OGG, MP3; any rate and channel count) decode to
mono at the model's rate: compared with scipy's polyphase resampling of the channel mean."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from mirprobe.audio import load_audio
from mirprobe.datasets.common import read_header

FORMATS = {".wav": ("WAV", "PCM_16", 1e-3), ".flac": ("FLAC", "PCM_16", 1e-3),
           ".ogg": ("OGG", "VORBIS", None), ".mp3": ("MP3", None, None)}


def signal(sr: int, channels: int, seconds: float = 0.5) -> np.ndarray:
    """A different tone per channel, well below every Nyquist frequency used here."""
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([0.2 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1)


@pytest.mark.parametrize("suffix", list(FORMATS))
@pytest.mark.parametrize(("sr", "channels"), [(8000, 6), (44100, 2), (16000, 1)])
def test_any_format_rate_and_channels_to_mono_16k(tmp_path: Path, suffix: str, sr: int, channels: int) -> None:
    fmt, subtype, tol = FORMATS[suffix]
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    data = signal(sr, channels)
    path = tmp_path / f"x{suffix}"
    buffer = io.BytesIO()
    try:
        sf.write(buffer, data.astype(np.float32), sr, format=fmt, subtype=subtype)
    except sf.LibsndfileError:
        pytest.skip(f"libsndfile cannot write {fmt} with {channels} channels at {sr} Hz")
    path.write_bytes(buffer.getvalue())
    head = read_header(path)
    assert (head.sample_rate, head.channels, head.error) == (sr, channels, None)
    wave = load_audio(path, 16000)
    reference = resample_poly(data.mean(axis=1), 16000 // np.gcd(16000, sr), sr // np.gcd(16000, sr))
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - len(reference)) <= 16000 * 0.06  # MP3 frames pad the ends
    n = min(len(wave), len(reference))
    if tol is not None:  # lossless: the same samples, up to 16-bit rounding and filter edges
        middle = slice(200, n - 200)
        np.testing.assert_allclose(wave[middle], reference[middle], atol=tol * 5)
    else:  # lossy: the same sound, allowing a codec delay of up to 50 ms
        lag = max(range(0, 800, 8), key=lambda d: np.dot(wave[d:n], reference[:n - d]))
        r = np.corrcoef(wave[lag:n], reference[:n - lag])[0, 1]
        assert r > 0.95, f"correlation {r:.3f} at lag {lag}"

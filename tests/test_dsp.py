"""mirprobe.dsp and the handcrafted features against librosa 0.11, the reference they replace.

Features are float32. STFTs differ in rounding (librosa transforms in float64, torch in float32),
which shows most in bins near the 80 dB floor: log-mel and MFCC are compared to 1e-3 dB; the
cache stores float16, whose step at 60 dB is 0.03.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.fft
import torch
from librosa_reference import HOP, N_FFT, SR, librosa_window

from mirprobe import dsp
from mirprobe.models.handcrafted import GROUPS, WIDTHS, HandcraftedExtractor

REPO = Path(__file__).resolve().parents[1]
# per group: (rtol, atol); dB-valued groups get the 1e-3 dB of the module docstring
pytestmark = pytest.mark.filterwarnings("ignore:n_fft=.* is too large:UserWarning")  # short windows
TOLERANCE = {"logmel": (0, 1e-3), "chroma": (1e-5, 1e-6), "mfcc": (1e-5, 1e-3), "onset": (1e-4, 1e-4)}


def synth(n: int, seed: int) -> np.ndarray:
    """A few harmonic partials with a gated high tone and noise: ``n`` samples at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = rng.uniform(80, 600)
    wave = sum(0.4 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) for k in (1, 2, 3))
    wave = wave + 0.2 * np.sin(2 * np.pi * 3000 * t) * (t % 0.25 < 0.05)
    return (wave + 0.01 * rng.standard_normal(n)).astype(np.float32)


def batch(n: int) -> np.ndarray:
    """Three windows of ``n`` samples: two synthesized, one silent."""
    return np.stack([synth(n, 0), synth(n, 1), np.zeros(n, dtype=np.float32)])


LENGTHS = [320, 1000, 16000, 80000]  # one frame, shorter than n_fft, 1 s, 5 s


@pytest.mark.parametrize(("sr", "n_fft", "n_mels", "fmin", "fmax"), [
    (16000, 1024, 64, 0.0, None), (16000, 512, 96, 0.0, None), (22050, 2048, 128, 0.0, None),
    (44100, 4096, 40, 30.0, 8000.0), (8000, 256, 20, 100.0, 3000.0)])
def test_mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> None:
    ours = dsp.mel_filterbank(sr, n_fft, n_mels, fmin=fmin, fmax=fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)


def test_mel_scale() -> None:
    hz = np.array([0.0, 1.0, 440.0, 999.999, 1000.0, 1000.001, 4000.0, 22050.0])
    np.testing.assert_allclose(dsp.hz_to_mel(hz), librosa.hz_to_mel(hz), rtol=1e-12)
    mels = np.linspace(0, 60, 121)
    np.testing.assert_allclose(dsp.mel_to_hz(mels), librosa.mel_to_hz(mels), rtol=1e-12)


@pytest.mark.parametrize(("sr", "n_fft", "n_chroma", "tuning"), [
    (16000, 1024, 12, 0.0), (22050, 2048, 12, -0.3), (16000, 512, 24, 0.25), (44100, 4096, 12, 0.1)])
def test_chroma_filterbank(sr: int, n_fft: int, n_chroma: int, tuning: float) -> None:
    ours = dsp.chroma_filterbank(sr, n_fft, n_chroma=n_chroma, tuning=tuning)
    ref = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)


def test_dct_matrix() -> None:
    x = np.random.default_rng(0).standard_normal((64, 7))
    ref = scipy.fft.dct(x, type=2, norm="ortho", axis=0)[:20]
    np.testing.assert_allclose(dsp.dct_matrix(20, 64).astype(np.float64) @ x, ref, atol=1e-5)


@pytest.mark.parametrize("n", LENGTHS)
def test_power_spectrogram(n: int) -> None:
    waves = batch(n)
    ours = dsp.power_spectrogram(torch.from_numpy(waves), N_FFT, HOP).numpy()
    ref = np.abs(librosa.stft(waves, n_fft=N_FFT, hop_length=HOP)) ** 2
    assert ours.shape == ref.shape == (3, N_FFT // 2 + 1, 1 + n // HOP)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-6 * ref.max())


def test_power_to_db_floor_per_spectrogram() -> None:
    power = np.abs(librosa.stft(batch(16000), n_fft=N_FFT, hop_length=HOP)) ** 2
    power[1] *= 1e-6  # a quiet window keeps its own floor, 80 dB below its own peak
    ours = dsp.power_to_db(torch.from_numpy(power)).numpy()
    for p, o in zip(power, ours, strict=True):
        np.testing.assert_allclose(o, librosa.power_to_db(p, ref=1.0, amin=1e-10), atol=1e-4)
    assert (ours[2] == -100).all()  # silence: amin
    np.testing.assert_allclose(dsp.power_to_db(torch.from_numpy(power), top_db=None).numpy(),
                               librosa.power_to_db(power, top_db=None), atol=1e-4)


def test_peak_normalize() -> None:
    x = np.abs(np.random.default_rng(0).standard_normal((2, 12, 9))).astype(np.float32)
    x[0, :, 3] = 0.0  # silent frame: left at zero
    x[1, :, 5] = 1e-39  # below float32's smallest normal: left as it is
    x[1, 4, 6] = 0.0
    ours = dsp.peak_normalize(torch.from_numpy(x), dim=-2).numpy()
    np.testing.assert_allclose(ours, librosa.util.normalize(x, norm=np.inf, axis=-2), rtol=1e-6)
    assert (ours[1, :, 5] == x[1, :, 5]).all()


@pytest.mark.parametrize(("n", "hop"), [(320, 320), (16000, 320), (80000, 320), (80000, 512)])
def test_onset_strength(n: int, hop: int) -> None:
    power = np.abs(librosa.stft(batch(n), n_fft=N_FFT, hop_length=hop)) ** 2
    spec = librosa.power_to_db(librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=64) @ power)
    ours = dsp.onset_strength(torch.from_numpy(spec), hop=hop).numpy()
    ref = librosa.onset.onset_strength(S=spec, sr=SR, hop_length=hop)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frame_length", [1024, 1023])
def test_rms(frame_length: int) -> None:
    edges = 0.3 + 0.5 * (-1.0) ** np.arange(16000)  # DC and Nyquist: the bins counted once
    waves = np.concatenate([batch(16000), edges[None].astype(np.float32)])
    power = np.abs(librosa.stft(waves, n_fft=frame_length, hop_length=HOP)) ** 2
    ours = dsp.rms(torch.from_numpy(power), frame_length).numpy()
    ref = librosa.feature.rms(S=np.sqrt(power), frame_length=frame_length)[:, 0]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("n", LENGTHS)
def test_handcrafted_matches_librosa(n: int) -> None:
    ex = HandcraftedExtractor()
    waves = batch(n)
    ours = ex.forward(torch.from_numpy(waves))
    ref = np.stack([librosa_window(w, ex.num_frames(n)) for w in waves], axis=1)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape == (5, 3, n // HOP, ex.dim)
    ours = ours.numpy()
    col = 0
    for i, name in enumerate(GROUPS):
        rtol, atol = TOLERANCE[name]
        width = WIDTHS[name]
        np.testing.assert_allclose(ours[i], ref[i], rtol=rtol, atol=atol, err_msg=name)
        np.testing.assert_allclose(ours[-1, ..., col : col + width], ref[-1, ..., col : col + width],
                                   rtol=rtol, atol=atol, err_msg=name)
        col += width
    assert np.abs(ref[:, 2]).max() > 0 and np.abs(ref[:, 0, :, 64:76]).max() > 0.99  # not trivial


def test_handcrafted_ignores_autocast() -> None:
    ex = HandcraftedExtractor()
    waves = torch.from_numpy(batch(16000))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = ex.forward(waves)
    assert low.dtype == torch.float32
    assert torch.equal(low, ex.forward(waves))


def test_extraction_does_not_import_librosa(tmp_path: Path) -> None:
    """librosa's first import compiles numba code for tens of seconds: the run path avoids it."""
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        from pathlib import Path
        import torch
        from mirprobe.features import FeatureStore
        from mirprobe.models import load_model
        from mirprobe.models.musicnn import MusicnnNet
        from tests.conftest import write_tone

        track = str(write_tone(Path({str(tmp_path / "a.wav")!r}), 3.0, freq=330, seed=0))
        ex = load_model("handcrafted")
        ex.fingerprint()
        FeatureStore({str(tmp_path / "f")!r}).extract(ex, [track], progress=False)
        MusicnnNet({{}}).logmel(torch.zeros(2, 16000))
        if importlib.util.find_spec("musicnn"):
            FeatureStore({str(tmp_path / "f")!r}).extract(load_model("musicnn-mtt"), [track],
                                                          progress=False)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("librosa", "numba"))))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

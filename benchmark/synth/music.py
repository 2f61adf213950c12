"""Synthesis primitives: pitch helpers, envelopes, oscillators, instruments and drum sounds.

Everything is plain numpy/scipy and works on float64 mono buffers. Instrument functions
return one note as an array that the renderer adds into the mix at the note's onset.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

#: MARBLE's tonic spelling (flats), index = pitch class.
TONICS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor; the renderer raises the 7th on V chords


def midi_to_hz(midi: float | np.ndarray, tuning_cents: float = 0.0) -> float | np.ndarray:
    """Equal-tempered frequency, A4 = 440 Hz shifted by ``tuning_cents``."""
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69.0) / 12.0 + tuning_cents / 1200.0)


def envelope(n: int, sr: int, attack: float, decay: float, sustain: float, release: float,
             hold: float) -> np.ndarray:
    """ADSR envelope of ``n`` samples; the note is held for ``hold`` seconds then released."""
    t = np.arange(n) / sr
    a = max(attack, 1e-4)
    env = np.where(t < a, t / a, sustain + (1.0 - sustain) * np.exp(-(t - a) / max(decay, 1e-4)))
    off = t >= hold
    if off.any():
        level = env[min(int(hold * sr), n - 1)]
        env[off] = level * np.exp(-(t[off] - hold) / max(release, 1e-4))
    return env


def poly_saw(freq: float | np.ndarray, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Band-limited sawtooth (PolyBLEP); ``freq`` may vary per sample (vibrato)."""
    dt = np.broadcast_to(np.asarray(freq, dtype=np.float64) / sr, (n,))
    phase = (phase0 + np.cumsum(dt) - dt[0]) % 1.0
    out = 2.0 * phase - 1.0
    lo = phase < dt  # just after the wrap
    x = phase[lo] / dt[lo]
    out[lo] -= x + x - x * x - 1.0
    hi = phase > 1.0 - dt  # just before the wrap
    x = (phase[hi] - 1.0) / dt[hi]
    out[hi] -= x * x + x + x + 1.0
    return out


def poly_square(freq: float | np.ndarray, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Band-limited square as the difference of two sawtooths half a period apart."""
    return 0.5 * (poly_saw(freq, n, sr, phase0) - poly_saw(freq, n, sr, phase0 + 0.5))


def partials(freq: float, n: int, sr: int, amps: np.ndarray, decays: np.ndarray | None = None,
             inharmonicity: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Sum of harmonic partials ``k·f`` (stretched by inharmonicity), each decaying at its rate."""
    t = np.arange(n) / sr
    out = np.zeros(n)
    for k, amp in enumerate(amps, start=1):
        fk = freq * k * np.sqrt(1.0 + inharmonicity * k * k)
        if fk >= 0.45 * sr:
            break
        phase = rng.uniform(0, 2 * np.pi) if rng is not None else 0.0
        part = amp * np.sin(2 * np.pi * fk * t + phase)
        if decays is not None:
            part *= np.exp(-t * decays[k - 1])
        out += part
    return out


@lru_cache(maxsize=64)
def _butter(kind: str, cutoff: tuple[float, ...], sr: int, order: int) -> np.ndarray:
    return signal.butter(order, cutoff if len(cutoff) > 1 else cutoff[0], btype=kind, fs=sr,
                         output="sos")


def lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    cutoff = float(min(cutoff, 0.45 * sr))
    return signal.sosfilt(_butter("lowpass", (round(cutoff),), sr, order), x)


def highpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_butter("highpass", (round(cutoff),), sr, order), x)


def bandpass(x: np.ndarray, lo: float, hi: float, sr: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_butter("bandpass", (round(lo), round(min(hi, 0.45 * sr))), sr, order), x)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise (white noise shaped in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[1:] /= np.sqrt(np.arange(1, len(spec)))
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def reverb(x: np.ndarray, decay: float, wet: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A room: convolution with exponentially decaying noise (``decay``: time to -60 dB, s)."""
    t = np.arange(int(decay * sr)) / sr
    ir = rng.standard_normal(len(t)) * 10 ** (-3 * t / decay)
    tail = signal.fftconvolve(x, ir)[:len(x)]
    tail *= np.sqrt(np.mean(x * x) / (np.mean(tail * tail) + 1e-24))
    return (1 - wet) * x + wet * tail


# --- pitched instruments: (freq, seconds held, velocity, sr, rng, brightness 0..1) -> note ---

def bass_note(freq: float, hold: float, vel: float, sr: int, rng: np.random.Generator,
              bright: float) -> np.ndarray:
    """Sub sine plus a filtered saw: a synth/electric bass."""
    n = int((hold + 0.08) * sr)
    t = np.arange(n) / sr
    tone = np.sin(2 * np.pi * freq * t) + 0.5 * lowpass(poly_saw(freq, n, sr), 300 + 900 * bright, sr)
    return vel * tone * envelope(n, sr, 0.005, 0.25, 0.6, 0.04, hold)


def pad_note(freq: float, hold: float, vel: float, sr: int, rng: np.random.Generator,
             bright: float) -> np.ndarray:
    """Three slightly detuned saws with a slow attack."""
    n = int((hold + 0.4) * sr)
    tone = sum(poly_saw(freq * 2 ** (c / 1200), n, sr, rng.uniform()) for c in (-7, 0, 7))
    tone = lowpass(tone / 3, 600 + 3000 * bright, sr)
    return vel * tone * envelope(n, sr, min(0.3, hold / 2), 0.5, 0.8, 0.3, hold)


def piano_note(freq: float, hold: float, vel: float, sr: int, rng: np.random.Generator,
               bright: float) -> np.ndarray:
    """Decaying, slightly inharmonic partials; higher partials die faster."""
    n = int((min(hold, 1.5) + 0.2) * sr)
    k = np.arange(1, 9)
    amps = (0.5 + 0.5 * bright) ** (k - 1) / k
    tone = partials(freq, n, sr, amps, decays=1.5 + 1.2 * k, inharmonicity=2e-4, rng=rng)
    return vel * tone * envelope(n, sr, 0.003, 10.0, 1.0, 0.08, hold)


def pluck_note(freq: float, hold: float, vel: float, sr: int, rng: np.random.Generator,
               bright: float) -> np.ndarray:
    """A plucked string: bright attack, fast exponential decay of every partial."""
    n = int(min(hold + 0.3, 1.2) * sr)
    k = np.arange(1, 11)
    amps = np.abs(np.sin(np.pi * k * rng.uniform(0.1, 0.3))) / k ** (1.3 - 0.5 * bright)
    return vel * partials(freq, n, sr, amps, decays=3.0 + 0.9 * k, rng=rng)


def lead_note(freq: float, hold: float, vel: float, sr: int, rng: np.random.Generator,
              bright: float) -> np.ndarray:
    """A square/saw lead with delayed vibrato."""
    n = int((hold + 0.1) * sr)
    t = np.arange(n) / sr
    vib = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t) * np.clip(t / 0.3, 0, 1)
    tone = 0.6 * poly_square(freq * vib, n, sr) + 0.4 * poly_saw(freq * vib, n, sr)
    tone = lowpass(tone, 1000 + 3500 * bright, sr)
    return vel * tone * envelope(n, sr, 0.02, 0.2, 0.7, 0.06, hold)


def organ_note(freq: float, hold: float, vel: float, sr: int, rng: np.random.Generator,
               bright: float) -> np.ndarray:
    """Drawbar organ: steady sine partials 1, 2, 3, 4, 6, 8."""
    n = int((hold + 0.05) * sr)
    amps = np.zeros(8)
    amps[[0, 1, 2, 3, 5, 7]] = [1.0, 0.7, 0.5 * bright + 0.2, 0.4, 0.3 * bright, 0.2 * bright]
    tone = partials(freq, n, sr, amps, rng=rng) / 2
    return vel * tone * envelope(n, sr, 0.01, 0.1, 0.95, 0.03, hold)


def guitar_note(freq: float, hold: float, vel: float, sr: int, rng: np.random.Generator,
                bright: float) -> np.ndarray:
    """Overdriven guitar: two detuned saws through a tanh, then a cabinet-like low-pass."""
    n = int((hold + 0.05) * sr)
    tone = poly_saw(freq, n, sr) + poly_saw(freq * 1.003, n, sr, 0.3)
    tone = np.tanh(3.0 * tone) * envelope(n, sr, 0.004, 0.6, 0.6, 0.03, hold)
    return vel * lowpass(tone, 1500 + 2500 * bright, sr) * 0.5


INSTRUMENTS = {"bass": bass_note, "pad": pad_note, "piano": piano_note, "pluck": pluck_note,
               "lead": lead_note, "organ": organ_note, "guitar": guitar_note}


# --- drums: one sample per track (random parameters), reused for every hit ---

def kick(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.35 * sr)
    t = np.arange(n) / sr
    f0, f1 = rng.uniform(110, 170), rng.uniform(40, 60)
    freq = f1 + (f0 - f1) * np.exp(-t / rng.uniform(0.02, 0.05))
    tone = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    click = rng.standard_normal(n) * np.exp(-t / 0.003) * 0.3
    return (tone + click) * np.exp(-t / rng.uniform(0.08, 0.18))


def snare(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    noise = bandpass(rng.standard_normal(n), 1000, 6000, sr) * np.exp(-t / rng.uniform(0.04, 0.09))
    body = np.sin(2 * np.pi * rng.uniform(160, 220) * t) * np.exp(-t / 0.03)
    return 0.8 * noise + 0.5 * body


def hihat(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.12 * sr)
    t = np.arange(n) / sr
    return 0.5 * highpass(rng.standard_normal(n), 6000, sr, 4) * np.exp(-t / rng.uniform(0.015, 0.04))


def ride(sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(0.6 * sr)
    t = np.arange(n) / sr
    noise = highpass(rng.standard_normal(n), 4000, sr, 2) * np.exp(-t / 0.25)
    ping = partials(rng.uniform(500, 700), n, sr, np.array([0.0, 0.3, 0.2, 0.0, 0.15])) * np.exp(-t / 0.3)
    return 0.25 * noise + 0.3 * ping


DRUMS = {"kick": kick, "snare": snare, "hihat": hihat, "ride": ride}

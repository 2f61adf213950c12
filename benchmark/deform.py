"""Audio deformations for the robustness protocol (``mirprobe run robustness``).

A deformation is a name and its parameters, every parameter (defaults filled in) part of its
identity: the identity enters the deformed feature entry's key, so an entry is never reused for
audio it was not made from. Each one is deterministic: its randomness (noise, the reverb's
impulse response) comes from its ``seed`` (and, for noise, the file's name), never from global
state. Deformations run on the decoded file at its own sample rate, before resampling to the
model's, so that every model hears the same deformed audio.

======== ============================================= =========================================
name     parameters (defaults)                         what
======== ============================================= =========================================
noise    ``snr_db`` (required), ``color`` (white),     additive white or pink (1/f power) noise
         ``seed`` (0)                                  at the given SNR over the whole track
lowpass  ``cutoff_hz`` (required), ``order`` (8)       Butterworth low-pass, zero phase
telephone ``low_hz`` (300), ``high_hz`` (3400),        Butterworth band-pass, zero phase
         ``order`` (4)
codec    ``format`` (mp3; vorbis, opus),               encoded and decoded in memory by
         ``compression`` (0.9)                         soundfile's libsndfile; length kept
gain     ``db`` (required)                             multiplied by 10^(db/20), not clipped
pitch    ``semitones`` (required)                      ``librosa.effects.pitch_shift``
stretch  ``rate`` (required)                           ``librosa.effects.time_stretch`` (rate > 1:
                                                       faster, shorter); beat labels ÷ rate
reverb   ``rt60_s`` (0.5), ``mix`` (0.5), ``seed`` (0)  convolution with a synthetic impulse
                                                       response: seeded white noise decaying
                                                       60 dB over rt60_s; loudness kept
======== ============================================= =========================================
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.errors import DataError, UserError

VERSION = 1  # part of every deformed entry's key: raised when a deformation's output changes
COLORS = ("white", "pink")
CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "vorbis": ("OGG", "VORBIS"),
          "opus": ("OGG", "OPUS")}
# Rates each encoder accepts (libsndfile); other rates are resampled to the next one above
CODEC_RATES = {"mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
               "opus": (8000, 12000, 16000, 24000, 48000)}
REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One parameter: its type (``float``, ``int`` or a tuple of allowed words), its default
    (``REQUIRED``: none) and the range it must lie in (a test and its wording)."""

    kind: Any
    default: Any = REQUIRED
    ok: Callable[[float], bool] = lambda v: math.isfinite(v)
    wording: str = "a finite number"


POSITIVE = dict(ok=lambda v: math.isfinite(v) and v > 0, wording="a number > 0")
SHARE = dict(ok=lambda v: 0 <= v <= 1, wording="a number in [0, 1]")
ORDER = dict(ok=lambda v: 1 <= v <= 16, wording="a whole number in 1..16")
SEED = Param(int, 0, lambda v: v >= 0, "a whole number >= 0")

KINDS: dict[str, dict[str, Param]] = {
    "noise": {"snr_db": Param(float), "color": Param(COLORS, "white"), "seed": SEED},
    "lowpass": {"cutoff_hz": Param(float, **POSITIVE), "order": Param(int, 8, **ORDER)},
    "telephone": {"low_hz": Param(float, 300.0, **POSITIVE),
                  "high_hz": Param(float, 3400.0, **POSITIVE), "order": Param(int, 4, **ORDER)},
    "codec": {"format": Param(tuple(CODECS), "mp3"), "compression": Param(float, 0.9, **SHARE)},
    "gain": {"db": Param(float)},
    "pitch": {"semitones": Param(float)},
    "stretch": {"rate": Param(float, **POSITIVE)},
    "reverb": {"rt60_s": Param(float, 0.5, **POSITIVE), "mix": Param(float, 0.5, **SHARE),
               "seed": SEED},
}


@dataclass(frozen=True)
class Deformation:
    """A deformation with every parameter set (see the module docstring)."""

    name: str
    params: tuple[tuple[str, Any], ...]  # sorted by parameter name
    key: str = "deformation"  # the config key it came from, for error messages

    def __getitem__(self, param: str) -> Any:
        return dict(self.params)[param]

    def identity(self) -> dict[str, Any]:
        """What makes the deformed audio: name, every parameter, the deformation code's version."""
        return {"name": self.name, **dict(self.params), "version": VERSION}

    @property
    def label(self) -> str:
        """Short display name, e.g. ``noise(snr_db=20,color=white,seed=0)``."""
        return deformation_label(self.identity())

    def apply(self, wave: np.ndarray, sample_rate: int, name: str = "") -> np.ndarray:
        """The deformed mono ``wave`` (float32, at ``sample_rate``); ``name``: the file's name,
        which seeds per-file noise."""
        out = APPLY[self.name](np.asarray(wave, dtype=np.float64), sample_rate, name, **dict(self.params))
        return np.ascontiguousarray(out, dtype=np.float32)

    def windows(self, path: str | Path, sample_rate: int, window: int, min_samples: int,
                prepare: Callable[[np.ndarray], np.ndarray]) -> Iterator[np.ndarray]:
        """The prepared windows of the deformed file, as ``mirprobe.windowing.file_windows``
        cuts the clean one (``DataError`` naming the file)."""
        from mirprobe.audio import load_native, resample, window_bounds

        wave, rate = load_native(path)
        try:
            wave = resample(self.apply(wave, rate, Path(path).name), rate, sample_rate)
        except Exception as e:  # noqa: BLE001 - e.g. a track too short for the STFT: its item fails
            raise DataError(f"{path}: cannot apply {self.label} ({e}); the item is excluded") from e
        for a, b in window_bounds(len(wave), window, min_samples):
            yield np.ascontiguousarray(prepare(wave[a:b]), dtype=np.float32)


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def parse(entry: Any, key: str) -> Deformation:
    """A config entry (a name, or a mapping ``{name: ..., param: value}``) → a
    :class:`Deformation`, with one-line errors naming ``key`` and the parameter."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise UserError(f"config key {key!r}: {entry!r} is not a deformation; give a mapping "
                        "with a name, e.g. {name: noise, snr_db: 20}")
    name = entry["name"]
    if name not in KINDS:
        raise UserError(f"config key '{key}.name': unknown deformation {name!r}; use one of: "
                        f"{', '.join(KINDS)}")
    spec = KINDS[name]
    unknown = [p for p in entry if p != "name" and p not in spec]
    if unknown:
        raise UserError(f"config key '{key}.{unknown[0]}': {name} has no parameter "
                        f"{unknown[0]!r}; its parameters: {', '.join(spec)}")
    params = {p: _value(f"{key}.{p}", entry.get(p, param.default), param)
              for p, param in spec.items()}
    if name == "telephone" and params["low_hz"] >= params["high_hz"]:
        raise UserError(f"config key '{key}.low_hz': {params['low_hz']:g} Hz is not below "
                        f"high_hz ({params['high_hz']:g} Hz)")
    return Deformation(name, tuple(sorted(params.items())), key)


def _value(key: str, value: Any, param: Param) -> Any:
    if value is REQUIRED:
        raise UserError(f"config key {key!r} is required; give e.g. {key.rsplit('.', 1)[-1]}: 1")
    if isinstance(param.kind, tuple):
        if value not in param.kind:
            raise UserError(f"config key {key!r}: {value!r} is not allowed; use one of: "
                            f"{', '.join(param.kind)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            param.kind is int and float(value) != int(value)):
        what = "a whole number" if param.kind is int else "a number"
        raise UserError(f"config key {key!r}: {value!r} is not {what}")
    if not param.ok(float(value)):
        raise UserError(f"config key {key!r}: {value!r} is out of range; give {param.wording}")
    return param.kind(value)


def deformation_label(identity: Mapping[str, Any]) -> str:
    """The display name of a deformation's identity (as an entry's meta or a record keeps it)."""
    params = {k: v for k, v in identity.items() if k not in ("name", "version")}
    return f"{identity['name']}({','.join(f'{k}={_show(v)}' for k, v in sorted(params.items()))})"


def parse_all(entries: Any, key: str = "robustness.deformations") -> list[Deformation]:
    """Every entry of the config's deformation list, checked; duplicates are an error."""
    out = [parse(e, f"{key}[{i}]") for i, e in enumerate(entries or [])]
    seen: dict[str, str] = {}
    for d in out:
        if d.label in seen:
            raise UserError(f"config key {d.key!r}: {d.label} is given twice (also at "
                            f"{seen[d.label]}); give each deformation once")
        seen[d.label] = d.key
    return out


# --------------------------------------------------------------------------- the deformations

def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectral density ∝ 1/f (the DC bin removed)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n)


def noise(x: np.ndarray, sr: int, name: str, *, snr_db: float, color: str, seed: int) -> np.ndarray:
    """``x`` plus noise scaled so that power(x) / power(noise) is exactly ``snr_db`` (a silent
    track stays silent: it has no level to measure the noise against)."""
    rng = _rng(seed, name)
    n = rng.standard_normal(len(x)) if color == "white" else pink(len(x), rng)
    p_signal, p_noise = np.mean(x * x), np.mean(n * n)
    if p_signal == 0 or p_noise == 0:
        return x
    return x + n * np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))


def _butter(x: np.ndarray, sr: int, order: int, low: float | None, high: float | None) -> np.ndarray:
    """Zero-phase Butterworth filter; an edge at or beyond Nyquist is left out (nothing there to
    remove)."""
    from scipy.signal import butter, sosfiltfilt

    nyquist = sr / 2
    low = low if low is not None and low < nyquist else None
    high = high if high is not None and high < nyquist else None
    if low is None and high is None or len(x) < 3 * (2 * order + 1):
        return x
    if low is not None and high is not None:
        sos = butter(order, [low, high], "bandpass", fs=sr, output="sos")
    elif high is not None:
        sos = butter(order, high, "lowpass", fs=sr, output="sos")
    else:
        sos = butter(order, low, "highpass", fs=sr, output="sos")
    return sosfiltfilt(sos, x)


def lowpass(x: np.ndarray, sr: int, name: str, *, cutoff_hz: float, order: int) -> np.ndarray:
    return _butter(x, sr, order, None, cutoff_hz)


def telephone(x: np.ndarray, sr: int, name: str, *, low_hz: float, high_hz: float,
              order: int) -> np.ndarray:
    return _butter(x, sr, order, low_hz, high_hz)


def codec(x: np.ndarray, sr: int, name: str, *, format: str, compression: float) -> np.ndarray:  # noqa: A002
    """Encoded and decoded in memory (soundfile, libsndfile's encoders); at a rate the encoder
    takes (resampled to the next one above, and back); cut or zero-padded to the input length."""
    import soundfile as sf

    from mirprobe.audio import resample

    container, subtype = CODECS[format]
    rates = CODEC_RATES.get(format)
    rate = sr if rates is None or sr in rates else next((r for r in rates if r > sr), rates[-1])
    y = resample(x.astype(np.float32), sr, rate)
    buf = io.BytesIO()
    sf.write(buf, y, rate, format=container, subtype=subtype, compression_level=compression)
    buf.seek(0)
    decoded, _ = sf.read(buf, dtype="float32")
    out = resample(decoded if decoded.ndim == 1 else decoded.mean(1), rate, sr)
    return np.pad(out[: len(x)], (0, max(0, len(x) - len(out))))


def gain(x: np.ndarray, sr: int, name: str, *, db: float) -> np.ndarray:
    return x * 10 ** (db / 20)


def pitch(x: np.ndarray, sr: int, name: str, *, semitones: float) -> np.ndarray:
    import librosa

    return librosa.effects.pitch_shift(x.astype(np.float32), sr=sr, n_steps=semitones)


def stretch(x: np.ndarray, sr: int, name: str, *, rate: float) -> np.ndarray:
    import librosa

    return librosa.effects.time_stretch(x.astype(np.float32), rate=rate)


def impulse_response(sr: int, rt60_s: float, seed: int) -> np.ndarray:
    """A synthetic room: seeded white noise decaying by 60 dB over ``rt60_s``, unit energy."""
    t = np.arange(max(1, int(round(rt60_s * sr)))) / sr
    h = np.random.default_rng(int(seed)).standard_normal(len(t)) * np.exp(-math.log(1000) * t / rt60_s)
    return h / np.sqrt(np.sum(h * h))


def reverb(x: np.ndarray, sr: int, name: str, *, rt60_s: float, mix: float, seed: int) -> np.ndarray:
    """``(1 − mix)·x + mix·(x ∗ h)``, cut to the input length and scaled back to its RMS."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(x, impulse_response(sr, rt60_s, seed))[: len(x)]
    y = (1 - mix) * x + mix * wet
    rms_x, rms_y = np.sqrt(np.mean(x * x)), np.sqrt(np.mean(y * y))
    return y * (rms_x / rms_y) if rms_y > 0 else y


APPLY: dict[str, Callable[..., np.ndarray]] = {
    "noise": noise, "lowpass": lowpass, "telephone": telephone, "codec": codec, "gain": gain,
    "pitch": pitch, "stretch": stretch, "reverb": reverb}


# --------------------------------------------------------------------------- labels

def check_task(d: Deformation, task: Any, task_name: str) -> None:
    """A deformation a task's labels cannot follow: a one-line error naming the config key.

    Time stretch moves every time: beat labels are stretched with it (:func:`relabel`), other
    frame tasks (chords) are refused. Pitch shift moves the key: key labels are transposed by a
    whole number of semitones, chords are refused. Clip labels other than keys are taken to be
    unchanged by both (a task of your own whose labels are pitches must not run under ``pitch``).
    """
    from mirprobe.tasks.key import KeyTask

    why = None
    if d.name == "stretch" and task.view == "frame" and task.kind != "beat":
        why = "its frame labels cannot be stretched (only beat labels are)"
    elif d.name == "pitch" and task.view == "frame" and task.kind != "beat":
        why = "a pitch shift changes its frame labels"
    elif d.name == "pitch" and isinstance(task, KeyTask) and d["semitones"] != int(d["semitones"]):
        why = "key labels follow whole semitones only; give a whole number of semitones"
    if why:
        raise UserError(f"config key {d.key!r}: task {task_name!r} cannot take {d.label}: {why}")


def relabel(d: Deformation, task: Any, label: Any) -> Any:
    """The label of a deformed track: beat times (and downbeats) × 1/rate and tempo × rate under
    time stretch; keys transposed under pitch shift; otherwise the label itself."""
    from mirprobe.tasks.key import KEYS, KeyTask, key_index

    if d.name == "stretch" and task.kind == "beat" and isinstance(label, dict):
        rate = float(d["rate"])
        out = dict(label)
        for field in ("beat", "downbeat"):
            if out.get(field) is not None:
                out[field] = [float(t) / rate for t in out[field]]
        if isinstance(out.get("tempo"), int | float) and not isinstance(out["tempo"], bool):
            out["tempo"] = float(out["tempo"]) * rate
        return out
    if d.name == "pitch" and isinstance(task, KeyTask):
        try:
            k = key_index(label)
        except ValueError:
            return label  # the task excludes it with its own reason
        return KEYS[(k % 12 + int(d["semitones"])) % 12 + 12 * (k // 12)]
    return label

"""Notes to audio through a General MIDI SoundFont: a MIDI file (mido) rendered by midirenderer.

The SoundFont is ``TimGM6mb.sf2`` (Tim Brechbill's 6 MB General MIDI bank), shipped inside the
``pretty_midi`` wheel; ``midirenderer`` (a Rust SoundFont synthesiser in a wheel, no system
libraries) renders 48 kHz stereo, which is mixed to mono, resampled to 16 kHz (soxr) and
brought to a loudness, never clipped. Rendering is deterministic on one machine.
"""

from __future__ import annotations

import functools
import importlib.util
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mirprobe.errors import UserError

SOUNDFONT = "TimGM6mb.sf2"
SOUNDFONT_PACKAGE = "pretty_midi"
INSTALL = "pip install pretty_midi midirenderer"
SAMPLE_RATE = 16000
PEAK = 0.89  # -1 dBFS: the loudest sample of a clip
_TICKS_PER_SECOND = 1920  # at MIDI's default tempo (120 quarter notes a minute, 960 ticks each)


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    end: float
    pitch: int  # MIDI number
    velocity: int
    program: int  # General MIDI program, 0-based


def soundfont_path() -> Path:
    """Where the SoundFont is; a one-line error naming the package to install when it is not."""
    spec = importlib.util.find_spec(SOUNDFONT_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(f"the scores suite plays its notes with {SOUNDFONT} from the "
                        f"{SOUNDFONT_PACKAGE} package, which is not installed; install it: {INSTALL}")
    path = Path(spec.origin).parent / SOUNDFONT
    if not path.is_file():
        raise UserError(f"the SoundFont {path} is missing; reinstall it: "
                        f"pip install --force-reinstall {SOUNDFONT_PACKAGE}")
    return path


@functools.lru_cache(maxsize=2)
def read_soundfont(path: str) -> bytes:
    """The SoundFont's bytes, checked to be a SoundFont 2 file (RIFF ``sfbk``) of the right size."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the SoundFont {path} ({e.strerror}); reinstall it: "
                        f"pip install --force-reinstall {SOUNDFONT_PACKAGE}") from e
    size = int.from_bytes(data[4:8], "little") + 8 if len(data) >= 12 else -1
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk" or size != len(data):
        raise UserError(f"the SoundFont {path} is corrupt (not a complete SoundFont 2 file); "
                        f"reinstall it: pip install --force-reinstall {SOUNDFONT_PACKAGE}")
    return data


def midi_file(notes: Sequence[Note], seconds: float = 0.0) -> bytes:
    """A type-0 MIDI file playing ``notes``, one channel per program (channel 10, drums, unused),
    lasting at least ``seconds`` (the renderer stops at the file's end: this keeps the release)."""
    import mido

    programs = sorted({n.program for n in notes})
    channels = [c for c in range(16) if c != 9]
    if len(programs) > len(channels):
        raise ValueError(f"{len(programs)} programs do not fit in 15 MIDI channels")
    channel = dict(zip(programs, channels, strict=False))
    events = []  # (tick, order, message): note-offs before note-ons at the same tick
    for n in notes:
        on, off = round(n.start * _TICKS_PER_SECOND), round(n.end * _TICKS_PER_SECOND)
        c = channel[n.program]
        events.append((on, 1, mido.Message("note_on", channel=c, note=n.pitch, velocity=n.velocity)))
        events.append((max(off, on + 1), 0, mido.Message("note_off", channel=c, note=n.pitch)))
    events.sort(key=lambda e: (e[0], e[1], e[2].channel, e[2].note))
    track = mido.MidiTrack([mido.Message("program_change", channel=channel[p], program=p)
                            for p in programs])
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, round(seconds * _TICKS_PER_SECOND) - now)))
    out = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=960, tracks=[track]).save(file=out)
    return out.getvalue()


def synthesize(notes: Sequence[Note], seconds: float, soundfont: str) -> np.ndarray:
    """``seconds`` of mono float32 audio at 16 kHz (silence after the rendered tail)."""
    import midirenderer
    import soundfile as sf
    import soxr

    try:
        wav = midirenderer.render_wave_from(read_soundfont(soundfont), midi_file(notes, seconds))
    except (ValueError, RuntimeError) as e:
        raise UserError(f"the SoundFont {soundfont} cannot be played ({e}); reinstall it: "
                        f"pip install --force-reinstall {SOUNDFONT_PACKAGE}") from e
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    mono = soxr.resample(audio.mean(axis=1), rate, SAMPLE_RATE, quality="HQ")
    n = round(seconds * SAMPLE_RATE)
    return np.pad(mono[:n], (0, max(0, n - len(mono)))).astype(np.float32)


def level(audio: np.ndarray, rms_db: float) -> np.ndarray:
    """``audio`` scaled to ``rms_db`` dBFS RMS, or less where its peak would pass :data:`PEAK`."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    peak = float(np.max(np.abs(audio)))
    if rms == 0.0:
        return audio
    gain = min(10 ** (rms_db / 20) / rms, PEAK / peak)
    return (audio * gain).astype(np.float32)


def write_wav(path: str, audio: np.ndarray) -> dict[str, float]:
    """Write 16-bit PCM at 16 kHz; returns the clip's RMS and peak (dBFS) as written."""
    import soundfile as sf

    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    sf.write(path, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    x = pcm.astype(np.float64) / 32768.0
    rms = float(np.sqrt(np.mean(np.square(x))))
    return {"rms_db": round(20 * np.log10(max(rms, 1e-10)), 3),
            "peak_db": round(20 * np.log10(max(float(np.max(np.abs(x))), 1e-10)), 3)}

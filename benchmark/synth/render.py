"""Render a :class:`~mirprobe.synth.spec.SongSpec` into audio with exact beat annotations.

The song lives on a beat grid: beat ``k`` (any integer) sounds at ``phase + k·60/tempo`` and
sits at position ``(pickup + k) mod meter`` in its bar; bar ``b`` starts at beat
``b·meter − pickup``. Parts (drums, bass, chords, arpeggio, melody) are written as note
events on that grid from one bar before time 0, mixed, filtered, and cut to the duration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirprobe.synth import music
from mirprobe.synth.spec import GENRES, SongSpec

Note = tuple[str, float, float, float, float]  # instrument, onset s, midi, held s, velocity


@dataclass
class Rendered:
    audio: np.ndarray  # int16 [samples]
    beats: np.ndarray  # seconds, within [0, duration)
    downbeats: np.ndarray
    rms_db: float  # RMS of the final audio, dBFS
    parts: dict[str, float]  # level of each rendered part relative to the music mix, dB


class Grid:
    """Times of beats and sixteenth steps (with swing) for one song."""

    def __init__(self, spec: SongSpec, duration: float) -> None:
        self.spec, self.period = spec, 60.0 / spec.tempo
        self.meter, self.pickup = spec.meter, spec.pickup
        r = spec.swing
        self.offsets = np.array([0.0, r / 2, r, r + (1 - r) / 2])
        # bars from the one sounding before time 0 to the one holding the end
        self.first_bar = int(np.floor((self.pickup - spec.phase / self.period) / self.meter)) - 1
        last_beat = int(np.ceil((duration - spec.phase) / self.period))
        self.last_bar = (last_beat + self.pickup) // self.meter

    def beat_time(self, k: float) -> float:
        return self.spec.phase + k * self.period

    def step_time(self, step: int) -> float:
        """Time of sixteenth ``step`` counted from beat 0 (4 steps per beat, swing applied)."""
        k, sub = divmod(step, 4)
        return self.beat_time(k) + self.offsets[sub] * self.period

    def bar_step(self, bar: int) -> int:
        return (bar * self.meter - self.pickup) * 4


def render(spec: SongSpec, duration: float, sr: int) -> Rendered:
    """Audio and beat/downbeat times (seconds) of ``spec``, ``duration`` seconds long."""
    rng = np.random.default_rng(spec.seed)
    grid = Grid(spec, duration)
    notes = compose(spec, grid, rng)
    pre = grid.beat_time(grid.bar_step(grid.first_bar) / 4)  # negative: start of the first bar
    n_out = int(round(duration * sr))
    start = int(round(-pre * sr))
    mix, parts = _mix(spec, notes, _drum_hits(spec, grid, rng), rng, sr, start, start + n_out)
    audio = _master(spec, mix, rng, sr)
    beats, downbeats = annotations(spec, duration)
    rms_db = float(20 * np.log10(np.sqrt(np.mean((audio / 32768.0) ** 2)) + 1e-12))
    return Rendered(audio, beats, downbeats, rms_db, parts)


def annotations(spec: SongSpec, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Beat and downbeat times in ``[0, duration)`` (rounded to the microsecond)."""
    period = 60.0 / spec.tempo
    k = np.arange(int(np.ceil((duration - spec.phase) / period)) + 1)
    times = spec.phase + k * period
    keep = times < duration
    times, k = np.round(times[keep], 6), k[keep]
    return times, times[(spec.pickup + k) % spec.meter == 0]


# --- composition -------------------------------------------------------------------------

def _scale(spec: SongSpec) -> tuple[int, ...]:
    return music.MAJOR_SCALE if spec.mode == "major" else music.MINOR_SCALE


def chord_tones(spec: SongSpec, degree: int, harmony: str) -> list[int]:
    """Semitones above the tonic of the chord on scale ``degree`` (stacked thirds)."""
    scale = _scale(spec)

    def tone(i: int) -> int:
        return scale[i % 7] + 12 * (i // 7)

    idx = [degree, degree + 2, degree + 4] + {"seventh": [degree + 6], "add9": [degree + 8]}.get(harmony, [])
    tones = [tone(i) for i in idx]
    if spec.mode == "minor" and spec.raised_seventh and degree % 7 == 4:
        tones[1] += 1  # V major in a minor key: the leading tone makes the mode audible
    return tones


def _voice(tones: list[int], tonic: int, low: int) -> list[int]:
    """Place each chord tone in the octave starting at MIDI ``low`` (close voicing)."""
    return sorted(low + (tonic + t - low) % 12 for t in tones)


def _slots(spec: SongSpec, grid: Grid) -> list[tuple[int, int, int, int]]:
    """Chord slots as (start step, end step, degree, next degree) over every bar."""
    cpb = spec.chords_per_bar if spec.meter == 4 else 1
    length = spec.meter * 4 // cpb
    prog = spec.progression
    out = []
    for bar in range(grid.first_bar, grid.last_bar + 1):
        for j in range(cpb):
            s = bar * cpb + j
            start = grid.bar_step(bar) + j * length
            out.append((start, start + length, prog[s % len(prog)], prog[(s + 1) % len(prog)]))
    return out


def compose(spec: SongSpec, grid: Grid, rng: np.random.Generator) -> list[Note]:
    """Note events of every pitched part."""
    g = GENRES[spec.genre]
    slots = _slots(spec, grid)
    notes: list[Note] = []
    parts = {"bass": _bass, "pad": _chords, "piano": _chords, "organ": _chords,
             "guitar": _guitar, "pluck": _arpeggio, "lead": _melody}
    for inst in spec.instruments:
        if inst in parts:
            notes += parts[inst](inst, spec, g, grid, slots, rng)
    return notes


def _note(inst: str, grid: Grid, step: float, steps: float, midi: float, vel: float,
          legato: float = 0.9) -> Note:
    t0 = grid.step_time(int(step))
    t1 = grid.step_time(int(step + steps))
    return (inst, t0, midi, max(legato * (t1 - t0), 0.03), vel)


def _bass(inst, spec, g, grid, slots, rng) -> list[Note]:
    low = int(rng.integers(33, 41))
    out = []
    for start, end, degree, nxt in slots:
        tones = chord_tones(spec, degree, "triad")
        root = low + (spec.tonic + tones[0] - low) % 12
        fifth = low + (spec.tonic + tones[2] - low) % 12
        if g.bass == "eighths":
            out += [_note(inst, grid, s, 2, root, 0.8) for s in range(start, end, 2)]
        elif g.bass == "offbeat":
            out += [_note(inst, grid, s + 2, 2, root + 12 * (rng.uniform() < 0.2), 0.8)
                    for s in range(start, end, 4)]
        elif g.bass == "walking":
            nroot = low + (spec.tonic + chord_tones(spec, nxt, "triad")[0] - low) % 12
            line = [root, low + (spec.tonic + tones[1] - low) % 12, fifth, nroot + rng.choice([-1, 1])]
            beats = list(range(start, end, 4))
            line = line[:len(beats) - 1] + [line[-1]] if len(beats) > 1 else line[:1]
            out += [_note(inst, grid, s, 4, m, 0.75) for s, m in zip(beats, line, strict=True)]
        elif g.bass == "root_fifth":
            half = (end - start) // 2 // 4 * 4
            out += [_note(inst, grid, start, half, root, 0.8),
                    _note(inst, grid, start + half, end - start - half, fifth, 0.7)]
        elif g.bass == "sync":
            out += [_note(inst, grid, start + s, 3, root, 0.8) for s in (0, 7, 10) if start + s < end]
        else:  # sustain
            out.append(_note(inst, grid, start, end - start, root, 0.7))
    return out


def _chords(inst, spec, g, grid, slots, rng) -> list[Note]:
    style = "sustain" if inst == "pad" else ("sustain" if inst == "organ" and g.comp != "beats"
                                              else g.comp)
    low = int(rng.integers(52, 62))
    out = []
    for start, end, degree, _ in slots:
        voiced = _voice(chord_tones(spec, degree, g.harmony), spec.tonic, low)
        if style == "sustain":
            hits = [(start, end - start)]
        elif style == "beats":
            hits = [(s, 4) for s in range(start, end, 4)]
        elif style == "offbeat":
            hits = [(s + 2, 2) for s in range(start, end, 4)]
        else:  # charleston: on the beat, then the "and" of the next beat
            hits = [(s, 2) for s in (start, start + 6, start + 8) if s < end]
        vel = float(rng.uniform(0.6, 0.9))
        out += [_note(inst, grid, s, n, m, vel, 0.85) for s, n in hits for m in voiced]
    return out


def _guitar(inst, spec, g, grid, slots, rng) -> list[Note]:
    low = int(rng.integers(40, 47))
    full = rng.uniform() < 0.4  # full triads instead of power chords
    out = []
    for start, end, degree, _ in slots:
        tones = chord_tones(spec, degree, "triad")
        root = low + (spec.tonic + tones[0] - low) % 12
        voiced = [root, root + 7, root + 12] if not full else _voice(tones, spec.tonic, low)
        vel = float(rng.uniform(0.6, 0.9))
        out += [_note(inst, grid, s, 2, m, vel, 0.8) for s in range(start, end, 2) for m in voiced]
    return out


def _arpeggio(inst, spec, g, grid, slots, rng) -> list[Note]:
    low = int(rng.integers(57, 67))
    pattern = rng.choice(["up", "updown", "random"])
    out = []
    for start, end, degree, _ in slots:
        voiced = _voice(chord_tones(spec, degree, g.harmony), spec.tonic, low)
        voiced = voiced + [voiced[0] + 12]
        order = voiced + voiced[-2:0:-1] if pattern == "updown" else voiced
        for i, s in enumerate(range(start, end, g.arp_steps)):
            m = order[i % len(order)] if pattern != "random" else voiced[rng.integers(len(voiced))]
            out.append(_note(inst, grid, s, g.arp_steps, m, float(rng.uniform(0.5, 0.9))))
    return out


def _melody(inst, spec, g, grid, slots, rng) -> list[Note]:
    scale = _scale(spec)
    center = int(rng.integers(67, 77))
    # scale-degree index (with octaves) nearest the register centre
    pos = int(round((center - 60 - spec.tonic) / 12 * 7))
    out = []
    for start, end, degree, _ in slots:
        chord = {t % 12 for t in chord_tones(spec, degree, "triad")}
        s = start
        while s < end:
            length = int(min(rng.choice(g.melody_steps), end - s))
            pos += int(rng.choice([-2, -1, -1, 0, 1, 1, 2]))
            pos = int(np.clip(pos, (center - 66 - spec.tonic) * 7 // 12, (center - 54 - spec.tonic) * 7 // 12))
            if s == start or s % 4 == 0:  # strong positions land on chord tones
                pos = min((pos + d for d in (0, -1, 1, -2, 2)),
                          key=lambda p: (scale[p % 7] % 12 not in chord, abs(p - pos)))
            if rng.uniform() > 0.15:
                midi = 60 + spec.tonic + scale[pos % 7] + 12 * (pos // 7)
                out.append(_note(inst, grid, s, length, midi, float(rng.uniform(0.6, 1.0))))
            s += length
    return out


# --- drums -------------------------------------------------------------------------------

def _drum_pattern(genre: str, meter: int, rng: np.random.Generator) -> list[tuple[str, int, float]]:
    """(drum, sixteenth step in the bar, velocity) for one bar."""
    beats = range(meter)
    backbeats = [1, 3] if meter == 4 else [1, 2]
    eighths = range(0, meter * 4, 2)
    if genre == "rock":
        kicks = [0, 8] if meter == 4 else [0]
        if rng.uniform() < 0.5:
            kicks.append(10 if meter == 4 else 6)
        return ([("kick", s, 1.0) for s in kicks] + [("snare", 4 * b, 0.9) for b in backbeats]
                + [("hihat", s, 0.8 if s % 4 == 0 else 0.55) for s in eighths])
    if genre == "electronic":
        hats = [("hihat", 4 * b + 2, 0.8) for b in beats]
        if rng.uniform() < 0.5:
            hats += [("hihat", 4 * b + s, 0.3) for b in beats for s in (1, 3)]
        return ([("kick", 4 * b, 1.0) for b in beats]
                + [("snare", 4 * b, 0.8) for b in (backbeats if meter == 4 else [2])] + hats)
    if genre == "jazz":
        swung = [1, 3] if meter == 4 else [2]
        ghosts = [("snare", 4 * b + 2, 0.25) for b in beats if rng.uniform() < 0.25]
        return ([("ride", 4 * b, 0.7) for b in beats] + [("ride", 4 * b + 2, 0.45) for b in swung]
                + [("hihat", 4 * b, 0.35) for b in backbeats] + [("kick", 0, 0.45)] + ghosts)
    if genre == "folk":
        kicks = [0, 8] if meter == 4 else [0]
        return ([("kick", s, 0.7) for s in kicks] + [("snare", 4 * b, 0.45) for b in backbeats]
                + [("hihat", 4 * b, 0.4) for b in beats])
    if genre == "ambient":
        return [("kick", 0, 0.5)] + [("hihat", s, 0.25) for s in eighths]
    # hiphop
    kicks = [0, 7, 10] if meter == 4 else [0, 7]
    hats = range(0, meter * 4, 1 if rng.uniform() < 0.4 else 2)
    return ([("kick", s, 1.0) for s in kicks] + [("snare", 4 * b, 0.9) for b in ([1, 3] if meter == 4 else [1])]
            + [("hihat", s, 0.6 if s % 2 == 0 else 0.35) for s in hats])


def _drum_hits(spec: SongSpec, grid: Grid, rng: np.random.Generator) -> list[tuple[str, float, float]]:
    """(drum, time, velocity) of every drum hit; empty without drums."""
    if not spec.has_drums:
        return []
    pattern = _drum_pattern(spec.genre, spec.meter, rng)
    hits = []
    for bar in range(grid.first_bar, grid.last_bar + 1):
        base = grid.bar_step(bar)
        hits += [(d, grid.step_time(base + s), v * float(rng.uniform(0.85, 1.0))) for d, s, v in pattern]
    return hits


# --- mixing ------------------------------------------------------------------------------

def _add(buf: np.ndarray, x: np.ndarray, at: int) -> None:
    if at >= len(buf) or at + len(x) <= 0:
        return
    lo = max(0, -at)
    hi = min(len(x), len(buf) - at)
    buf[at + lo:at + hi] += x[lo:hi]


def _mix(spec: SongSpec, notes: list[Note], hits: list[tuple[str, float, float]],
         rng: np.random.Generator, sr: int, start: int, stop: int) -> tuple[np.ndarray, dict[str, float]]:
    """Sum of every part, each scaled to its gain (dB re. unit RMS), cut to ``[start, stop)``;
    also the level of each part that sounds, relative to the whole mix (dB)."""
    bright = float(np.clip(np.log(spec.cutoff / 700) / np.log(7000 / 700), 0, 1))
    detune = {i: float(rng.uniform(-6, 6)) for i in spec.instruments}  # cents, per instrument
    buffers: dict[str, np.ndarray] = {}
    cache: dict[tuple, np.ndarray] = {}  # repeated notes are rendered once
    for inst, t0, midi, hold, vel in notes:
        key = (inst, midi, round(hold, 3))
        if key not in cache:
            freq = float(music.midi_to_hz(midi, spec.tuning + detune[inst]))
            cache[key] = music.INSTRUMENTS[inst](freq, hold, 1.0, sr, rng, bright)
        buf = buffers.setdefault(inst, np.zeros(stop))
        _add(buf, vel * cache[key], int(round(t0 * sr)) + start)
    if hits:
        sounds = {d: f(sr, rng) for d, f in music.DRUMS.items()}
        level = {"kick": 1.0, "snare": 0.7, "hihat": 0.35, "ride": 0.35}
        buf = buffers.setdefault("drums", np.zeros(stop))
        for d, t0, vel in hits:
            _add(buf, level[d] * vel * sounds[d], int(round(t0 * sr)) + start)
    mix = np.zeros(stop - start)
    levels = {}
    for inst, buf in buffers.items():
        part = buf[start:]
        rms = np.sqrt(np.mean(part * part))
        if rms > 1e-9:
            mix += part / rms * 10 ** (spec.gains[inst] / 20)
            levels[inst] = spec.gains[inst]
    total = 10 * np.log10(np.mean(mix * mix) + 1e-24)
    return mix, {i: round(g - total, 2) for i, g in levels.items()}


def _master(spec: SongSpec, mix: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Room, brightness filter, background noise, loudness, soft limiting → int16."""
    mix = music.reverb(mix, spec.room, spec.wet, sr, rng)
    mix = music.lowpass(mix, spec.cutoff, sr)
    rms = np.sqrt(np.mean(mix * mix)) + 1e-12
    mix = mix / rms + music.pink_noise(len(mix), rng) * 10 ** (-spec.snr / 20)
    mix *= 10 ** (spec.loudness / 20) / np.sqrt(np.mean(mix * mix))
    over = np.abs(mix) > 0.5  # soft knee above -6 dBFS, ceiling at full scale
    mix[over] = np.sign(mix[over]) * (0.5 + 0.5 * np.tanh((np.abs(mix[over]) - 0.5) / 0.5))
    return np.round(np.clip(mix, -1.0, 1.0) * 32767).astype(np.int16)

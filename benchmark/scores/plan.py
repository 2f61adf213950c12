"""Every random choice of a scores suite, made before any audio is rendered.

Tunes are dealt into splits per dance (so every split holds each dance evenly, and a tune lies
in one split only); each tune gets a key to be moved to (target keys dealt in rounds of the 12
tonics of its mode, per split, so every key occurs), a tempo in its dance's range, an ensemble
of one to three instrument families playing its melody in octaves, a loudness and velocities.
The genre task's other pieces (chorales, masses, songs) get the same kind of ensemble, its
instruments sharing the voices out, a tempo in their style's range and a random transposition.
Single notes (pitch, instrument) are dealt per split by family, pitch drawn in the program's
range. Each tune's and note's choices come from its own seeded generator, so they do not
depend on the order anything is rendered in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from mirprobe.scores.instruments import BY_FAMILY, FAMILIES, Instrument, fit_shift, octave_shift
from mirprobe.scores.labels import TempoMap, beats_in, transposed
from mirprobe.scores.render import Note
from mirprobe.scores.repertoire import BPM, Piece
from mirprobe.scores.score import ParsedTune
from mirprobe.suites import SPLITS, deal, split_counts
from mirprobe.tasks.key import TONICS

T = TypeVar("T")
#: Beats a minute of each dance (the meter's beat: a half note in C|, a dotted quarter in 6/8).
TEMPI = {"reel": (96.0, 120.0), "hornpipe": (72.0, 100.0), "jig": (100.0, 124.0),
         "slip jig": (100.0, 128.0), "strathspey": (108.0, 136.0)}
ENSEMBLE_SIZES = (1, 2, 3)
LOUDNESS_DB = (-30.0, -16.0)  # RMS of a clip, dBFS
PITCH_RANGE = (48, 84)  # single notes: C3..C6
ACCENT = (12, 6)  # velocity added on downbeats and on the meter's other beats (players accent them)
ARTICULATION = 0.9  # a note sounds for this share of its notated length (dance players detach notes)


@dataclass(frozen=True)
class Clip:
    index: int
    split: str
    tune: ParsedTune
    number: int  # clip of the tune, 0 = its start (pickup included)
    key: str  # the label after transposition
    shift: int  # semitones
    qpm: float  # quarter notes a minute
    bpm: float  # the meter's beats a minute
    ensemble: tuple[Instrument, ...]
    rms_db: float
    seconds: float

    @property
    def name(self) -> str:
        return f"audio/clips/{self.index:06d}.wav"

    def tempo(self) -> TempoMap:
        return TempoMap(self.qpm, start=self.number * self.seconds * self.qpm / 60.0)

    def notes(self, seed: int) -> list[Note]:
        """What the ensemble plays in the clip (onsets inside it), times in clip seconds."""
        tempo = self.tempo()
        end = tempo.position(self.seconds)
        rng = np.random.default_rng([seed, 3, self.index])
        accents = {round(at, 6): ACCENT[0] if down else ACCENT[1]
                   for at, down in beats_in(self.tune, tempo.start, end)}
        pitches = [p + self.shift for _, _, p in self.tune.notes]
        out = []
        for inst in self.ensemble:
            octave = octave_shift(pitches, inst)
            base = int(rng.integers(64, 104))
            for onset, length, pitch in self.tune.notes:
                if not tempo.start - 1e-9 <= onset < end - 1e-9:
                    continue
                velocity = base + int(rng.integers(-5, 6)) + accents.get(round(onset, 6), 0)
                out.append(Note(tempo.seconds(onset), tempo.seconds(onset + ARTICULATION * length),
                                int(np.clip(pitch + self.shift + octave, 0, 127)),
                                int(np.clip(velocity, 1, 127)), inst.program))
        return out

    def beats(self) -> tuple[list[float], list[float]]:
        tempo = self.tempo()
        found = beats_in(self.tune, tempo.start, tempo.position(self.seconds))
        times = [round(tempo.seconds(at), 6) for at, _ in found]
        return times, [t for t, (_, down) in zip(times, found, strict=True) if down]


@dataclass(frozen=True)
class Playing:
    """How a genre piece is played: by whom, moved by how much, how fast, how loud."""

    ensemble: tuple[Instrument, ...]
    shift: int  # semitones
    bpm: float  # the meter's beats a minute
    rms_db: float


@dataclass(frozen=True)
class GenreClip:
    """The first seconds of a piece of the genre task's repertoire (not a dance tune)."""

    index: int
    split: str
    piece: Piece
    playing: Playing
    seconds: float

    @property
    def name(self) -> str:
        return f"audio/genre/{self.index:06d}.wav"

    @property
    def qpm(self) -> float:
        return self.playing.bpm * self.piece.beat

    def voices(self) -> list[tuple[Instrument, tuple[tuple[float, float, int], ...]]]:
        """(instrument, notes of a voice): voices dealt round the ensemble; a melody alone is
        doubled by every instrument, in octaves as a dance tune is."""
        parts, size = self.piece.parts, len(self.playing.ensemble)
        return [(inst, parts[i]) for j, inst in enumerate(self.playing.ensemble)
                for i in (range(j, len(parts), size) if len(parts) > 1 else [0])]

    def notes(self, seed: int) -> list[Note]:
        """What the ensemble plays in the clip, times in clip seconds."""
        rng = np.random.default_rng([seed, 7, self.index])
        end, scale = self.seconds * self.qpm / 60.0, 60.0 / self.qpm
        out = []
        for inst, part in self.voices():
            pitches = [p + self.playing.shift for _, _, p in part]
            move = octave_shift if len(self.piece.parts) == 1 else fit_shift
            octave = self.playing.shift + move(pitches, inst)
            base = int(rng.integers(64, 104))
            for onset, length, pitch in part:
                if onset < end - 1e-9:
                    velocity = base + int(rng.integers(-5, 6))
                    out.append(Note(onset * scale, (onset + ARTICULATION * length) * scale,
                                    int(np.clip(pitch + octave, 0, 127)),
                                    int(np.clip(velocity, 1, 127)), inst.program))
        return out


@dataclass(frozen=True)
class SingleNote:
    index: int
    split: str
    instrument: Instrument
    pitch: int
    velocity: int
    rms_db: float

    @property
    def name(self) -> str:
        return f"audio/notes/{self.index:06d}.wav"


def split_tunes(tunes: dict[str, list[T]], fractions: tuple[float, ...]) -> list[tuple[str, T]]:
    """(split, tune) in file order: each dance's tunes (or style's pieces) split by
    ``fractions``, train first."""
    out: list[tuple[str, T]] = []
    for s, split in enumerate(SPLITS):
        for genre in sorted(tunes):
            counts = split_counts(len(tunes[genre]), fractions)
            start = sum(counts[:s])
            out.extend((split, t) for t in tunes[genre][start:start + counts[s]])
    return out


def plan_clips(tunes: list[tuple[str, ParsedTune]], keys: dict[str, str], params: dict[str, Any],
               seed: int) -> list[Clip]:
    """Every clip, in file order; ``keys`` maps a tune's source to its (untransposed) key."""
    targets = _target_keys(tunes, keys, seed)
    clips: list[Clip] = []
    for i, (split, tune) in enumerate(tunes):
        rng = np.random.default_rng([seed, 2, i])
        bpm = float(rng.uniform(*TEMPI[tune.genre]))
        qpm = bpm * tune.bars[0].beat
        ensemble = _ensemble(rng)
        shift = _shift(keys[tune.source], targets[i])
        rms_db = float(rng.uniform(*LOUDNESS_DB))
        for number in range(params["clips_per_tune"]):
            clips.append(Clip(len(clips), split, tune, number, targets[i], shift, qpm, bpm,
                              ensemble, rms_db, params["duration"]))
    return clips


def _ensemble(rng: np.random.Generator) -> tuple[Instrument, ...]:
    size = int(rng.choice(ENSEMBLE_SIZES))
    families = rng.choice(len(FAMILIES), size, replace=False)
    return tuple(BY_FAMILY[FAMILIES[f]][int(rng.integers(len(BY_FAMILY[FAMILIES[f]])))]
                 for f in sorted(families))


def plan_genre(pieces: list[tuple[str, Piece]], params: dict[str, Any], seed: int) -> list[GenreClip]:
    """One clip of every piece (its first seconds), in file order."""
    out = []
    for i, (split, piece) in enumerate(pieces):
        rng = np.random.default_rng([seed, 6, i])
        bpm = float(rng.uniform(*BPM[piece.style]))
        ensemble = _ensemble(rng)
        playing = Playing(ensemble, int(rng.integers(-5, 7)), bpm, float(rng.uniform(*LOUDNESS_DB)))
        out.append(GenreClip(i, split, piece, playing, params["duration"]))
    return out


def dance_clips(clips: list[Clip], counts: list[int]) -> list[Clip]:
    """The genre task's dance tunes: the first clip of ``counts[s]`` tunes of each split, the
    dances taken in turn (each dance's first tune, then each one's second...)."""
    out = []
    for split, n in zip(SPLITS, counts, strict=True):
        firsts = [c for c in clips if c.split == split and c.number == 0]
        rank = {id(c): sum(d.tune.genre == c.tune.genre for d in firsts[:k]) for k, c in enumerate(firsts)}
        turns = sorted(firsts, key=lambda c: (rank[id(c)], c.tune.genre))
        if len(turns) < n:
            raise RuntimeError(f"{len(turns)} dance tunes in {split}, the genre task needs {n}")
        out += turns[:n]
    return out


def _target_keys(tunes: list[tuple[str, ParsedTune]], keys: dict[str, str], seed: int) -> list[str]:
    rng = np.random.default_rng([seed, 1, 0])
    out: list[str] = [""] * len(tunes)
    for split in SPLITS:
        for mode in ("major", "minor"):
            where = [i for i, (s, t) in enumerate(tunes) if s == split and keys[t.source].endswith(mode)]
            if where:
                for i, tonic in zip(where, deal(TONICS, len(where), rng), strict=True):
                    out[i] = f"{tonic} {mode}"
    return out


def _shift(key: str, target: str) -> int:
    from mirprobe.scores.labels import transposition

    shift = transposition(key, target)
    assert transposed(key, shift) == target
    return shift


def plan_notes(params: dict[str, Any], seed: int) -> list[SingleNote]:
    """The single notes of the pitch and instrument tasks, in file order."""
    out: list[SingleNote] = []
    rng = np.random.default_rng([seed, 4, 0])
    for split, n in zip(SPLITS, split_counts(params["notes"], params["split"]), strict=True):
        for family in deal(FAMILIES, n, rng):
            i = len(out)
            r = np.random.default_rng([seed, 5, i])
            choices = BY_FAMILY[family]
            inst = choices[int(r.integers(len(choices)))]
            low, high = max(inst.low, PITCH_RANGE[0]), min(inst.high, PITCH_RANGE[1])
            out.append(SingleNote(i, split, inst, int(r.integers(low, high + 1)),
                                  int(r.integers(50, 121)), float(r.uniform(*LOUDNESS_DB))))
    return out

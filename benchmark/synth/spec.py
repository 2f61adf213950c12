"""Genres and the random "song spec" that one synthetic track is rendered from.

A genre is a style sheet (tempo range, meter, swing, drum pattern, instrument palette,
harmony and accompaniment), with ranges that overlap between genres so that no single
parameter gives the genre away. A :class:`SongSpec` holds every random choice made for
one track; rendering it (``render.render``) is deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mirprobe.synth.music import TONICS

MODES = ("major", "minor")
#: MARBLE's key order: C..B major, then C..B minor.
KEYS = tuple(f"{t} {m}" for m in MODES for t in TONICS)
HARMONIC = ("pad", "piano", "organ", "guitar", "pluck")  # instruments that can carry the chords
PARTS = ("drums", "bass", "guitar", "piano", "organ", "pad", "pluck", "lead")
BORROW = 0.06  # probability of an instrument outside the genre's palette


@dataclass(frozen=True)
class Genre:
    name: str
    tempo: tuple[float, float]  # BPM range
    triple: float  # probability of 3/4
    swing: tuple[float, float]  # position of the off-beat eighth within the beat (0.5 = straight)
    palette: dict[str, float]  # instrument (or "drums") -> probability of being in a track
    harmony: str  # triad | seventh | add9
    major: tuple[tuple[int, ...], ...]  # chord progressions as scale degrees (0 = tonic)
    minor: tuple[tuple[int, ...], ...]
    chords_per_bar: tuple[int, ...]  # choices
    bass: str  # eighths | offbeat | walking | root_fifth | sustain | sync
    comp: str  # how piano/organ play chords: sustain | beats | offbeat | charleston
    arp_steps: int  # pluck arpeggio note length in sixteenths
    melody_steps: tuple[int, ...]  # lead note lengths in sixteenths (choices)
    cutoff: tuple[float, float]  # brightness: low-pass cutoff range in Hz (log-uniform)
    loudness: tuple[float, float]  # target RMS in dBFS
    room: tuple[float, float]  # reverb decay time range in seconds


GENRES: dict[str, Genre] = {g.name: g for g in (
    Genre("rock", (95, 165), 0.05, (0.5, 0.5),
          {"drums": 1.0, "bass": 0.95, "guitar": 0.9, "organ": 0.3, "lead": 0.5, "piano": 0.2,
           "pad": 0.1},
          "triad", ((0, 3, 4, 0), (0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 0, 4)),
          ((0, 5, 6, 0), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 4)),
          (1, 2), "eighths", "beats", 2, (2, 4), (1500, 6500), (-20, -11), (0.05, 0.5)),
    Genre("electronic", (115, 150), 0.02, (0.5, 0.5),
          {"drums": 0.95, "bass": 0.95, "pad": 0.7, "pluck": 0.7, "lead": 0.5, "piano": 0.1},
          "triad", ((0, 5, 3, 4), (0, 4, 5, 3), (0, 3, 5, 4)),
          ((0, 5, 2, 6), (0, 3, 5, 4), (0, 6, 5, 3)),
          (1,), "offbeat", "offbeat", 1, (1, 2, 2), (1800, 7000), (-19, -11), (0.05, 0.6)),
    Genre("jazz", (80, 180), 0.2, (0.6, 0.68),
          {"drums": 0.85, "bass": 0.95, "piano": 0.85, "organ": 0.3, "lead": 0.5},
          "seventh", ((0, 5, 1, 4), (0, 3, 1, 4), (1, 4, 0, 0)),
          ((0, 3, 1, 4), (1, 4, 0, 0), (0, 5, 1, 4)),
          (1, 2), "walking", "charleston", 2, (2, 2, 4), (1200, 5000), (-26, -16), (0.1, 0.6)),
    Genre("folk", (70, 130), 0.35, (0.5, 0.56),
          {"drums": 0.4, "bass": 0.5, "pluck": 0.95, "piano": 0.3, "lead": 0.5, "organ": 0.1},
          "triad", ((0, 3, 4, 0), (0, 4, 3, 0), (0, 0, 3, 4)),
          ((0, 6, 0, 4), (0, 3, 4, 0), (0, 2, 6, 0)),
          (1,), "root_fifth", "beats", 2, (2, 4, 4), (1000, 4500), (-26, -15), (0.1, 0.6)),
    Genre("ambient", (60, 95), 0.15, (0.5, 0.5),
          {"drums": 0.2, "bass": 0.3, "pad": 0.95, "piano": 0.4, "pluck": 0.4, "lead": 0.2},
          "add9", ((0, 3, 0, 5), (0, 5, 3, 0)), ((0, 5, 3, 0), (0, 3, 5, 0)),
          (1,), "sustain", "sustain", 4, (8, 8, 4), (700, 3000), (-30, -19), (0.4, 1.2)),
    Genre("hiphop", (72, 100), 0.03, (0.5, 0.62),
          {"drums": 1.0, "bass": 0.9, "piano": 0.6, "pad": 0.4, "pluck": 0.3, "lead": 0.2,
           "organ": 0.1},
          "seventh", ((0, 3, 0, 3), (0, 5, 3, 4)), ((0, 3, 0, 4), (0, 5, 3, 4), (0, 6, 5, 6)),
          (1,), "sync", "sustain", 4, (2, 4), (1000, 5000), (-21, -12), (0.05, 0.4)),
)}


@dataclass(frozen=True)
class SongSpec:
    """Every random choice behind one track (JSON-able via :meth:`to_dict`)."""

    index: int
    seed: int  # seeds the renderer's own random stream (voicings, melody, drum sounds)
    genre: str
    tonic: int  # pitch class, 0 = C
    mode: str
    tempo: float  # BPM
    meter: int  # beats per bar
    swing: float
    phase: float  # time of the first beat in seconds, within one beat period
    pickup: int  # position in the bar of the first beat (0 = it is a downbeat)
    instruments: tuple[str, ...]  # may include "drums"
    gains: dict[str, float]  # dB per instrument
    loudness: float  # target RMS, dBFS
    cutoff: float  # low-pass cutoff of the mix, Hz
    tuning: float  # cents away from A4 = 440 Hz
    snr: float  # music-to-noise ratio, dB
    progression: tuple[int, ...]
    chords_per_bar: int
    raised_seventh: bool  # minor keys: V chord with the leading tone (harmonic minor)
    noise: tuple[float, float]  # arousal / valence perception noise
    room: float  # reverb decay time, s
    wet: float  # reverb share of the mix

    @property
    def key(self) -> str:
        return f"{TONICS[self.tonic]} {self.mode}"

    @property
    def has_drums(self) -> bool:
        return "drums" in self.instruments

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_spec(rng: np.random.Generator, index: int, genre: str, key: str) -> SongSpec:
    """Draw a song of ``genre`` in ``key`` (both chosen by the caller, for balance)."""
    g = GENRES[genre]
    tonic_name, mode = key.split()
    instruments = [name for name in PARTS if rng.uniform() < g.palette.get(name, BORROW)]
    if not any(i in HARMONIC for i in instruments):  # something must carry the chords
        instruments.append(max((i for i in g.palette if i in HARMONIC), key=g.palette.get))
    base = {"drums": 0.0, "bass": -2.0, "pad": -7.0, "piano": -4.0, "pluck": -5.0, "lead": -6.0,
            "organ": -7.0, "guitar": -6.0}
    gains = {i: round(base[i] + float(rng.uniform(-4, 4)), 3) for i in instruments}
    meter = 3 if rng.uniform() < g.triple else 4
    tempo = float(rng.uniform(*g.tempo))
    return SongSpec(
        index=index,
        seed=int(rng.integers(2**63)),
        genre=genre,
        tonic=TONICS.index(tonic_name),
        mode=mode,
        tempo=round(tempo, 3),
        meter=meter,
        swing=round(float(rng.uniform(*g.swing)), 3),
        phase=round(float(rng.uniform(0, 60.0 / tempo)), 4),
        pickup=int(rng.integers(meter)),
        instruments=tuple(instruments),
        gains=gains,
        loudness=round(float(rng.uniform(*g.loudness)), 2),
        cutoff=round(float(np.exp(rng.uniform(*np.log(g.cutoff)))), 1),
        tuning=round(float(rng.uniform(-25, 25)), 2),
        snr=round(float(rng.uniform(12, 35)), 2),
        progression=tuple(g.major[rng.integers(len(g.major))] if mode == "major"
                          else g.minor[rng.integers(len(g.minor))]),
        chords_per_bar=int(rng.choice(g.chords_per_bar)),
        raised_seventh=bool(rng.uniform() < 0.75),
        noise=(round(float(rng.normal()), 4), round(float(rng.normal()), 4)),
        room=round(float(rng.uniform(*g.room)), 3),
        wet=round(float(rng.uniform(0.05, 0.35)), 3),
    )

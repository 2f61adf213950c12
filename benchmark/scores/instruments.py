"""The General MIDI instruments the scores suite plays, by family (NSynth's family names).

Each program has its usual playing range (MIDI numbers): a melody is moved by octaves into it,
and single notes are drawn from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Instrument:
    program: int  # General MIDI program, 0-based
    name: str
    family: str
    low: int  # playing range, MIDI numbers
    high: int


_TABLE = (
    (0, "acoustic grand piano", "keyboard", 36, 96), (1, "bright piano", "keyboard", 36, 96),
    (4, "electric piano", "keyboard", 36, 88), (6, "harpsichord", "keyboard", 36, 88),
    (7, "clavinet", "keyboard", 36, 84),
    (8, "celesta", "mallet", 60, 96), (11, "vibraphone", "mallet", 53, 89),
    (12, "marimba", "mallet", 45, 84), (13, "xylophone", "mallet", 65, 96),
    (16, "drawbar organ", "organ", 36, 88), (19, "church organ", "organ", 36, 88),
    (20, "reed organ", "organ", 36, 84), (21, "accordion", "organ", 41, 84),
    (24, "nylon guitar", "guitar", 40, 79), (25, "steel guitar", "guitar", 40, 79),
    (26, "jazz guitar", "guitar", 40, 79), (105, "banjo", "guitar", 48, 84),
    (32, "acoustic bass", "bass", 28, 55), (33, "finger bass", "bass", 28, 60),
    (35, "fretless bass", "bass", 28, 60), (43, "contrabass", "bass", 28, 55),
    (40, "violin", "string", 55, 96), (41, "viola", "string", 48, 84),
    (42, "cello", "string", 36, 76), (48, "string ensemble", "string", 36, 96),
    (110, "fiddle", "string", 55, 91),
    (56, "trumpet", "brass", 55, 82), (57, "trombone", "brass", 40, 72),
    (60, "french horn", "brass", 41, 77), (61, "brass section", "brass", 40, 82),
    (64, "soprano sax", "reed", 56, 87), (65, "alto sax", "reed", 49, 81),
    (68, "oboe", "reed", 58, 91), (70, "bassoon", "reed", 34, 72), (71, "clarinet", "reed", 50, 91),
    (72, "piccolo", "flute", 74, 102), (73, "flute", "flute", 60, 96),
    (74, "recorder", "flute", 60, 91), (75, "pan flute", "flute", 60, 88),
    (79, "ocarina", "flute", 60, 84),
    (52, "choir aahs", "vocal", 48, 79), (53, "voice oohs", "vocal", 48, 79),
    (54, "synth voice", "vocal", 48, 84),
    (80, "square lead", "synth_lead", 36, 96), (81, "sawtooth lead", "synth_lead", 36, 96),
    (82, "calliope lead", "synth_lead", 48, 96), (87, "bass and lead", "synth_lead", 36, 84),
)

INSTRUMENTS: tuple[Instrument, ...] = tuple(Instrument(*row) for row in _TABLE)
#: Family names, in label order (the tagging task's classes, the instrument task's classes).
FAMILIES: tuple[str, ...] = tuple(sorted({i.family for i in INSTRUMENTS}))
BY_FAMILY: dict[str, tuple[Instrument, ...]] = {
    f: tuple(i for i in INSTRUMENTS if i.family == f) for f in FAMILIES}


def octave_shift(pitches: list[int], instrument: Instrument) -> int:
    """Whole octaves (semitones) that bring the middle of ``pitches`` nearest the middle of the
    instrument's range (a melody is played where the instrument sounds natural)."""
    middle = (min(pitches) + max(pitches)) / 2
    target = (instrument.low + instrument.high) / 2
    return 12 * round((target - middle) / 12)


def fit_shift(pitches: list[int], instrument: Instrument) -> int:
    """The fewest octaves (semitones) that bring the middle of ``pitches`` inside the
    instrument's range: a voice of a polyphonic piece stays where it is written when it can."""
    middle = (min(pitches) + max(pitches)) / 2
    if middle < instrument.low:
        return 12 * math.ceil((instrument.low - middle) / 12)
    if middle > instrument.high:
        return -12 * math.ceil((middle - instrument.high) / 12)
    return 0

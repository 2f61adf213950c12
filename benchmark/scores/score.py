"""A tune parsed with music21, reduced to what rendering and labelling need.

Everything is read from the notation: the notes (tied notes merged, grace notes dropped), the
bars (offset, length, the pickup's missing part, the meter's beats), the key (music21's key
object from the ABC key field) and the lowest note of the final sounding chord. Times are in
quarter notes from the first note of the tune.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mirprobe.scores.corpus import Candidate


@dataclass(frozen=True)
class Bar:
    offset: float  # where the bar's notes start (quarter notes)
    length: float  # its notated length (a pickup is shorter than the meter's bar)
    padding: float  # the part of a full bar missing before a pickup (music21's paddingLeft)
    beat: float  # the meter's beat (quarter notes; a dotted quarter in 6/8)
    beats: int  # beats per full bar


@dataclass(frozen=True)
class ParsedTune:
    source: str
    title: str
    tune_id: str
    genre: str
    meter: str
    tonic: str  # music21's tonic name, e.g. "F#"
    tonic_pc: int
    mode: str  # music21's mode: major, minor, dorian, ...
    final_pc: int  # pitch class of the lowest note of the last sounding chord
    notes: tuple[tuple[float, float, int], ...]  # (onset, duration, MIDI number)
    bars: tuple[Bar, ...]
    length: float  # quarter notes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParsedTune:
        return cls(**{**d, "notes": tuple(tuple(n) for n in d["notes"]),
                      "bars": tuple(Bar(**b) for b in d["bars"])})


def parse_tune(c: Candidate) -> ParsedTune | str:
    """The tune, or the reason it cannot be used (music21's error, or no key, no notes)."""
    from music21 import converter, key

    try:
        score = converter.parseData(c.text, format="abc")
        part = score.parts[0]
        part.stripTies(inPlace=True)  # tied notes sound once (in place: a copy costs as much as the parse)
        keys = list(score.flatten().getElementsByClass(key.Key))
        notes = part_notes(part)
        bars = _bars(part)
    except Exception as e:  # music21 raises many kinds on malformed ABC: the tune is skipped
        return f"music21 could not parse it ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    if not keys:
        return "no key in the score"
    if not notes or not bars:
        return "no notes or bars in the score"
    final = min(p for on, _, p in notes if on == max(n[0] for n in notes))
    k = keys[0]
    return ParsedTune(c.source, c.title, c.tune_id, c.genre, c.meter, k.tonic.name.replace("-", "b"),
                      k.tonic.pitchClass, str(k.mode), final % 12, tuple(notes), tuple(bars),
                      float(max(on + d for on, d, _ in notes)))


def part_notes(part: Any) -> list[tuple[float, float, int]]:
    out = []
    for n in part.flatten().notes:
        if n.duration.isGrace or n.duration.quarterLength <= 0:
            continue
        for p in n.pitches:
            out.append((float(n.getOffsetInHierarchy(part)), float(n.duration.quarterLength),
                        int(p.midi)))
    return sorted(out)


def _bars(part: Any) -> list[Bar]:
    out = []
    ts = None
    for m in part.getElementsByClass("Measure"):
        ts = m.timeSignature or ts
        if ts is None:
            raise ValueError("no meter")
        out.append(Bar(float(m.offset), float(m.duration.quarterLength), float(m.paddingLeft),
                       float(ts.beatDuration.quarterLength), int(ts.beatCount)))
    return out

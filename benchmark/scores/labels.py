"""Labels read from the score: key, beats and downbeats (the dance and instruments are given).

- key: music21's key of the tune (the ABC key field), kept only when its mode is major or
  minor and the tune ends on the tonic (the lowest note of the last chord); the label is that
  key moved by the clip's transposition, named as MARBLE names keys (flats: ``"Eb minor"``).
- beats: the notated meter's grid of beats (``beat`` apart, every ``beats``-th a downbeat),
  anchored at the first full bar, so that a pickup's notes fall before the first downbeat;
  tunes whose bars leave that grid are left out (:func:`irregular`).
"""

from __future__ import annotations

from mirprobe.scores.score import ParsedTune
from mirprobe.tasks.key import KEYS, TONICS

__all__ = ["KEYS", "key_of", "transposition", "beats_in", "TempoMap"]


def key_of(tune: ParsedTune) -> str | None:
    """The tune's key label (untransposed), or None when unclear; see the module docstring."""
    if tune.mode not in ("major", "minor") or tune.final_pc != tune.tonic_pc:
        return None
    return f"{TONICS[tune.tonic_pc]} {tune.mode}"


def why_no_key(tune: ParsedTune) -> str:
    if tune.mode not in ("major", "minor"):
        return f"mode {tune.mode} is neither major nor minor"
    return (f"ends on {TONICS[tune.final_pc]}, not on the tonic {TONICS[tune.tonic_pc]} "
            f"of {tune.tonic} {tune.mode}")


def transposition(label: str, target: str) -> int:
    """Semitones (-6..5) that move key ``label`` to ``target`` (same mode)."""
    src, dst = label.split(" "), target.split(" ")
    if src[1] != dst[1]:
        raise ValueError(f"cannot move {label} to {target}: the modes differ")
    return (TONICS.index(dst[0]) - TONICS.index(src[0]) + 6) % 12 - 6


def transposed(label: str, semitones: int) -> str:
    tonic, mode = label.split(" ")
    return f"{TONICS[(TONICS.index(tonic) + semitones) % 12]} {mode}"


def beats_in(tune: ParsedTune, start: float, end: float) -> list[tuple[float, bool]]:
    """(position in quarter notes, is a downbeat) of every beat in ``[start, end)``.

    The beats are the meter's grid, anchored at the first full bar (after a pickup, if any),
    and run on through the bars that a repeat sign splits in two (the short bar closing a
    section and the pickup opening the next add up to one bar); :func:`irregular` leaves out
    the tunes where that does not hold."""
    first, anchor = tune.bars[0], _anchor(tune)
    out = []
    k = -int((anchor - first.offset) // first.beat + 1e-9)
    while (at := anchor + k * first.beat) < min(end, tune.length) - 1e-9:
        if at >= max(start, first.offset) - 1e-9:
            out.append((at, k % first.beats == 0))
        k += 1
    return out


def _anchor(tune: ParsedTune) -> float:
    first = tune.bars[0]
    return first.offset + first.length if first.padding > 0 else first.offset


def irregular(tune: ParsedTune, until: float = float("inf")) -> str:
    """Why the tune's bars up to quarter note ``until`` do not follow one meter's grid ("" when
    they do): a change of meter, or a full bar that does not start on a downbeat of the grid."""
    first, anchor = tune.bars[0], _anchor(tune)
    bar = first.beat * first.beats
    for b in tune.bars:
        if b.offset >= until:
            break
        if (b.beat, b.beats) != (first.beat, first.beats):
            return f"the meter changes at quarter note {b.offset:g}"
        if abs(b.length - bar) < 1e-9 and abs((b.offset - anchor) / bar - round((b.offset - anchor) / bar)) > 1e-6:
            return f"the bar at quarter note {b.offset:g} is off the meter's grid"
    return ""


class TempoMap:
    """Quarter-note positions to seconds at a steady tempo (quarter notes per minute)."""

    def __init__(self, qpm: float, start: float = 0.0) -> None:
        self.qpm, self.start = qpm, start

    def seconds(self, ql: float) -> float:
        return (ql - self.start) * 60.0 / self.qpm

    def position(self, seconds: float) -> float:
        return self.start + seconds * self.qpm / 60.0

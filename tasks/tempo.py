"""Tempo metrics as MARBLE v2 reports them in its beat-tracking task (``TempoMAE``,
``TempoAccuracy`` of ``marble/tasks/GTZANBeatTracking/metrics.py``).

- ``tempo_mae``: mean absolute error in BPM;
- ``tempo_acc1``: the share of tracks whose estimate is within 4 % of the reference,
  ``|est − ref| / ref ≤ 0.04``;
- ``tempo_acc2``: the same, allowing MARBLE's octave errors: ``|k·est − ref| / ref ≤ 0.04`` for
  some ``k`` in ×1, ×2, ×½, ×3, ×⅓ (MARBLE's list).

The estimate is read off the decoded beats: 60 / the median inter-beat interval (MARBLE v2 has
a tempo channel on its beat head instead, trained with loss weight 0 in its configs). A track
with fewer than two decoded beats has no tempo and counts as wrong (estimate 0 BPM). The
reference is the label's ``tempo`` (GTZAN-Rhythm's ``tempo mean``), else the same median of
the annotated beats; a track with neither is left out of the tempo metrics (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

TOLERANCE = 0.04
#: Factors applied to the estimate for ``tempo_acc2`` (MARBLE v2's list).
OCTAVE_FACTORS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)


def from_beats(beats: Sequence[float]) -> float:
    """Tempo (BPM) of beat times: 60 / the median interval; 0 with fewer than two beats."""
    times = np.sort(np.asarray(beats, dtype=np.float64))
    intervals = np.diff(times)
    intervals = intervals[intervals > 0]
    return float(60.0 / np.median(intervals)) if intervals.size else 0.0


def reference(label: Any) -> float:
    """The label's tempo (BPM), else the median tempo of its beats; NaN when it has neither."""
    given = label.get("tempo") if isinstance(label, dict) else None
    if isinstance(given, int | float) and not isinstance(given, bool) and math.isfinite(given) \
            and given > 0:
        return float(given)
    beats = label.get("beat") if isinstance(label, dict) else None
    bpm = from_beats(beats or [])
    return bpm if bpm > 0 else math.nan


def per_track(estimates: Sequence[float], references: Sequence[float]) -> dict[str, np.ndarray]:
    """Per-track absolute error and the two accuracies (NaN where the reference is NaN)."""
    est = np.asarray(estimates, dtype=np.float64)
    ref = np.asarray(references, dtype=np.float64)
    error = np.abs(est - ref)
    within = [np.abs(k * est - ref) / ref <= TOLERANCE for k in OCTAVE_FACTORS]
    known = np.isfinite(ref)
    return {"tempo_mae": error,
            "tempo_acc1": np.where(known, within[0], np.nan),
            "tempo_acc2": np.where(known, np.logical_or.reduce(within), np.nan)}


def scores(estimates: Sequence[float], references: Sequence[float]) -> dict[str, float]:
    """The three metrics over the tracks with a reference (NaN when none has)."""
    values = per_track(estimates, references)
    known = np.isfinite(np.asarray(references, dtype=np.float64))
    return {name: float(v[known].mean()) if known.any() else math.nan
            for name, v in values.items()}


__all__ = ["OCTAVE_FACTORS", "TOLERANCE", "from_beats", "per_track", "reference", "scores"]

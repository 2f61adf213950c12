"""Tempo in the beat task: MARBLE v2's MAE, Acc1 and Acc2 against a plain loop that writes out
its five conditions, and the estimate read off decoded beats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mirprobe.tasks import tempo
from mirprobe.tasks.beat import BeatTask, metronome


def marble_loop(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
    """MAE, Acc1, Acc2 as MARBLE v2's TempoMAE and TempoAccuracy state them, one track at a time."""
    error = hit1 = hit2 = 0.0
    for est, ref in pairs:
        error += abs(est - ref)
        exact = abs(est - ref) / ref <= 0.04
        double = abs(est * 2.0 - ref) / ref <= 0.04
        half = abs(est / 2.0 - ref) / ref <= 0.04
        triple = abs(est * 3.0 - ref) / ref <= 0.04
        third = abs(est / 3.0 - ref) / ref <= 0.04
        hit1 += exact
        hit2 += exact or double or half or triple or third
    n = len(pairs)
    return error / n, hit1 / n, hit2 / n


def test_scores_equal_marbles_definitions() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(60, 200, 400)
    factor = rng.choice([1.0, 2.0, 0.5, 3.0, 1 / 3, 1.5, 0.75], 400)
    est = ref / factor * rng.uniform(0.94, 1.06, 400)  # near each octave, either side of 4 %
    got = tempo.scores(est, ref)
    mae, acc1, acc2 = marble_loop(list(zip(est, ref, strict=True)))
    assert (got["tempo_mae"], got["tempo_acc1"], got["tempo_acc2"]) == pytest.approx((mae, acc1, acc2))
    assert 0 < acc1 < acc2 < 1  # the fixture exercises both sides of every condition


def test_estimate_and_reference() -> None:
    beats = np.delete(np.arange(0.3, 20, 0.5), [7, 20])  # two missed beats: the median ignores them
    assert tempo.from_beats(beats) == pytest.approx(120.0)
    assert tempo.from_beats(beats[::-1]) == pytest.approx(120.0)  # order does not matter
    assert tempo.from_beats([1.0]) == 0.0 and tempo.from_beats([]) == 0.0
    assert tempo.reference({"beat": [0, 1], "tempo": 126.46}) == 126.46
    assert tempo.reference({"beat": [0.0, 0.5, 1.0], "tempo": None}) == pytest.approx(120.0)
    assert math.isnan(tempo.reference({"beat": [2.0], "tempo": "fast"}))


def test_beat_task_reports_tempo() -> None:
    """Decoded beats at 100 BPM against references of 100, 50 (half) and 300 (×3) BPM, a track
    with one decoded beat (counts as wrong) and one without any tempo (left out)."""
    task = BeatTask()
    beats_100 = metronome(20.0, bpm=100.0)
    labels = [{**metronome(20.0, 100.0), "tempo": 100.0},
              {**metronome(20.0, 50.0), "tempo": 50.0},
              {**metronome(20.0, 300.0), "tempo": None},   # reference from its beats: 300
              {**metronome(20.0, 90.0), "tempo": 90.0},
              {"beat": [1.0], "downbeat": []}]
    predictions = [beats_100, beats_100, beats_100, {"beat": [3.0], "downbeat": []},
                   beats_100]
    got = task.evaluate(predictions, labels)
    mae, acc1, acc2 = marble_loop([(100, 100), (100, 50), (100, 300), (0, 90)])
    assert got["tempo_mae"] == pytest.approx(mae)
    assert (got["tempo_acc1"], got["tempo_acc2"]) == pytest.approx((acc1, acc2)) == (0.25, 0.75)
    per = task.per_track(predictions, labels)  # what the bootstrap averages
    assert np.nanmean(per["tempo_mae"]) == pytest.approx(mae) and math.isnan(per["tempo_acc1"][4])
    assert task.metric("tempo_mae").higher_is_better is False
    chance = task.chance(labels, labels)  # a 120 BPM metronome
    assert chance["tempo_mae"] == pytest.approx(np.mean([20, 70, 180, 30]))

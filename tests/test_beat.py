"""Beat task: frame targets, loss, the AP proxy, decoding and the mir_eval-based evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mir_eval
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from mirprobe.errors import UserError
from mirprobe.plugins import get_task
from mirprobe.record import TaskRef
from mirprobe.report.render import leaderboard_caption
from mirprobe.tasks import beat_marble
from mirprobe.tasks.beat import decode_beats, metronome
from mirprobe.tasks.beat_dbn import BeatDBN

FRAME_RATE = 75.0
RNG = np.random.default_rng(1)


def _label(period: float = 0.5, start: float = 0.3, end: float = 8.0, meter: int = 4) -> dict:
    beats = np.arange(start, end, period)
    return {"beat": beats.tolist(), "downbeat": beats[::meter].tolist(), "tempo": 60 / period}


def _activation(label: dict, num_frames: int, noise: float = 0.05) -> np.ndarray:
    """Logits with Gaussian bumps (2-frame width) at the annotated times, plus noise."""
    frames = np.arange(num_frames) / FRAME_RATE
    act = np.zeros((num_frames, 2))
    for channel, field in enumerate(("beat", "downbeat")):
        for t in label[field]:
            act[:, channel] = np.maximum(act[:, channel],
                                         np.exp(-0.5 * ((frames - t) * FRAME_RATE / 2) ** 2))
    act = np.clip(act + noise * RNG.random(act.shape), 1e-4, 1 - 1e-4)
    return np.log(act / (1 - act))


def test_encode_frames_marks_nearest_frame_and_neighbours():
    task = get_task("beat")
    label = {"beat": [0.1, 0.52, 9.9], "downbeat": [0.1], "tempo": 120}
    target = task.encode_frames(label, num_frames=100, frame_rate=50.0)
    assert target.shape == (100, 2) and target.dtype == np.float32
    expected = np.zeros((100, 2), dtype=np.float32)
    for channel, times in ((0, [0.1, 0.52]), (1, [0.1])):  # 9.9 s lies after the last frame
        for t in times:
            f = round(t * 50)
            expected[[f - 1, f + 1], channel] = 0.5
            expected[f, channel] = 1.0
    np.testing.assert_array_equal(target, expected)
    assert target[5, 0] == 1 and target[26, 0] == 1  # 0.1 s → frame 5, 0.52 s → frame 26


def test_encode_frames_rejects_bad_labels():
    task = get_task("beat")
    with pytest.raises(ValueError, match="'beat' list"):
        task.encode_frames([0.5, 1.0], 10, 50.0)
    with pytest.raises(ValueError, match="'downbeat'"):
        task.encode_frames({"beat": [0.5], "downbeat": "soon"}, 10, 50.0)


def test_loss_is_weighted_bce_per_head():
    target = torch.tensor(get_task("beat").encode_frames(_label(), 600, FRAME_RATE))
    logits = torch.randn(3, 600, 2)
    fixed = get_task("beat", pos_weight=[4.0, 9.0])
    want = torch.stack([F.binary_cross_entropy_with_logits(
        logits[h], target, pos_weight=torch.tensor([4.0, 9.0])) for h in range(3)])
    torch.testing.assert_close(fixed.loss(logits, target), want)
    auto = get_task("beat").loss(logits, target)
    ratio = ((1 - target).sum(0) / target.sum(0)).clamp(1, 100)
    want_auto = torch.stack([F.binary_cross_entropy_with_logits(
        logits[h], target, pos_weight=ratio) for h in range(3)])
    torch.testing.assert_close(auto, want_auto)
    assert auto.shape == (3,)


def test_score_is_frame_average_precision_of_beat_channel():
    task = get_task("beat")
    target = np.concatenate([task.encode_frames(_label(p), 600, FRAME_RATE) for p in (0.5, 0.4)])
    outputs = np.round(RNG.normal(size=(4, len(target), 2)), 1)
    score = task.score(torch.tensor(outputs), torch.tensor(target)).numpy()
    for h in range(4):
        want = average_precision_score(target[:, 0] >= 0.5, outputs[h, :, 0])
        assert score[h] == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("decoder", ["dbn", "dp"])
@pytest.mark.parametrize("period, meter", [(0.5, 4), (0.42, 3), (0.6, 4)])
def test_decoding_a_clean_activation_recovers_beats_and_bar_phase_downbeats(period, meter,
                                                                           decoder):
    task = get_task("beat", decoder=decoder, downbeat_decoder="bar_phase")
    label = _label(period=period, meter=meter)
    logits = _activation(label, num_frames=int(8.2 * FRAME_RATE))
    (decoded,) = task.predictions([logits], frame_rate=FRAME_RATE)
    json.dumps(decoded)
    beat_f = mir_eval.beat.f_measure(np.array(label["beat"]), np.array(decoded["beat"]))
    down_f = mir_eval.beat.f_measure(np.array(label["downbeat"]), np.array(decoded["downbeat"]))
    assert beat_f > 0.95
    assert down_f > 0.9


def test_dbn_downbeats_are_the_beat_dbn_on_the_downbeat_channel():
    """MARBLE v2's downbeats. Bars of 2 s are slower than the DBN's 55 BPM floor, so it keeps
    every downbeat and adds one between each pair: recall 1, precision about 1/2."""
    label = _label(period=0.5, meter=4)
    logits = _activation(label, num_frames=int(8.2 * FRAME_RATE))
    (decoded,) = get_task("beat").predictions([logits], frame_rate=FRAME_RATE)
    downbeat_act = 1 / (1 + np.exp(-logits[:, 1]))
    np.testing.assert_array_equal(decoded["downbeat"], decode_beats(downbeat_act, FRAME_RATE))
    ref, est = np.array(label["downbeat"]), np.array(decoded["downbeat"])
    assert len(mir_eval.util.match_events(ref, est, 0.07)) == len(ref)
    assert 0.5 < mir_eval.beat.f_measure(ref, est) < 0.8


def test_flat_activation():
    """The DP tracker finds nothing; the DBN, like madmom, still lays a beat grid (the madmom
    fixture ``flat_75fps`` pins its beats)."""
    flat = np.full((300, 2), -30.0)
    (dp,) = get_task("beat", decoder="dp", downbeat_decoder="dp").predictions(
        [flat], frame_rate=FRAME_RATE)
    assert dp["beat"] == [] and dp["downbeat"] == []
    (dbn,) = get_task("beat").predictions([flat], frame_rate=FRAME_RATE)
    assert len(dbn["beat"]) > 0 and dbn["beat"] == dbn["downbeat"]


def test_bad_options_are_clear_errors():
    for options in ({"decoder": "viterbi"}, {"downbeat_decoder": "joint"},
                    {"dbn": {"num_tempo": 60}}, {"target_neighbors": -1},
                    {"trim_first_s": -5}, {"min_clip_ratio": 0}):
        with pytest.raises(UserError, match="task plugin 'beat': beat option"):
            get_task("beat", **options)


def test_target_neighbors_widen_as_marble():
    """±d frames get 0.5**d, as MARBLE v2's ``widen_temporal_events`` (max filter, then
    halving what is not an event, ``num_neighbors`` times), written out here with scipy."""
    from scipy.ndimage import maximum_filter1d

    label = {"beat": [0.02, 0.5, 0.58, 3.96], "downbeat": [0.5], "tempo": 120}
    for neighbors in (0, 1, 2, 3):
        target = get_task("beat", target_neighbors=neighbors).encode_frames(label, 200, 50.0)
        for channel, field in enumerate(("beat", "downbeat")):
            events = np.zeros(200)
            events[np.rint(np.array(label[field]) * 50).astype(int)] = 1
            widened = events.copy()
            for _ in range(neighbors):
                widened = maximum_filter1d(widened, size=3)
                widened[(events != 1) & (widened > 0)] *= 0.5
            np.testing.assert_array_equal(target[:, channel], widened.astype(np.float32))


def _direct_clip_counts(logits: np.ndarray, ref: np.ndarray, clips: int) -> tuple[int, int, int]:
    """MARBLE's TimeEventFMeasure written out: 10 s clips at 75 fps, each decoded alone,
    decoded times → frame mask → float32 times, references quantised the same way."""
    hits = n_est = n_ref = 0
    for c in range(clips):
        act = 1 / (1 + np.exp(-logits[c * 750:(c + 1) * 750]))
        beats = BeatDBN(FRAME_RATE)(act)
        est_mask = np.zeros(750)
        frames = np.round(beats * FRAME_RATE).astype(int)
        est_mask[frames[(frames >= 0) & (frames < 750)]] = 1
        ref_mask = np.zeros(750)
        for t in ref:
            if c * 10 <= t < (c + 1) * 10 and 0 <= round((t - c * 10) * FRAME_RATE) < 750:
                ref_mask[round((t - c * 10) * FRAME_RATE)] = 1
        est_t = np.flatnonzero(est_mask).astype(np.float32) / FRAME_RATE
        ref_t = np.flatnonzero(ref_mask).astype(np.float32) / FRAME_RATE
        if est_t.size and ref_t.size:
            hits += len(mir_eval.util.match_events(ref_t, est_t, 0.07))
        n_est, n_ref = n_est + est_t.size, n_ref + ref_t.size
    return hits, n_est, n_ref


def test_marble_clip_micro_f_equals_a_direct_computation():
    """Two tracks: 28.6 s (clips of 10, 10 and 8.6 s: the last kept, ≥ 80 %) and 21 s (the
    1 s remainder dropped); noisy activations with drift and missed beats."""
    task = get_task("beat", downbeat_decoder="bar_phase")
    labels = [_label(0.5, start=0.3, end=28.6), _label(0.61, start=0.1, end=21.0)]
    logits = []
    for label, seconds in zip(labels, (28.6, 21.0), strict=True):
        # Drifting by up to 30 ms, a fifth of the beats missing.
        heard = dict(label, beat=[t + 0.03 * np.sin(t) for t in label["beat"]
                                  if RNG.random() > 0.2])
        logits.append(_activation(heard, int(seconds * FRAME_RATE), noise=0.4))
    predictions = task.predictions(logits, frame_rate=FRAME_RATE)
    assert [len(p["clips"]["beat"]) for p in predictions] == [3, 2]
    counts = [_direct_clip_counts(lg[:, 0], np.array(lab["beat"]), n)
              for lg, lab, n in zip(logits, labels, (3, 2), strict=True)]
    hits, n_est, n_ref = np.sum(counts, axis=0)
    assert 0 < 2 * hits < n_est + n_ref  # neither empty nor perfect
    result = task.evaluate(predictions, labels)
    assert result["beat_f_measure_marble"] == pytest.approx(2 * hits / (n_est + n_ref), abs=1e-12)
    assert beat_marble.micro_f([(0, 0, 0)]) == 1.0  # nothing on either side scores 1
    # A 7.8 s track has no clip (< 80 % of 10 s): nothing to score, not a perfect score.
    short = _label(0.5, end=7.8)
    preds = task.predictions([_activation(short, int(7.8 * FRAME_RATE))], frame_rate=FRAME_RATE)
    assert preds[0]["clips"]["beat"] == []
    assert np.isnan(task.evaluate(preds, [short])["beat_f_measure_marble"])
    # Frames a little short of 8 s (a conv front end's 7.96 s of an 8 s track) keep their clip.
    assert beat_marble.clip_spans(398, 50.0) == [(0, 398)]
    assert beat_marble.clip_spans(2244, 75.0) == [(0, 750), (750, 1500), (1500, 2244)]


def test_evaluate_matches_mir_eval_and_a_naive_pooled_count():
    task = get_task("beat")
    labels = [_label(0.5), _label(0.45, start=0.2), {"beat": [1.0, 2.0], "tempo": 60}]
    predictions, hits, events = [], 0, 0
    for label in labels:
        ref = np.array(label["beat"])
        est = ref + RNG.uniform(-0.1, 0.1, ref.size)  # about two thirds within 70 ms
        est = np.sort(np.concatenate([est[RNG.random(ref.size) < 0.8], [8.9]]))
        predictions.append({"beat": est.tolist(), "downbeat": est[::4].tolist()})
        # Naive pooled count: events ≥ 0.38 s apart, so each reference has at most one
        # estimate within 70 ms and the optimal matching is just the set of close pairs.
        hits += sum(np.abs(ref - e).min() <= 0.07 for e in est)
        events += ref.size + est.size
    result = task.evaluate(predictions, labels)
    per_track = [mir_eval.beat.f_measure(np.array(lab["beat"]), np.array(p["beat"]))
                 for lab, p in zip(labels, predictions, strict=True)]
    downbeat = [mir_eval.beat.f_measure(np.array(lab["downbeat"]), np.array(p["downbeat"]))
                for lab, p in zip(labels[:2], predictions[:2], strict=True)]  # the third has no downbeats
    assert result["beat_f_measure"] == pytest.approx(np.mean(per_track))
    assert result["beat_f_measure_pooled"] == pytest.approx(2 * hits / events)
    assert result["downbeat_f_measure"] == pytest.approx(np.mean(downbeat))
    # No clip decodings in these predictions: MARBLE's clip metrics are undefined.
    assert np.isnan(result["beat_f_measure_marble"])
    assert list(result) == list(task.metrics)


def test_evaluate_does_not_trim_the_first_five_seconds():
    label = _label(0.5, start=0.5, end=8.0)
    early_only = {"beat": [t for t in label["beat"] if t < 5], "downbeat": []}
    result = get_task("beat").evaluate([early_only], [label])
    n_early = len(early_only["beat"])
    assert result["beat_f_measure"] == pytest.approx(2 * n_early / (n_early + len(label["beat"])))


def test_trim_first_s_matches_mir_evals_evaluate():
    labels = [_label(0.5, start=0.5, end=12.0), _label(0.45, start=0.2, end=9.0)]
    predictions = []
    for label in labels:
        est = np.array(label["beat"]) + RNG.uniform(-0.09, 0.09, len(label["beat"]))
        predictions.append({"beat": est.tolist(), "downbeat": est[::4].tolist()})
    result = get_task("beat", trim_first_s=5.0).evaluate(predictions, labels)
    want = [mir_eval.beat.evaluate(np.array(lab["beat"]), np.array(p["beat"]))["F-measure"]
            for lab, p in zip(labels, predictions, strict=True)]
    assert result["beat_f_measure"] == pytest.approx(np.mean(want))
    info = get_task("beat", trim_first_s=5.0).describe()
    assert info["trim_first_s"] == 5.0
    trimmed = get_task("beat", trim_first_s=5.0)
    task = TaskRef.of("gtzan-beat", "beat", trimmed)
    record = SimpleNamespace(model="m", task=task, excluded={})
    assert "first 5 s" in leaderboard_caption([record], ci=False, n_boot=0, seed=0)
    assert task.build().scoring_note == trimmed.scoring_note, "the record rebuilds the trimming"
    assert "scoring_note" not in get_task("beat").describe()


def test_chance_is_a_120_bpm_metronome_from_zero():
    task = get_task("beat")
    test = [_label(0.5, start=0.02), _label(0.4, start=0.3)]
    result = task.chance([_label()], test)
    want = []
    for label in test:
        clicks = np.arange(0, label["beat"][-1] + 1e-9, 0.5)
        want.append(mir_eval.beat.f_measure(np.array(label["beat"]), clicks))
    assert result["beat_f_measure"] == pytest.approx(np.mean(want))
    # The tracks end 0.5 s after their last beat, ≥ 8 s: one clip each, on a 75 Hz grid.
    hits = events = 0
    for label in test:
        ref = np.round(np.array(label["beat"]) * 75).astype(np.float32) / 75
        est = np.round(np.arange(0, label["beat"][-1] + 1e-9, 0.5) * 75).astype(np.float32) / 75
        hits += len(mir_eval.util.match_events(ref, est, 0.07))
        events += ref.size + est.size
    assert result["beat_f_measure_marble"] == pytest.approx(2 * hits / events)
    assert 0 < result["beat_f_measure_marble"] < 1
    assert metronome(2.0) == {"beat": [0.0, 0.5, 1.0, 1.5, 2.0], "downbeat": [0.0, 2.0]}


DECODE_SCRIPT = """
import json
import numpy as np
from mirprobe.tasks.beat import decode_beats
t = np.arange(900) / 75.0
a = 0.05 + 0.9 * np.exp(-0.5 * ((t % 0.5) / 0.02) ** 2)
print(json.dumps([decode_beats(a, 75.0, m).round(4).tolist() for m in ("dp", "dbn")]))
"""


def test_processes_decoding_at_once_leave_a_sound_numba_cache(tmp_path: Path) -> None:
    """Two processes decode beats at once on a fresh numba cache, then a third loads it: all
    give the same beats. (Unguarded, the two compile into the cache together and leave files
    that crash every later process with a segmentation fault.)"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", DECODE_SCRIPT], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    pair = [start(), start()]
    outs = [(p.communicate(timeout=600), p.returncode) for p in pair]
    third = start()
    outs.append((third.communicate(timeout=600), third.returncode))
    for (_, err), code in outs:
        assert code == 0, f"exit {code}: {err[-2000:]}"
    beats = [json.loads(out) for (out, _), _ in outs]
    assert beats[0] == beats[1] == beats[2] and len(beats[0][0]) > 15

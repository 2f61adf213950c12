"""Beat task: frame targets, loss, the AP proxy, decoding and the mir_eval-based evaluation."""

from __future__ import annotations

import json

import mir_eval
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from mirprobe.plugins import get_task
from mirprobe.tasks.beat import metronome

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


@pytest.mark.parametrize("period, meter", [(0.5, 4), (0.42, 3), (0.6, 4)])
def test_decoding_a_clean_activation_recovers_beats_and_downbeats(period, meter):
    task = get_task("beat")
    label = _label(period=period, meter=meter)
    logits = _activation(label, num_frames=int(8.2 * FRAME_RATE))
    (decoded,) = task.predictions([logits], frame_rate=FRAME_RATE)
    json.dumps(decoded)
    beat_f = mir_eval.beat.f_measure(np.array(label["beat"]), np.array(decoded["beat"]))
    down_f = mir_eval.beat.f_measure(np.array(label["downbeat"]), np.array(decoded["downbeat"]))
    assert beat_f > 0.95
    assert down_f > 0.9


def test_flat_activation_decodes_to_nothing():
    (decoded,) = get_task("beat").predictions([np.full((300, 2), -30.0)], frame_rate=FRAME_RATE)
    assert decoded == {"beat": [], "downbeat": []}


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


def test_evaluate_does_not_trim_the_first_five_seconds():
    label = _label(0.5, start=0.5, end=8.0)
    early_only = {"beat": [t for t in label["beat"] if t < 5], "downbeat": []}
    result = get_task("beat").evaluate([early_only], [label])
    n_early = len(early_only["beat"])
    assert result["beat_f_measure"] == pytest.approx(2 * n_early / (n_early + len(label["beat"])))


def test_chance_is_a_120_bpm_metronome_from_zero():
    task = get_task("beat")
    test = [_label(0.5, start=0.02), _label(0.4, start=0.3)]
    result = task.chance([_label()], test)
    want = []
    for label in test:
        clicks = np.arange(0, label["beat"][-1] + 1e-9, 0.5)
        want.append(mir_eval.beat.f_measure(np.array(label["beat"]), clicks))
    assert result["beat_f_measure"] == pytest.approx(np.mean(want))
    assert metronome(2.0) == {"beat": [0.0, 0.5, 1.0, 1.5, 2.0], "downbeat": [0.0, 2.0]}

"""Chord task: MARBLE's major/minor classes, frame targets from intervals, and every metric
against mir_eval.chord (per track and pooled) or a plain frame loop."""

from __future__ import annotations

import math

import mir_eval
import numpy as np
import pytest
import torch

from mirprobe.tasks.chord import CLASSES, ChordTask, frame_classes, majmin_class

FPS = 10.0


def seg(start: float, end: float, chord: str) -> dict:
    return {"start_time": start, "end_time": end, "chord_str": chord}


def song(seed: int, seconds: float = 12.0) -> list[dict]:
    """Random Harte segments: major, minor, sevenths, inversions, sus and N."""
    rng = np.random.default_rng(seed)
    vocab = ["C:maj", "A:min", "F:maj/3", "G:7", "E:min7", "D:sus4", "Bb:maj", "F#:min", "N",
             "C:dim", "Eb:maj7", "X"]
    times = np.r_[0.0, np.cumsum(rng.uniform(0.5, 1.0, 8))]
    times = (times * seconds / times[-1]).round(3)
    labels = [seg(a, b, vocab[rng.integers(len(vocab))]) for a, b in zip(times[:-1], times[1:], strict=True)]
    labels[3]["start_time"] -= 1e-9  # MARBLE's files hold such overlaps
    return labels


def decode(task: ChordTask, label: list[dict], seed: int, accuracy: float = 0.6) -> dict:
    """A prediction agreeing with the truth on about ``accuracy`` of the frames."""
    rng = np.random.default_rng(seed)
    n = int(max(s["end_time"] for s in label) * FPS) + 3
    truth = np.clip(frame_classes(label, n, FPS), 0, None)
    noise = rng.integers(0, 25, n)
    frames = np.where(rng.random(n) < accuracy, truth, noise)
    logits = np.eye(25)[frames] + 0.01 * rng.standard_normal((n, 25))
    [prediction] = task.predictions([logits], frame_rate=FPS)
    return prediction


def test_majmin_classes_follow_marbles_rules() -> None:
    cases = {"N": 24, "X": 24, "E:maj": 4, "D:maj/2": 2, "C:min7": 12, "C:7": 0, "B:maj7": 11,
             "Db:maj": 1, "C#:min": 13, "G:sus4": -1, "A:dim": -1, "C:aug": -1, "C:5": -1,
             "C:hdim7": -1}
    assert {c: majmin_class(c) for c in cases} == cases
    assert CLASSES[0] == "C:maj" and CLASSES[12] == "C:min" and CLASSES[24] == "N"
    with pytest.raises(ValueError, match="Harte"):
        majmin_class("H:maj")


def test_frame_targets_from_intervals() -> None:
    task = ChordTask()
    label = [seg(0.0, 0.5, "N"), seg(0.5, 1.0, "A:min"), seg(1.0, 1.3, "D:sus4"),
             seg(1.3, 1.6, "G:7")]
    target = task.encode_frames(label, 20, FPS)
    classes = [int(row.argmax()) if row.any() else -1 for row in target]
    assert classes == [24] * 5 + [21] * 5 + [-1] * 3 + [7] * 3 + [24] * 4
    assert target.sum(1).tolist() == [1.0] * 10 + [0.0] * 3 + [1.0] * 7
    for bad in ("C:maj", [{"start_time": 2, "end_time": 1, "chord_str": "C"}], [{"start": 0}]):
        with pytest.raises(ValueError):
            task.encode_frames(bad, 5, FPS)


def test_loss_ignores_frames_without_a_class() -> None:
    task = ChordTask()
    label = [seg(0.0, 1.0, "C:maj"), seg(1.0, 2.0, "G:sus4"), seg(2.0, 3.0, "A:min")]
    targets = torch.from_numpy(task.encode_frames(label, 30, FPS))
    logits = torch.randn(3, 30, 25, dtype=torch.float64)
    index = torch.from_numpy(frame_classes(label, 30, FPS))
    expected = [torch.nn.functional.cross_entropy(h, index, ignore_index=-1) for h in logits]
    torch.testing.assert_close(task.loss(logits, targets), torch.stack(expected))


def disjoint(label: list[dict]) -> tuple[np.ndarray, list[str]]:
    """The reference as mir_eval takes it: each segment starts where the one before ends."""
    ordered = sorted(label, key=lambda s: s["start_time"])
    starts = [ordered[0]["start_time"]] + [s["end_time"] for s in ordered[:-1]]
    return (np.array([[a, s["end_time"]] for a, s in zip(starts, ordered, strict=True)]),
            [s["chord_str"] for s in ordered])


def test_metrics_equal_mir_eval_and_a_frame_loop() -> None:
    task = ChordTask()
    labels = [song(s, seconds=10.0 + s) for s in range(4)]
    preds = [decode(task, label, seed=10 + s) for s, label in enumerate(labels)]
    # one track alone: mir_eval.chord.evaluate
    for pred, label in zip(preds, labels, strict=True):
        ref_int, ref_lab = disjoint(label)
        end = max(s["end_time"] for s in label)  # decoded runs cropped to the annotation
        runs = [r for r in pred["runs"] if r[0] / FPS < end]
        est_int = np.array([[a / FPS, min(b / FPS, end)] for a, b, _ in runs])
        est_lab = [CLASSES[c] for _, _, c in runs]
        reference = mir_eval.chord.evaluate(ref_int, ref_lab, est_int, est_lab)
        got = task.evaluate([pred], [label])
        for name in ("majmin", "root", "mirex"):
            assert got[name] == pytest.approx(reference[name]), name
    # all tracks: mir_eval on the tracks laid end to end (duration-weighted over the set)
    offset, ref_int, ref_lab, est_int, est_lab = 0.0, [], [], [], []
    for pred, label in zip(preds, labels, strict=True):
        end = max(s["end_time"] for s in label)
        intervals, chords = disjoint(label)
        ref_int += (intervals + offset).tolist()
        ref_lab += chords
        est_int += [[offset + a / FPS, offset + min(b / FPS, end)] for a, b, _ in pred["runs"]
                    if a / FPS < end]
        est_lab += [CLASSES[c] for a, _, c in pred["runs"] if a / FPS < end]
        offset += end
    pooled = mir_eval.chord.evaluate(np.array(ref_int), ref_lab, np.array(est_int), est_lab)
    got = task.evaluate(preds, labels)
    for name in ("majmin", "root", "mirex"):
        assert got[name] == pytest.approx(pooled[name]), name
    # MARBLE's frame accuracy: a plain loop over frames
    hits = counted = 0
    for pred, label in zip(preds, labels, strict=True):
        for start, end, cls in pred["runs"]:
            for frame in range(start, end):
                t = frame / FPS
                ref = "N"
                for s in sorted(label, key=lambda s: s["start_time"]):
                    if s["start_time"] <= t < s["end_time"]:
                        ref = s["chord_str"]
                k = majmin_class(ref)
                counted += k >= 0
                hits += k >= 0 and k == cls
    assert got["chord_accuracy"] == pytest.approx(hits / counted)
    assert 0.3 < got["chord_accuracy"] < 0.9
    # the bootstrap's ratio terms add up to the same numbers
    terms = task.per_track(preds, labels)
    assert {n: t[0].sum() / t[1].sum() for n, t in terms.items()} == pytest.approx(got)


def test_device_accuracy_equals_evaluate() -> None:
    task = ChordTask()
    labels = [song(s) for s in range(3)]
    lengths = [int(12.0 * FPS) + 2 for _ in labels]
    targets = torch.cat([torch.from_numpy(task.encode_frames(lab, n, FPS))
                         for lab, n in zip(labels, lengths, strict=True)])
    outputs = torch.randn(4, targets.shape[0], 25) + 2.0 * targets  # 4 heads
    device = task.score(outputs, targets)
    for h in range(4):
        tracks = np.split(outputs[h].numpy(), np.cumsum(lengths)[:-1])
        got = task.evaluate(task.predictions(tracks, frame_rate=FPS), labels)
        assert float(device[h]) == pytest.approx(got["chord_accuracy"])


def test_chance_predicts_the_commonest_training_chord() -> None:
    task = ChordTask()
    train = [[seg(0, 8, "A:min"), seg(8, 10, "C:maj")], [seg(0, 3, "A:min7")]]
    test = [[seg(0, 4, "A:min"), seg(4, 6, "E:maj")]]
    chance = task.chance(train, test)
    assert chance["chord_accuracy"] == pytest.approx(4 / 6, abs=0.01)
    assert chance["majmin"] == pytest.approx(4 / 6)
    assert math.isnan(task.evaluate([{"frame_rate": FPS, "runs": []}],
                                    [[seg(0, 1, "G:sus4")]])["chord_accuracy"])

"""Clip tasks: label encoding, losses, and the batched torch scores against sklearn / mir_eval."""

from __future__ import annotations

import json
import re

import mir_eval
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    r2_score,
    roc_auc_score,
)

from mirprobe.plugins import available_tasks, get_task
from mirprobe.tasks import metrics
from mirprobe.tasks.key import KEYS, KeyTask

RNG = np.random.default_rng(0)


# --- torch metrics against sklearn -------------------------------------------------------

def test_roc_auc_and_average_precision_match_sklearn_with_ties():
    scores = np.round(RNG.normal(size=(3, 4, 60)), 1)  # coarse values: many ties
    labels = RNG.random((4, 60)) < 0.3
    auc = metrics.roc_auc(torch.tensor(scores), torch.tensor(labels)).numpy()
    ap = metrics.average_precision(torch.tensor(scores), torch.tensor(labels)).numpy()
    for h in range(3):
        for c in range(4):
            assert auc[h, c] == pytest.approx(roc_auc_score(labels[c], scores[h, c]), abs=1e-9)
            assert ap[h, c] == pytest.approx(
                average_precision_score(labels[c], scores[h, c]), abs=1e-9)


def test_chunked_metrics_equal_unchunked(monkeypatch):
    scores = torch.randn(7, 3, 50)
    labels = torch.rand(3, 50) < 0.4
    whole = metrics.roc_auc(scores, labels), metrics.average_precision(scores, labels)
    monkeypatch.setattr(metrics, "CHUNK", 200)  # 150 elements per head: one head per chunk
    torch.testing.assert_close(metrics.roc_auc(scores, labels), whole[0])
    torch.testing.assert_close(metrics.average_precision(scores, labels), whole[1])


def test_undefined_auc_is_nan():
    scores = torch.tensor([[0.1, 0.4, 0.3]])
    assert torch.isnan(metrics.roc_auc(scores, torch.tensor([[True, True, True]]))).all()
    assert torch.isnan(metrics.average_precision(scores, torch.tensor([[False] * 3]))).all()


def test_r2_matches_sklearn_including_a_constant_dimension():
    truth = RNG.normal(size=(40, 3))
    truth[:, 2] = 1.5
    preds = RNG.normal(size=(2, 40, 3))
    preds[1, :, 2] = 1.5  # exact on the constant dimension → 1, else 0 (force_finite)
    got = metrics.r2(torch.tensor(preds), torch.tensor(truth)).numpy()
    for h in range(2):
        want = r2_score(truth, preds[h], multioutput="raw_values")
        np.testing.assert_allclose(got[h], want, atol=1e-12)


# --- multiclass / genre --------------------------------------------------------------------

GENRES = ["rock", "blues", "jazz", "pop"]


def _genre_data(n: int = 50) -> tuple[list[str], np.ndarray]:
    labels = [GENRES[i] for i in RNG.integers(0, 4, n)]
    return labels, RNG.normal(size=(n, 4))


def test_multiclass_classes_sorted_and_unknown_label_named():
    task = get_task("genre")
    task.fit(["rock", "blues", "rock", "jazz"])
    assert task.classes == ["blues", "jazz", "rock"]
    assert task.encode("rock") == 2
    with pytest.raises(ValueError, match="'metal'"):
        task.encode("metal")
    with pytest.raises(ValueError, match="not a class name"):
        task.encode(["rock"])


def test_genre_score_and_evaluate_match_sklearn():
    task = get_task("genre")
    labels, _ = _genre_data()
    task.fit(labels)
    outputs = RNG.normal(size=(5, len(labels), 4))
    targets = torch.tensor(np.array([task.encode(label) for label in labels]))
    score = task.score(torch.tensor(outputs), targets).numpy()
    for h in range(5):
        truth = [task.classes.index(label) for label in labels]
        predicted = outputs[h].argmax(1)
        assert score[h] == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
        result = task.evaluate(outputs[h], labels)
        assert result["accuracy"] == pytest.approx(score[h], abs=1e-12)
        assert result["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_multiclass_loss_is_cross_entropy_per_head():
    task = get_task("multiclass", classes=["a", "b", "c"])
    logits = torch.randn(4, 10, 3)
    targets = torch.randint(0, 3, (10,))
    want = torch.stack([F.cross_entropy(logits[h], targets) for h in range(4)])
    torch.testing.assert_close(task.loss(logits, targets), want)


def test_genre_chance_is_majority_training_class():
    task = get_task("genre")
    train = ["rock"] * 5 + ["jazz"] * 3 + ["blues"] * 2
    test = ["rock", "jazz", "jazz", "blues"]
    task.fit(train)
    result = task.chance(train, test)
    assert result["accuracy"] == pytest.approx(1 / 4)
    assert result["macro_f1"] == pytest.approx(
        f1_score(test, ["rock"] * 4, average="macro", zero_division=0))


def test_evaluate_rejects_misshaped_predictions():
    task = get_task("genre", classes=GENRES)
    with pytest.raises(ValueError, match="shape"):
        task.evaluate(np.zeros((3, 4)), ["rock", "pop"])


# --- multilabel / tagging ------------------------------------------------------------------

TAGS = ["drums", "guitar", "piano", "rare", "vocal"]


def _tag_labels(n: int) -> list[list[str]]:
    labels = [[t for t in ("drums", "guitar", "piano", "vocal") if RNG.random() < 0.4]
              for _ in range(n)]
    labels[0] = []  # a track with no tag is a zero target
    return labels


def test_tagging_encode():
    task = get_task("tagging")
    task.fit([["b", "a"], [], ["c"]])
    assert task.classes == ["a", "b", "c"]
    np.testing.assert_array_equal(task.encode([]), [0, 0, 0])
    np.testing.assert_array_equal(task.encode(["c", "a"]), [1, 0, 1])
    with pytest.raises(ValueError, match="'zither'"):
        task.encode(["zither"])


def test_tagging_score_matches_evaluate_and_sklearn_excluding_undefined_classes():
    task = get_task("tagging", classes=TAGS)  # "rare" never occurs: no AUC for it
    labels = [sorted({*label, "piano"}) for label in _tag_labels(80)]  # "piano" always: no AUC
    truth = np.stack([task.encode(label) for label in labels])
    outputs = RNG.normal(size=(4, 80, 5))
    score = task.score(torch.tensor(outputs), torch.tensor(truth)).numpy()
    kept = [c for c in range(5) if 0 < truth[:, c].sum() < 80]
    assert kept == [TAGS.index("drums"), TAGS.index("guitar"), TAGS.index("vocal")]
    for h in range(4):
        want_auc = np.mean([roc_auc_score(truth[:, c], outputs[h, :, c]) for c in kept])
        want_ap = np.mean([average_precision_score(truth[:, c], outputs[h, :, c]) for c in kept])
        result = task.evaluate(outputs[h], labels)
        assert score[h] == pytest.approx(want_auc, abs=1e-6)
        assert result["roc_auc"] == pytest.approx(want_auc, abs=1e-9)
        assert result["average_precision"] == pytest.approx(want_ap, abs=1e-9)


def test_tagging_chance_is_half_auc_and_prevalence_ap():
    task = get_task("tagging", classes=TAGS)
    train, test = _tag_labels(30), _tag_labels(40)
    truth = np.stack([task.encode(label) for label in test])
    kept = (truth.sum(0) > 0) & (truth.sum(0) < 40)
    result = task.chance(train, test)
    assert result["roc_auc"] == pytest.approx(0.5)
    assert result["average_precision"] == pytest.approx(truth[:, kept].mean(0).mean())


# --- key -----------------------------------------------------------------------------------

MARBLE_ORDER = ["C major", "Db major", "D major", "Eb major", "E major", "F major", "Gb major",
                "G major", "Ab major", "A major", "Bb major", "B major", "C minor", "Db minor",
                "D minor", "Eb minor", "E minor", "F minor", "Gb minor", "G minor", "Ab minor",
                "A minor", "Bb minor", "B minor"]


def test_key_classes_in_marble_order():
    assert list(KEYS) == MARBLE_ORDER
    assert get_task("key").classes == MARBLE_ORDER
    assert KeyTask.group_by_uid


@pytest.mark.parametrize("label, index", [
    ("Eb minor", 15), ("D# minor", 15), ("eb minor", 15), ("C major", 0), ("c# major", 1),
    ("A# major", 10), ("Gb major", 6), ("F# major", 6), ("B minor", 23), ("  Ab   minor ", 20),
])
def test_key_label_encoding(label, index):
    assert get_task("key").encode(label) == index


@pytest.mark.parametrize("label", ["H major", "C dorian", "X", "", "Eb", 5, None])
def test_key_bad_label_is_named(label):
    with pytest.raises(ValueError, match=re.escape(repr(label))):
        get_task("key").encode(label)


def test_key_score_matches_mir_eval():
    task = get_task("key")
    labels = [MARBLE_ORDER[i] for i in RNG.integers(0, 24, 60)]
    outputs = RNG.normal(size=(3, 60, 24))
    targets = torch.tensor([task.encode(label) for label in labels])
    score = task.score(torch.tensor(outputs), targets).numpy()
    for h in range(3):
        estimates = [MARBLE_ORDER[i] for i in outputs[h].argmax(1)]
        want = np.mean([mir_eval.key.weighted_score(r, e) for r, e in zip(labels, estimates, strict=True)])
        result = task.evaluate(outputs[h], labels)
        assert score[h] == pytest.approx(want, abs=1e-9)
        assert result["weighted_score"] == pytest.approx(want, abs=1e-9)
        assert result["accuracy"] == pytest.approx(np.mean([r == e for r, e in zip(labels, estimates, strict=True)]))


def test_key_chance_is_best_constant_key_on_training_labels():
    task = get_task("key")
    train = ["A minor"] * 4 + ["C major"] * 3 + ["E minor"] * 3
    test = ["A minor", "C major", "G major", "D minor"]
    expected = [np.mean([mir_eval.key.weighted_score(r, k) for r in train]) for k in MARBLE_ORDER]
    best = MARBLE_ORDER[int(np.argmax(expected))]
    result = task.chance(train, test)
    assert result["weighted_score"] == pytest.approx(
        np.mean([mir_eval.key.weighted_score(r, best) for r in test]))
    assert result["accuracy"] == pytest.approx(np.mean([r == best for r in test]))


# --- regression / emotion ------------------------------------------------------------------

def test_emotion_score_evaluate_and_chance_match_sklearn():
    task = get_task("emotion")
    train = RNG.normal([0.2, -0.1], [0.5, 2.0], size=(50, 2)).tolist()
    test = RNG.normal([0.2, -0.1], [0.5, 2.0], size=(30, 2))
    task.fit(train)
    truth = np.array(test)
    encoded = torch.tensor(np.stack([task.encode(label) for label in test.tolist()]))
    outputs = RNG.normal(size=(3, 30, 2))  # in the standardised training space
    score = task.score(torch.tensor(outputs), encoded).numpy()
    for h in range(3):
        stored = task.predictions(outputs[h])
        result = task.evaluate(stored, test.tolist())
        assert score[h] == pytest.approx(result["r2"], abs=1e-5)
        assert result["r2_arousal"] == pytest.approx(r2_score(truth[:, 0], stored[:, 0]))
        assert result["r2_valence"] == pytest.approx(r2_score(truth[:, 1], stored[:, 1]))
        assert result["r2"] == pytest.approx(r2_score(truth, stored))
    mean = np.mean(train, axis=0)
    assert task.chance(train, test.tolist())["r2"] == pytest.approx(
        r2_score(truth, np.tile(mean, (30, 1))))


def test_regression_infers_dims_and_checks_labels():
    task = get_task("regression")
    task.fit([[1.0, 2.0, 3.0], [2.0, 2.0, 1.0]])
    assert task.output_dim == 3
    assert task.metrics == ("r2", "r2_0", "r2_1", "r2_2")
    with pytest.raises(ValueError, match=r"\[1.0, 2.0\].*expected 3"):
        task.encode([1.0, 2.0])
    with pytest.raises(ValueError, match="'fast'"):
        task.encode("fast")
    scalar = get_task("regression", dims=["tempo"], standardize=False)
    scalar.fit([100.0, 120.0])
    assert scalar.encode(110) == pytest.approx([110.0])


def test_regression_loss_is_mse_per_head():
    task = get_task("emotion")
    logits, targets = torch.randn(3, 8, 2), torch.randn(8, 2)
    want = torch.stack([F.mse_loss(logits[h], targets) for h in range(3)])
    torch.testing.assert_close(task.loss(logits, targets), want)


# --- registry ------------------------------------------------------------------------------

def test_every_registered_task_loads_and_describes_as_json():
    for name in available_tasks():
        task = get_task(name)
        assert task.name == name
        if name == "beat":
            continue
        train = {"multiclass": ["a", "b"], "genre": ["a", "b"], "key": ["C major"],
                 "multilabel": [["a"], []], "tagging": [["a"], []],
                 "regression": [[1.0], [2.0]], "emotion": [[0.0, 1.0], [1.0, 0.0]],
                 "chord": [[{"start_time": 0.0, "end_time": 1.0, "chord_str": "C:maj"}]]}[name]
        task.fit(train)
        json.dumps(task.describe())
        assert task.output_dim > 0

"""Bootstrap intervals and paired comparisons against direct computations."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    r2_score,
    roc_auc_score,
)
from test_report_fixtures import ToyClassTask, ToyRegTask, ToyTagTask, class_data

from mirprobe.errors import UserError
from mirprobe.report.stats import (
    SeedMetric,
    bootstrap_metric,
    cluster_weights,
    expand,
    paired_bootstrap,
    percentile_interval,
    resampled_metric,
)
from mirprobe.tasks.base import Metric, Task


def test_cluster_weights_keep_songs_together():
    uids = ["a", "a", "b", "c", "c", "c", "d"]
    w = cluster_weights(uids, n_boot=500, seed=3)
    assert w.shape == (500, 7)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()
    # Each resample draws as many songs as there are (4); per song, one weight each.
    assert (w[:, [0, 2, 3, 6]].sum(1) == 4).all()
    # A song is drawn once per resample on average.
    assert w.mean(0) == pytest.approx(np.ones(7), abs=0.1)
    assert (cluster_weights(uids, 500, 3) == w).all()


def _direct(fn, pred, y, weights):
    return np.array([fn(y[expand(w)], pred[expand(w)]) for w in weights])


def test_classification_matches_direct_resampling():
    rng = np.random.default_rng(0)
    logits, labels = class_data(rng, 40, 3, 0.6)
    task = ToyClassTask(classes=["c0", "c1", "c2"])
    y = np.array([task.classes.index(lab) for lab in labels])
    uids = [f"s{i // 2}" for i in range(40)]
    w = cluster_weights(uids, 200, 0)
    acc = _direct(lambda t, p: accuracy_score(t, p.argmax(1)), logits, y, w)
    f1 = _direct(lambda t, p: f1_score(t, p.argmax(1), average="macro", labels=range(3),
                                       zero_division=0), logits, y, w)
    assert resampled_metric(task, [logits], labels, "accuracy", w)[1] == pytest.approx(acc, abs=1e-12)
    assert resampled_metric(task, [logits], labels, "macro_f1", w)[1] == pytest.approx(f1, abs=1e-12)
    assert SeedMetric(task, logits, labels, "accuracy")._fast is not None  # declared: mean
    assert SeedMetric(task, logits, labels, "macro_f1")._fast is None  # undeclared: evaluate
    # Undeclared (a plain name), accuracy is recomputed with evaluate: the same values.
    plain = type("Plain", (ToyClassTask,), {"metrics": ("accuracy",)})(classes=task.classes)
    assert SeedMetric(plain, logits, labels, "accuracy")._fast is None
    assert resampled_metric(plain, [logits], labels, "accuracy", w)[1] == pytest.approx(acc, abs=1e-12)
    # A declaration that does not reproduce evaluate is an error, not a silent fallback.
    wrong = type("Wrong", (ToyClassTask,), {"metrics": (Metric("macro_f1", resample="mean"),),
                                            "per_track": Task.per_track})
    with pytest.raises(UserError, match="macro_f1.*fix the declaration"):
        SeedMetric(wrong(classes=task.classes), logits, labels, "macro_f1")
    iv = bootstrap_metric(task, [logits], labels, uids, "accuracy", n_boot=200, seed=0)
    assert (iv.low, iv.high) == pytest.approx(tuple(np.percentile(acc, [2.5, 97.5])))
    assert iv.value == pytest.approx(accuracy_score(y, logits.argmax(1)))


def test_tagging_and_regression_shortcuts_match_sklearn():
    rng = np.random.default_rng(1)
    n = 50
    tags = ToyTagTask(classes=["a", "b", "c", "d"])
    y = rng.random((n, 4)) < 0.4
    y[:2] = [[True] * 4, [False] * 4]
    scores = (y + rng.normal(size=y.shape)).round(1)  # rounding makes ties
    labels = [[c for c, on in zip(tags.classes, row, strict=True) if on] for row in y]
    w = cluster_weights([str(i) for i in range(n)], 100, 2)
    w = w[[np.all([(y[expand(r)].any(0)) & (~y[expand(r)]).any(0)]) for r in w]]  # all defined
    for metric, fn in (("roc_auc", roc_auc_score), ("ap", average_precision_score)):
        assert SeedMetric(tags, scores, labels, metric)._fast is not None
        direct = _direct(lambda t, p, fn=fn: fn(t, p, average="macro"), scores, y, w)
        assert resampled_metric(tags, [scores], labels, metric, w)[1] == pytest.approx(direct)
    reg = ToyRegTask()
    target = rng.normal(size=(n, 2))
    pred = target + rng.normal(size=(n, 2))
    for metric, fn in (("r2", lambda t, p: r2_score(t, p)),
                       ("r2_valence", lambda t, p: r2_score(t[:, 1], p[:, 1]))):
        assert SeedMetric(reg, pred, target.tolist(), metric)._fast is not None
        direct = _direct(fn, pred, target, w)
        assert resampled_metric(reg, [pred], target.tolist(), metric, w)[1] == pytest.approx(direct)


def test_seeds_are_averaged_per_resample():
    rng = np.random.default_rng(2)
    logits, labels = class_data(rng, 30, 3, 0.5, seeds=3)
    task = ToyClassTask(classes=["c0", "c1", "c2"])
    y = np.array([task.classes.index(lab) for lab in labels])
    w = cluster_weights([str(i) for i in range(30)], 50, 0)
    per_seed = [_direct(lambda t, p: f1_score(t, p.argmax(1), average="macro", labels=range(3),
                                              zero_division=0), s, y, w) for s in logits]
    value, samples = resampled_metric(task, list(logits), labels, "macro_f1", w)
    assert samples == pytest.approx(np.mean(per_seed, axis=0))


def test_paired_comparison_sign_and_interval():
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 4, n)
    labels = [f"c{i}" for i in y]
    task = ToyClassTask(classes=[f"c{i}" for i in range(4)])
    uids = [f"song{i // 3}" for i in range(n)]

    def model(skill):
        logits = rng.normal(size=(n, 4))
        logits[np.arange(n), y] += np.where(rng.random(n) < skill, 9.0, 0.0)
        return logits

    good, weak = model(0.9), model(0.5)
    cmp = paired_bootstrap(task, [good], [weak], labels, uids, "accuracy")
    assert cmp.diff > 0 and cmp.low > 0 and cmp.p_a_better > 0.99
    assert cmp.diff == pytest.approx(accuracy_score(y, good.argmax(1)) - accuracy_score(y, weak.argmax(1)))
    back = paired_bootstrap(task, [weak], [good], labels, uids, "accuracy")
    assert back.high < 0 and back.p_a_better < 0.01
    same = paired_bootstrap(task, [good], [good], labels, uids, "accuracy")
    assert same.diff == 0 and same.low == 0 and same.high == 0 and same.p_a_better == 0.5
    # Two runs of one model (different noise, same skill): the interval covers 0.
    twin = paired_bootstrap(task, [model(0.7)], [model(0.7)], labels, uids, "accuracy")
    assert twin.low < 0 < twin.high
    # Lower-is-better flips what "A better" means.
    flipped = paired_bootstrap(task, [good], [weak], labels, uids, "accuracy", higher_is_better=False)
    assert flipped.p_a_better == pytest.approx(1 - cmp.p_a_better)


def test_percentile_interval_and_speed():
    samples = np.arange(101, dtype=float)
    assert percentile_interval(samples) == pytest.approx((2.5, 97.5))
    rng = np.random.default_rng(4)
    tags = ToyTagTask(classes=[f"t{i}" for i in range(50)])
    y = rng.random((300, 50)) < 0.3
    labels = [[c for c, on in zip(tags.classes, row, strict=True) if on] for row in y]
    scores = y + rng.normal(size=y.shape)
    logits, cls_labels = class_data(rng, 300, 10, 0.5)
    cls = ToyClassTask(classes=[f"c{i}" for i in range(10)])
    uids = [str(i) for i in range(300)]
    start = time.perf_counter()
    bootstrap_metric(tags, [scores], labels, uids, "roc_auc")
    bootstrap_metric(cls, [logits], cls_labels, uids, "accuracy")
    assert time.perf_counter() - start < 5  # about 0.5 s here; loose for shared CI machines


def _real_cases(rng: np.random.Generator, n: int):
    from mirprobe.plugins import get_task

    keys = ["C major", "A minor", "G major", "E minor", "F major"]
    key_labels = [keys[i] for i in rng.integers(0, 5, n)]
    genre = get_task("genre", classes=["blues", "jazz", "rock"])
    yield genre, rng.normal(size=(n, 3)), [genre.classes[i] for i in rng.integers(0, 3, n)]
    tags = get_task("tagging", classes=["a", "b", "c"])
    y = rng.random((n, 3)) < 0.3
    yield tags, y + rng.normal(size=y.shape), [[t for t, on in zip("abc", r, strict=True) if on] for r in y]
    emo = get_task("emotion")
    truth = rng.normal(size=(n, 2))
    emo.fit(truth.tolist())
    yield emo, truth + rng.normal(size=truth.shape), truth.tolist()
    yield get_task("key"), rng.normal(size=(n, 24)), key_labels
    beat = get_task("beat")
    labels = [{"beat": list(np.arange(0.5, 8, 0.5)), "downbeat": [0.5, 2.5]} for _ in range(n)]
    preds = [{"beat": list(np.arange(0.5, 8, 0.5) + rng.normal(0, 0.05, 15)), "downbeat": [0.5]}
             for _ in range(n)]
    yield beat, preds, labels


def test_real_tasks_match_their_own_evaluate():
    """Every metric of the built-in tasks, shortcut or not, equals task.evaluate on the
    materialised resample."""
    rng = np.random.default_rng(5)
    n = 24
    w = cluster_weights([f"s{i // 2}" for i in range(n)], 15, 1)
    for task, pred, labels in _real_cases(rng, n):
        task.fit(labels) if task.kind != "beat" else None
        for metric in task.metrics:
            got = resampled_metric(task, [pred], labels, metric, w)[1]
            idx = [expand(r) for r in w]
            want = [task.evaluate(pred[i] if isinstance(pred, np.ndarray) else [pred[j] for j in i],
                                  [labels[j] for j in i])[metric] for i in idx]
            assert got == pytest.approx(np.array(want), nan_ok=True), (task.name, metric)

"""Bootstrap confidence intervals and paired comparisons over test tracks.

Method (documented in the README):

- Resampling units are test tracks; tracks that share an ``ori_uid`` (clips of one song) are
  one cluster and are drawn together. A resample draws as many clusters as there are, with
  replacement; it is held as integer weights ``[resamples, tracks]`` (how often each track
  was drawn), so every resample is the multiset of tracks a direct resampling would give.
- The metric is recomputed on each resample with the task's own ``evaluate``; when a run
  has several seeds, the metric is computed per seed and averaged over seeds per resample.
- The interval is the percentile interval (2.5th and 97.5th percentiles); 1,000 resamples,
  seed 0 by default.
- Paired comparison: the same resamples of the same tracks score A and B; the difference
  A − B gets a percentile interval, and P(A better) is the share of resamples where A is
  better (ties count half).

Speed: ``task.evaluate`` per resample is the reference path. Exact shortcuts are used when
they reproduce ``task.evaluate`` on the data and on a random half of it: accuracy, macro
ROC-AUC, macro average precision and R² computed with resample weights in numpy; and any
other metric that is a mean over tracks (key score, beat F-measure) becomes a weighted mean
of per-track values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.errors import UserError
from mirprobe.record import Record
from mirprobe.report.records import layer_entry, load_record_predictions, rebuild_task

N_BOOT = 1000
SEED = 0
LEVEL = 0.95
_TOL = 1e-6


def cluster_weights(uids: Sequence[str], n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """``[n_boot, tracks]`` integer weights of a cluster bootstrap (clusters = equal uids)."""
    _, cluster = np.unique(np.asarray(uids, dtype=str), return_inverse=True)
    n_clusters = int(cluster.max()) + 1 if len(cluster) else 0
    if n_clusters < 2:
        raise UserError(f"cannot bootstrap over {n_clusters} test song(s); the test split needs more")
    draws = np.random.default_rng(seed).integers(0, n_clusters, (n_boot, n_clusters))
    flat = (draws + np.arange(n_boot)[:, None] * n_clusters).ravel()
    counts = np.bincount(flat, minlength=n_boot * n_clusters).reshape(n_boot, n_clusters)
    return counts[:, cluster]


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of ``samples`` (NaN resamples ignored)."""
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(np.asarray(samples, dtype=float), [tail, 100 - tail])
    return float(lo), float(hi)


def expand(weights: np.ndarray) -> np.ndarray:
    """Track indices of one resample (each track repeated as often as it was drawn)."""
    return np.repeat(np.arange(len(weights)), weights)


# --- predictions: seeds and subsets -------------------------------------------------------

def split_seeds(predictions: Any, n_tracks: int) -> list[Any]:
    """Per-seed predictions: ``[seeds, tracks, out]`` arrays and lists of per-seed lists."""
    if isinstance(predictions, np.ndarray):
        return list(predictions) if predictions.ndim == 3 else [predictions]
    if (len(predictions) != n_tracks and len(predictions)
            and all(isinstance(p, list) and len(p) == n_tracks for p in predictions)):
        return list(predictions)
    return [predictions]


def take(predictions: Any, idx: np.ndarray) -> Any:
    """The predictions of tracks ``idx`` (arrays or per-track lists)."""
    if isinstance(predictions, np.ndarray):
        return predictions[idx]
    return [predictions[i] for i in idx]


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


# --- one seed's metric over resamples --------------------------------------------------------

class SeedMetric:
    """One seed's predictions: the metric on the data and on weighted resamples."""

    def __init__(self, task: Any, predictions: Any, labels: Sequence[Any], metric: str) -> None:
        self.task, self.pred, self.labels, self.metric = task, predictions, list(labels), metric
        self.full = self._evaluate(np.arange(len(self.labels)))
        if self.full is None or metric not in self.full:
            raise UserError(f"task {task.name!r} does not report metric {metric!r}; "
                            f"it reports: {', '.join(self.full or {})}")
        self.value = float(self.full[metric])
        self._fast = self._weighted() or self._per_track()

    def _evaluate(self, idx: np.ndarray) -> dict[str, float] | None:
        try:
            return _quiet(lambda: self.task.evaluate(take(self.pred, idx),
                                                     [self.labels[i] for i in idx]))
        except Exception:  # noqa: BLE001 - an undefined metric on a resample is a NaN
            return None

    def _metric(self, idx: np.ndarray) -> float:
        out = self._evaluate(idx)
        return float(out[self.metric]) if out and self.metric in out else np.nan

    def _per_track(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """A mean over tracks becomes a weighted mean of per-track values."""
        n = len(self.labels)
        probe = np.random.default_rng(1).permutation(n)[: min(n, 8)]
        single = np.array([self._metric(np.array([i])) for i in probe])
        if not np.isfinite(single).all() or not _close(single.mean(), self._metric(np.sort(probe))):
            return None
        values = np.array([self._metric(np.array([i])) for i in range(n)])
        if not np.isfinite(values).all() or not _close(values.mean(), self.value):
            return None
        return lambda w: (w @ values) / w.sum(axis=1)

    def _weighted(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """Weighted numpy versions of accuracy, macro ROC-AUC, AP and R², when one matches."""
        scores = np.asarray(self.pred, dtype=float) if isinstance(self.pred, np.ndarray) else None
        if scores is None or scores.ndim != 2:
            return None
        n = len(self.labels)
        ones = np.ones((1, n))
        # Confirm a match on a random half too, so that a coincidence on the data is not enough.
        half = np.zeros((1, n))
        half[0, np.random.default_rng(2).permutation(n)[: max(2, n // 2)]] = 1
        for targets in self._targets():
            if len(targets) != n:
                continue
            for fn in _candidates(self.task.kind, targets, scores):
                with np.errstate(divide="ignore", invalid="ignore"):
                    if (_close(float(fn(ones)[0]), self.value) and
                            _close(float(fn(half)[0]), self._metric(expand(half[0].astype(int))))):
                        return fn
        return None

    def _targets(self) -> list[np.ndarray]:
        """The labels as numbers: raw (regression labels) and as the task encodes them."""
        out = []
        for convert in (lambda lab: lab, self.task.encode):
            try:
                out.append(np.stack([np.asarray(convert(lab), dtype=float) for lab in self.labels]))
            except Exception:  # noqa: BLE001 - not numeric in this form
                continue
        return out

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        """The metric on each resample ``[n_boot]``."""
        if self._fast is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                return self._fast(weights.astype(float))
        return np.array([self._metric(expand(w)) for w in weights])


def _close(a: float, b: float) -> bool:
    return bool(np.isfinite(a) and np.isfinite(b) and abs(a - b) <= _TOL * max(1.0, abs(b)))


def _candidates(kind: str, y: np.ndarray, s: np.ndarray) -> list[Callable[[np.ndarray], np.ndarray]]:
    if kind == "multiclass" and y.ndim == 1 and len(s.shape) == 2:
        right = (s.argmax(1) == y).astype(float)
        return [lambda w: (w @ right) / w.sum(1)]
    if y.shape != s.shape:
        return []
    if kind == "multilabel":
        yb = y > 0.5
        return [lambda w: _macro(_auc, w, yb, s), lambda w: _macro(_ap, w, yb, s)]
    if kind == "regression":
        cols = [lambda w, j=j: _r2(w, y[:, j], s[:, j]) for j in range(y.shape[1])]
        return [lambda w: np.mean([c(w) for c in cols], axis=0), *cols]
    return []


def _macro(fn: Callable, w: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Macro mean over the classes with a positive and a negative track in each resample."""
    wt = np.ascontiguousarray(w.T)  # [N, B]: gathers and sums run along contiguous rows
    per = np.stack([fn(wt, y[:, c], s[:, c]) for c in range(y.shape[1])])
    defined = ((w @ y) > 0) & ((w @ ~y) > 0)  # [B, C]
    per = np.where(defined.T, per, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no defined class
        return np.nanmean(per, axis=0)


def _groups(wt: np.ndarray, y: np.ndarray, s: np.ndarray, descending: bool
            ) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per group of tied scores, in score order: ``[G, B]``."""
    order = np.argsort(-s if descending else s, kind="mergesort")
    ss, ys, ws = s[order], y[order], wt[order]
    pos, neg = ws * ys[:, None], ws * ~ys[:, None]
    if (ss[1:] != ss[:-1]).all():  # no ties
        return pos, neg
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    return np.add.reduceat(pos, starts, axis=0), np.add.reduceat(neg, starts, axis=0)


def _auc(wt: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC (ties count half) per resample."""
    pos, neg = _groups(wt, y, s, descending=False)
    below = np.cumsum(neg, axis=0) - neg
    return (pos * (below + 0.5 * neg)).sum(0) / (pos.sum(0) * neg.sum(0))


def _ap(wt: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Weighted average precision (scikit-learn's step-wise definition) per resample."""
    pos, neg = _groups(wt, y, s, descending=True)
    tp, fp = np.cumsum(pos, axis=0), np.cumsum(neg, axis=0)
    precision = np.where(pos > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
    return (pos * precision).sum(0) / pos.sum(0)


def _r2(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Weighted coefficient of determination per resample."""
    total = w.sum(1)
    mean = (w @ y) / total
    ss_tot = w @ (y**2) - total * mean**2
    return 1 - (w @ (y - p) ** 2) / ss_tot


# --- public API ----------------------------------------------------------------------------

@dataclass
class Interval:
    """A score with its bootstrap interval; ``samples`` are the per-resample values."""

    value: float
    low: float
    high: float
    samples: np.ndarray


def resampled_metric(task: Any, predictions: Any, labels: Sequence[Any], metric: str,
                     weights: np.ndarray) -> tuple[float, np.ndarray]:
    """``(value, per-resample values)`` of ``metric``, seeds averaged."""
    seeds = [SeedMetric(task, p, labels, metric) for p in split_seeds(predictions, len(labels))]
    value = float(np.mean([s.value for s in seeds]))
    return value, np.mean([s.resampled(weights) for s in seeds], axis=0)


def bootstrap_metric(task: Any, predictions: Any, labels: Sequence[Any], uids: Sequence[str],
                     metric: str, *, n_boot: int = N_BOOT, seed: int = SEED,
                     level: float = LEVEL) -> Interval:
    """Percentile interval of ``metric`` over test tracks resampled by song (``uids``)."""
    _check_lengths(predictions, labels, uids)
    weights = cluster_weights(uids, n_boot, seed)
    value, samples = resampled_metric(task, predictions, labels, metric, weights)
    return Interval(value, *percentile_interval(samples, level), samples)


@dataclass
class Comparison:
    """A − B on the same test tracks: difference, interval, P(A better)."""

    a: float
    b: float
    diff: float
    low: float
    high: float
    p_a_better: float
    tracks: int


def paired_bootstrap(task: Any, pred_a: Any, pred_b: Any, labels: Sequence[Any],
                     uids: Sequence[str], metric: str, *, higher_is_better: bool = True,
                     n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> Comparison:
    """Paired bootstrap of ``metric(A) − metric(B)``: both scored on the same resamples."""
    _check_lengths(pred_a, labels, uids)
    _check_lengths(pred_b, labels, uids)
    weights = cluster_weights(uids, n_boot, seed)
    a, sa = resampled_metric(task, pred_a, labels, metric, weights)
    b, sb = resampled_metric(task, pred_b, labels, metric, weights)
    diff = sa - sb
    better = diff if higher_is_better else -diff
    ok = np.isfinite(better)
    p = float(((better[ok] > 0).sum() + 0.5 * (better[ok] == 0).sum()) / max(ok.sum(), 1))
    return Comparison(a, b, a - b, *percentile_interval(diff, level), p, len(labels))


def _check_lengths(predictions: Any, labels: Sequence[Any], uids: Sequence[str]) -> None:
    n = len(labels)
    if len(uids) != n or any(len(p) != n for p in split_seeds(predictions, n)):
        raise UserError(f"predictions, labels and uids disagree in length ({n} labels, "
                        f"{len(uids)} uids); the predictions file is damaged: re-run the record")


def record_interval(record: Record, layer: str | int | None, metric: str | None = None,
                    *, records_dir: Path | None = None, n_boot: int = N_BOOT, seed: int = SEED,
                    task: Any = None) -> tuple[float, float]:
    """95% interval of a record's test score at ``layer`` (None: the selected layer)."""
    entry = layer_entry(record, layer)
    per_layer, labels, uids = load_record_predictions(record, records_dir)
    if entry["index"] not in per_layer:
        raise UserError(f"run record {record.id} saved no predictions for {entry['layer']}")
    task = task or rebuild_task(record)
    metric = metric or record.selection_metric
    iv = bootstrap_metric(task, per_layer[entry["index"]], labels, uids, metric,
                          n_boot=n_boot, seed=seed)
    return iv.low, iv.high


def align(uids_a: Sequence[str], labels_a: Sequence[Any], uids_b: Sequence[str],
          labels_b: Sequence[Any]) -> np.ndarray:
    """Indices that put B's test tracks in A's order; a UserError when they differ."""
    ua, ub = list(uids_a), list(uids_b)
    if ua == ub:
        order = np.arange(len(ub))
    elif len(set(ua)) == len(ua) and sorted(ua) == sorted(ub):
        pos = {u: i for i, u in enumerate(ub)}
        order = np.array([pos[u] for u in ua])
    else:
        raise UserError("the two runs were tested on different tracks; compare runs on the "
                        "same dataset and test split")
    if [labels_b[i] for i in order] != list(labels_a):
        raise UserError("the two runs' test labels differ; compare runs on the same dataset")
    return order

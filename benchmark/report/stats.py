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

Speed: ``task.evaluate`` per resample is the reference path. Each metric declares how it
resamples (``Metric.resample`` in :mod:`mirprobe.tasks.base`): a mean over tracks becomes a
weighted mean of per-track values, a ratio of sums a weighted ratio, and a closed form on
resample weights (macro ROC-AUC, average precision, R²: :mod:`mirprobe.tasks.weighted`) runs
for all resamples at once. A declared form must reproduce ``evaluate`` on the data (else an
error names the task and metric).
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
from mirprobe.report.records import layer_entry, load_record_predictions

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


# --- predictions: subsets -------------------------------------------------------------------

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
    """One seed's predictions: the metric on the data and on weighted resamples, recomputed
    the way the task declares (``Metric.resample``)."""

    def __init__(self, task: Any, predictions: Any, labels: Sequence[Any], metric: str) -> None:
        self.task, self.pred, self.labels, self.metric = task, predictions, list(labels), metric
        self.full = self._evaluate(np.arange(len(self.labels)))
        if self.full is None or metric not in self.full:
            raise UserError(f"task {task.name!r} does not report metric {metric!r}; "
                            f"it reports: {', '.join(self.full or {})}")
        self.value = float(self.full[metric])
        self._fast = self._declared()

    def _evaluate(self, idx: np.ndarray) -> dict[str, float] | None:
        try:
            return _quiet(lambda: self.task.evaluate(take(self.pred, idx),
                                                     [self.labels[i] for i in idx]))
        except Exception:  # noqa: BLE001 - an undefined metric on a resample is a NaN
            return None

    def _metric(self, idx: np.ndarray) -> float:
        out = self._evaluate(idx)
        return float(out[self.metric]) if out and self.metric in out else np.nan

    def _declared(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The declared closed form on resample weights (None: ``evaluate`` per resample).

        It must give ``evaluate``'s value on the data: a declaration that disagrees is an
        error in the task; one that is undefined here (e.g. R² of a constant truth) leaves
        the metric to ``evaluate``."""
        try:
            declared = self.task.metric(self.metric)
        except KeyError:  # evaluate reports a metric the task does not declare
            return None
        how = declared.resample
        if how == "evaluate":
            return None
        if callable(how):
            fn = lambda w: how(self.task, w, self.pred, self.labels)  # noqa: E731
        else:
            values = _quiet(lambda: self.task.per_track(self.pred, self.labels))
            if self.metric not in values:
                raise UserError(f"task {self.task.name!r}: metric {self.metric!r} is declared "
                                f"resample={how!r} but per_track() gives no values for it")
            fn = _from_per_track(how, values[self.metric])
        with np.errstate(divide="ignore", invalid="ignore"):
            whole = float(fn(np.ones((1, len(self.labels))))[0])
        if not (np.isfinite(whole) and np.isfinite(self.value)):
            return None
        if not _close(whole, self.value):
            raise UserError(f"task {self.task.name!r}: metric {self.metric!r} declared as "
                            f"resample={declared.resampling!r} gives {whole:.6g} on the test "
                            f"tracks but evaluate() gives {self.value:.6g}; fix the declaration")
        return fn

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        """The metric on each resample ``[n_boot]``."""
        if self._fast is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                return self._fast(weights.astype(float))
        return np.array([self._metric(expand(w)) for w in weights])


def _from_per_track(how: str, values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Weighted mean of per-track values (NaN: the track does not count), or weighted ratio
    of sums of per-track ``[numerator, denominator]``."""
    values = np.asarray(values, dtype=float)
    if how == "ratio":
        return lambda w: (w @ values[0]) / (w @ values[1])
    counts = np.isfinite(values)
    if counts.all():
        return lambda w: (w @ values) / w.sum(axis=1)
    kept = np.where(counts, values, 0.0)
    return lambda w: (w @ kept) / (w @ counts)


def _close(a: float, b: float) -> bool:
    return bool(np.isfinite(a) and np.isfinite(b) and abs(a - b) <= _TOL * max(1.0, abs(b)))


# --- public API ----------------------------------------------------------------------------

@dataclass
class Interval:
    """A score with its bootstrap interval; ``samples`` are the per-resample values."""

    value: float
    low: float
    high: float
    samples: np.ndarray


def resampled_metric(task: Any, seeds: Sequence[Any], labels: Sequence[Any], metric: str,
                     weights: np.ndarray) -> tuple[float, np.ndarray]:
    """``(value, per-resample values)`` of ``metric`` over the per-seed predictions ``seeds``,
    seeds averaged."""
    each = [SeedMetric(task, p, labels, metric) for p in seeds]
    value = float(np.mean([s.value for s in each]))
    return value, np.mean([s.resampled(weights) for s in each], axis=0)


def bootstrap_metric(task: Any, seeds: Sequence[Any], labels: Sequence[Any], uids: Sequence[str],
                     metric: str, *, n_boot: int = N_BOOT, seed: int = SEED,
                     level: float = LEVEL) -> Interval:
    """Percentile interval of ``metric`` over test tracks resampled by song (``uids``);
    ``seeds``: the predictions of each seed."""
    _check_lengths(seeds, labels, uids)
    weights = cluster_weights(uids, n_boot, seed)
    value, samples = resampled_metric(task, seeds, labels, metric, weights)
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


def paired_bootstrap(task: Any, pred_a: Sequence[Any], pred_b: Sequence[Any],
                     labels: Sequence[Any], uids: Sequence[str], metric: str, *,
                     higher_is_better: bool = True, n_boot: int = N_BOOT, seed: int = SEED,
                     level: float = LEVEL) -> Comparison:
    """Paired bootstrap of ``metric(A) − metric(B)``: both scored on the same resamples;
    ``pred_a`` and ``pred_b`` hold the predictions of each seed."""
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


def _check_lengths(seeds: Sequence[Any], labels: Sequence[Any], uids: Sequence[str]) -> None:
    n = len(labels)
    if len(uids) != n or not len(seeds) or any(len(p) != n for p in seeds):
        raise UserError(f"predictions, labels and uids disagree in length ({n} labels, "
                        f"{len(uids)} uids); the predictions file is damaged: re-run the record")


def record_interval(record: Record, layer: str | int | None, metric: str | None = None,
                    *, records_dir: Path | None = None, n_boot: int = N_BOOT, seed: int = SEED,
                    task: Any = None) -> tuple[float, float]:
    """95% interval of a record's test score at ``layer`` (None: the selected layer)."""
    entry = layer_entry(record, layer)
    preds = load_record_predictions(record, records_dir)
    task = task or record.task.build()
    metric = metric or record.selection_metric
    iv = bootstrap_metric(task, preds.seeds(entry.layer), preds.labels, preds.uids, metric,
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

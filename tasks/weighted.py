"""Metrics on weighted bootstrap resamples, in closed form (numpy).

A resample is held as integer weights ``[resamples, tracks]`` (how often each track was drawn);
these functions give, for every resample at once, exactly what ``Task.evaluate`` gives on the
materialised resample — tests check them against scikit-learn. Tasks name them in their metric
declarations (``Metric(..., resample=...)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


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


def auc(wt: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC of one class (ties count half) per resample; ``wt`` is ``[N, B]``."""
    pos, neg = _groups(wt, y, s, descending=False)
    below = np.cumsum(neg, axis=0) - neg
    return (pos * (below + 0.5 * neg)).sum(0) / (pos.sum(0) * neg.sum(0))


def average_precision(wt: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Weighted average precision of one class (scikit-learn's step-wise definition)."""
    pos, neg = _groups(wt, y, s, descending=True)
    tp, fp = np.cumsum(pos, axis=0), np.cumsum(neg, axis=0)
    precision = np.where(pos > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
    return (pos * precision).sum(0) / pos.sum(0)


def r2(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Weighted coefficient of determination of one dimension per resample."""
    total = w.sum(1)
    mean = (w @ y) / total
    ss_tot = w @ (y**2) - total * mean**2
    return 1 - (w @ (y - p) ** 2) / ss_tot


# --- declarations: (task, weights, predictions, labels) → [B] -------------------------------

def _binary(task: Any, labels: Sequence[Any]) -> np.ndarray:
    return np.stack([np.asarray(task.encode(label), dtype=float) for label in labels]) > 0.5


def macro_roc_auc(task: Any, w: np.ndarray, predictions: Any, labels: Sequence[Any]) -> np.ndarray:
    """Macro ROC-AUC over the classes defined in each resample (multilabel tasks)."""
    return _macro(auc, w, _binary(task, labels), np.asarray(predictions, dtype=float))


def macro_average_precision(task: Any, w: np.ndarray, predictions: Any,
                            labels: Sequence[Any]) -> np.ndarray:
    """Macro average precision over the classes defined in each resample (multilabel tasks)."""
    return _macro(average_precision, w, _binary(task, labels), np.asarray(predictions, dtype=float))


def r2_of(dim: int | None) -> Callable[[Any, np.ndarray, Any, Sequence[Any]], np.ndarray]:
    """R² of target dimension ``dim``, or (None) the mean of every dimension's R²; the truth is
    the task's label vector (``task.vector``), in the predictions' units."""

    def weighted(task: Any, w: np.ndarray, predictions: Any, labels: Sequence[Any]) -> np.ndarray:
        y = np.stack([task.vector(label) for label in labels])
        p = np.asarray(predictions, dtype=float)
        if dim is not None:
            return r2(w, y[:, dim], p[:, dim])
        return np.mean([r2(w, y[:, j], p[:, j]) for j in range(y.shape[1])], axis=0)

    return weighted

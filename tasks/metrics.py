"""Batched torch metrics for ``Task.score``: one value per probe head, computed on the device.

Each function mirrors a scikit-learn metric exactly (ties included) so that the selection
score seen during training equals what ``Task.evaluate`` reports. The leading dimensions of
the inputs are batch dimensions (heads, classes); the last one runs over samples.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

import torch

#: Elements per chunk of heads for the sort-based metrics (bounds their memory to ~0.3 GB).
CHUNK = 1 << 22


Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _by_chunks(fn: Metric) -> Metric:
    """Apply ``fn(scores, labels)`` to slices of the leading (head) dimension of ``scores``
    when ``labels`` broadcasts over it, so that large frame-level inputs fit in memory."""

    @wraps(fn)
    def wrapped(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows = max(1, CHUNK // max(1, scores[0].numel())) if scores.dim() > labels.dim() else 0
        if rows == 0 or rows >= scores.shape[0]:
            return fn(scores, labels)
        return torch.cat([fn(part, labels) for part in scores.split(rows)])

    return wrapped


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[H, N, C]`` logits, ``[N]`` class indices → ``[H]`` accuracy of the argmax."""
    return (logits.argmax(-1) == targets).to(torch.float64).mean(-1)


def _full(scores: torch.Tensor) -> torch.Tensor:
    """At least single precision (half-precision scores would create spurious ties)."""
    return scores if scores.dtype in (torch.float32, torch.float64) else scores.float()


def _ascending(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Scores sorted ascending, labels in the same order, and for each sorted position the
    first and one-past-last index of its run of equal scores (ties form one threshold, as in
    sklearn). The runs come from linear scans of the sorted scores, not binary searches."""
    sorted_scores, order = scores.sort(dim=-1)
    sorted_labels = labels.expand_as(scores).gather(-1, order).to(torch.float64)
    n = scores.shape[-1]
    index = torch.arange(n, device=scores.device).expand_as(sorted_scores)
    change = sorted_scores[..., 1:] != sorted_scores[..., :-1]
    starts = torch.ones_like(sorted_scores, dtype=torch.bool)
    starts[..., 1:] = change
    ends = torch.ones_like(starts)
    ends[..., :-1] = change
    first = torch.where(starts, index, 0).cummax(-1).values
    after_last = torch.where(ends, index + 1, n).flip(-1).cummin(-1).values.flip(-1)
    return sorted_labels, first, after_last


@_by_chunks
def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ROC-AUC along the last dimension (Mann-Whitney U with mid-ranks, as sklearn's
    trapezoidal curve). ``labels`` is boolean and broadcasts to ``scores``.

    NaN where the samples hold no positive or no negative.
    """
    sorted_labels, first, after_last = _ascending(_full(scores), labels)
    midrank = (first + after_last + 1).to(torch.float64) / 2  # 1-based average rank
    n_pos = sorted_labels.sum(-1)
    n_neg = sorted_labels.shape[-1] - n_pos
    rank_sum = (midrank * sorted_labels).sum(-1)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))


@_by_chunks
def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Average precision along the last dimension, as ``sklearn.metrics.average_precision_score``:
    the mean over positives of the precision at their score's threshold (ties share it).

    NaN where the samples hold no positive.
    """
    sorted_labels, first, _ = _ascending(_full(scores), labels)
    n = sorted_labels.shape[-1]
    n_pos = sorted_labels.sum(-1, keepdim=True)
    pos_before = torch.cumsum(sorted_labels, -1) - sorted_labels  # positives strictly below
    tp_at_or_above = n_pos - pos_before.gather(-1, first)
    count_at_or_above = (n - first).to(torch.float64)
    precision = tp_at_or_above / count_at_or_above
    ap = (precision * sorted_labels).sum(-1) / n_pos.squeeze(-1)
    return torch.where(n_pos.squeeze(-1) > 0, ap, torch.full_like(ap, float("nan")))


def evaluable_classes(targets: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` binary targets → ``[C]`` mask of classes with a positive and a negative."""
    positives = (targets > 0.5).sum(0)
    return (positives > 0) & (positives < targets.shape[0])


def macro_over(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``[..., C]`` values over the classes in ``mask`` (NaN when none)."""
    if not bool(mask.any()):
        return torch.full(values.shape[:-1], float("nan"), dtype=values.dtype,
                          device=values.device)
    return values[..., mask].mean(-1)


def r2(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[H, N, D]`` predictions, ``[N, D]`` targets → ``[H, D]`` coefficient of determination.

    A constant target dimension scores 1 when predicted exactly and 0 otherwise, as sklearn's
    ``r2_score`` (``force_finite=True``).
    """
    predictions = predictions.to(torch.float64)
    targets = targets.to(torch.float64)
    residual = ((predictions - targets) ** 2).sum(-2)
    total = ((targets - targets.mean(0)) ** 2).sum(0).expand_as(residual)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    value = 1 - residual / safe
    degenerate = torch.where(residual == 0, torch.ones_like(value), torch.zeros_like(value))
    return torch.where(total > 0, value, degenerate)


# --- device forms for metric declarations: (task, outputs [H, N, out], targets) → [H] -------

def head_accuracy(task: object, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Accuracy of the argmax class per head."""
    return accuracy(outputs, targets.long())


def head_macro_roc_auc(task: object, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Macro ROC-AUC over the classes with a positive and a negative track, per head."""
    per_class = roc_auc(outputs.transpose(1, 2), (targets > 0.5).T)
    return macro_over(per_class, evaluable_classes(targets))


def head_mean_r2(task: object, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean R² over target dimensions per head (R² is unchanged by standardising both)."""
    return r2(outputs, targets).mean(-1)

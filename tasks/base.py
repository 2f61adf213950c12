"""The task contract: how labels become targets, how outputs are scored.

A task is a label encoder plus metric declarations. The probe engine only talks to a task
through this class:

- ``fit(train_labels)``: infer what the labels can be (classes) from the training split.
- ``encode(label)`` / ``encode_frames(label, num_frames, frame_rate)``: targets.
- ``loss(logits, targets)``: one loss per head, ``logits`` shaped ``[heads, batch, out]``; the
  base class gives every kind its standard loss (cross-entropy, binary cross-entropy, MSE).
- ``score(outputs, targets)``: the selection metric per head, on the device, higher is better
  (cheap enough to run every epoch for every head); the base class runs the selection
  metric's declared ``device`` form.
- ``predictions(outputs, frame_rate=...)``: what is stored per test track (scores, or beat times).
- ``evaluate(predictions, labels)``: every metric, computed with mir_eval / scikit-learn: the
  reference every other form of a metric must reproduce.
- ``chance(train_labels, test_labels)``: the score of a label-prior baseline, for the leaderboard.

``metrics`` declares each metric (:class:`Metric`): its direction, its display scale and how
the bootstrap resamples it; the report reads these declarations.

Track outputs of clip tasks are the mean of the window logits (the probe engine does it);
tasks with ``group_by_uid`` are further merged per ``ori_uid`` (clips of one song).
"""

from __future__ import annotations

import copy
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("multiclass", "multilabel", "regression", "beat")
VIEWS = ("clip", "frame")
#: How a metric is recomputed on a bootstrap resample (see :class:`Metric`).
RESAMPLING = ("mean", "ratio", "evaluate")

#: ``(task, weights [B, N], predictions, labels) → [B]``: a metric on weighted resamples.
Weighted = Callable[[Any, np.ndarray, Any, Sequence[Any]], np.ndarray]
#: ``(task, outputs [H, N, out], targets [N, ...]) → [H]``: a metric per head, on the device.
Device = Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]


class Metric(str):
    """A metric's name with its declaration. It is a ``str`` (the name), so a task's ``metrics``
    reads as names everywhere; a plain string declares the defaults.

    - ``higher_is_better``: the direction (selection and "A better" follow it).
    - ``scale``: display factor: 100 for 0–1 scores (shown ×100 with one decimal), 1 for
      values shown as they are (errors, physical units).
    - ``resample``: how the bootstrap recomputes it on a resample of test tracks:
      ``"mean"``, a (weighted) mean over tracks of a per-track value (:meth:`Task.per_track`;
      a NaN value means the track does not count); ``"ratio"``, a ratio of sums of per-track
      numerators and denominators; ``"evaluate"``, ``Task.evaluate`` on each resample (always
      right, slowest); or a :data:`Weighted` function, a closed form on resample weights.
    - ``device``: the torch form :meth:`Task.score` runs for early stopping and selection
      when this is the selection metric.
    """

    higher_is_better: bool
    scale: float
    resample: str | Weighted
    device: Device | None

    def __new__(cls, name: str, *, higher_is_better: bool = True, scale: float = 100.0,
                resample: str | Weighted = "evaluate", device: Device | None = None) -> Metric:
        if not callable(resample) and resample not in RESAMPLING:
            raise ValueError(f"metric {name!r}: resample must be one of {RESAMPLING} or a "
                             f"function of resample weights, not {resample!r}")
        if scale not in (1.0, 100.0):
            raise ValueError(f"metric {name!r}: scale must be 100 (a 0–1 score) or 1 (as is)")
        self = super().__new__(cls, name)
        self.higher_is_better, self.scale = bool(higher_is_better), float(scale)
        self.resample, self.device = resample, device
        return self

    @property
    def resampling(self) -> str:
        """The resampling kind as a word: mean, ratio, evaluate or weighted."""
        return "weighted" if callable(self.resample) else str(self.resample)

    def declaration(self) -> dict[str, Any]:
        """What run records keep of the declaration (JSON)."""
        return {"higher_is_better": self.higher_is_better, "scale": self.scale,
                "resample": self.resampling}


def declared(metric: str) -> Metric:
    """``metric`` as a :class:`Metric` (a plain name gets the defaults)."""
    return metric if isinstance(metric, Metric) else Metric(metric)


class Task(ABC):
    name: ClassVar[str]
    kind: ClassVar[str]
    view: ClassVar[str] = "clip"
    #: Metric declarations (:class:`Metric`, or plain names for the defaults); the first is the
    #: selection metric.
    metrics: ClassVar[tuple[str, ...]]
    #: Merge clip predictions per ``ori_uid`` before scoring (clips cut from one song).
    group_by_uid: ClassVar[bool] = False
    #: Attributes ``fit`` sets: a run record keeps them (:meth:`fitted_state`) so that a report
    #: rebuilds the fitted task (:meth:`restore`).
    fitted: ClassVar[tuple[str, ...]] = ("classes",)

    def __new__(cls, *args: Any, **options: Any) -> Task:
        # Every constructor option is captured here, before any plugin code runs, so a run
        # record rebuilds the task with all of them (none depends on describe() listing it).
        if args:
            raise TypeError(f"task {cls.__name__}: give options by name (e.g. classes=[...])")
        self = super().__new__(cls)
        self._options = copy.deepcopy(options)
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The options the task was constructed with (a copy)."""
        return copy.deepcopy(self._options)

    def fitted_state(self) -> dict[str, Any]:
        """What ``fit`` learned (the attributes of :attr:`fitted`), as JSON values."""
        return {name: _plain(getattr(self, name)) for name in self.fitted}

    def restore(self, state: dict[str, Any]) -> None:
        """Set what ``fit`` learned from a :meth:`fitted_state`."""
        for name in self.fitted:
            setattr(self, name, state[name])

    @property
    def scoring_note(self) -> str | None:
        """A note on non-default scoring, shown in table captions (None: nothing to say)."""
        return None

    def __init__(self, classes: Sequence[str] | None = None, window_s: float | None = None,
                 **options: Any) -> None:
        # A plugin takes its own options before calling this; what is left is a typo, which
        # would otherwise change nothing but the record's id.
        if options:
            raise TypeError(f"unknown option(s) {', '.join(sorted(options))}")
        if window_s is not None and not (isinstance(window_s, int | float) and window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds or null (the "
                             f"model's native context), not {window_s!r}")
        self.classes = list(classes) if classes is not None else None
        #: Window length in seconds; None means the model's native context.
        self.window_s = window_s

    @property
    def selection_metric(self) -> str:
        return self.metrics[0]

    def metric(self, name: str) -> Metric:
        """The declaration of metric ``name``."""
        found = next((m for m in self.metrics if m == name), None)
        if found is None:
            raise KeyError(f"task {self.name!r} has no metric {name!r}; it has: "
                           f"{', '.join(self.metrics)}")
        return declared(found)

    @property
    def higher_is_better(self) -> bool:
        """The selection metric's direction."""
        return self.metric(self.selection_metric).higher_is_better

    def fit(self, train_labels: Sequence[Any]) -> None:  # noqa: B027 - optional hook
        """Learn the label space from the training split (classes, when not given)."""

    @property
    @abstractmethod
    def output_dim(self) -> int:
        """Width of a head's output."""

    @abstractmethod
    def encode(self, label: Any) -> np.ndarray:
        """Track target: int64 scalar (multiclass), float32 ``[C]`` (multilabel, regression).

        Raises ``ValueError`` naming the label when it cannot be encoded.
        """

    def encode_frames(self, label: Any, num_frames: int, frame_rate: float) -> np.ndarray:
        """Frame targets ``[num_frames, output_dim]`` for frame-view tasks."""
        raise NotImplementedError(f"task {self.name!r} has no frame view")

    def positive_weight(self, targets: torch.Tensor) -> torch.Tensor | None:
        """Weight of the positives in the binary cross-entropy of multilabel and beat tasks
        (None: unweighted)."""
        return None

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[H, B, out]`` logits and ``[B, ...]`` targets → ``[H]`` mean loss per head:
        cross-entropy (multiclass), binary cross-entropy with logits (multilabel, beat) or
        mean squared error (regression), all heads in one call."""
        if self.kind == "multiclass":
            # cross_entropy takes [B, C, H] with [B, H] targets: one loss per head in one call.
            per_item = F.cross_entropy(logits.permute(1, 2, 0),
                                       targets.long()[:, None].expand(-1, logits.shape[0]),
                                       reduction="none")
            return per_item.mean(0)
        targets = targets.to(logits.dtype)
        if self.kind == "regression":
            per_value = F.mse_loss(logits, targets.expand_as(logits), reduction="none")
        else:
            per_value = F.binary_cross_entropy_with_logits(
                logits, targets.expand_as(logits), pos_weight=self.positive_weight(targets),
                reduction="none")
        return per_value.flatten(1).mean(1)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[H, N, out]`` track outputs and ``[N, ...]`` targets → ``[H]`` selection score:
        the selection metric's declared ``device`` form, higher is better (negated when the
        metric is not). Runs on the tensors' device."""
        metric = self.metric(self.selection_metric)
        if metric.device is None:
            raise NotImplementedError(f"task {self.name!r}: declare device= on metric "
                                      f"{metric!r} or override score()")
        value = metric.device(self, outputs, targets)
        return value if metric.higher_is_better else -value

    def predictions(self, outputs: Any, *, frame_rate: float | None = None) -> Any:
        """What is stored for one head's test tracks; ``outputs`` is ``[N, out]`` (clip view)
        or a list of ``[frames, out]`` arrays (frame view)."""
        return np.asarray(outputs, dtype=np.float32)

    @abstractmethod
    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        """Every metric in ``metrics`` for track ``predictions`` against raw JSONL labels."""

    def per_track(self, predictions: Any, labels: Sequence[Any]) -> dict[str, np.ndarray]:
        """Per-track values of the ``mean`` metrics (``[N]``, NaN: the track does not count)
        and ``[2, N]`` numerators and denominators of the ``ratio`` metrics, for the bootstrap.

        By default each ``mean`` metric is ``evaluate`` on each track alone; a task overrides
        this for speed, or to give the terms of its ``ratio`` metrics."""
        ratios = [m for m in self.metrics if declared(m).resampling == "ratio"]
        if ratios:
            raise NotImplementedError(f"task {self.name!r} declares ratio metrics "
                                      f"({', '.join(ratios)}) but does not override per_track()")
        names = [m for m in self.metrics if declared(m).resampling == "mean"]
        return self.evaluate_each(predictions, labels, names)

    def evaluate_each(self, predictions: Any, labels: Sequence[Any],
                      names: Sequence[str]) -> dict[str, np.ndarray]:
        """Metrics ``names`` of ``evaluate`` on each track alone, ``[N]`` each."""
        values = np.full((len(names), len(labels)), np.nan)
        if not names:
            return {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(len(labels)):
                single = self.evaluate(predictions[i:i + 1] if isinstance(predictions, np.ndarray)
                                       else [predictions[i]], [labels[i]])
                values[:, i] = [single.get(m, math.nan) for m in names]
        return dict(zip(names, values, strict=True))

    @abstractmethod
    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """Scores of a baseline that knows only the training label distribution."""

    def describe(self) -> dict[str, Any]:
        """What the task is, for people (``mirprobe`` listings); run records keep
        :attr:`options` and :meth:`fitted_state` instead."""
        return {"name": self.name, "kind": self.kind, "view": self.view,
                "metrics": list(self.metrics), "declarations": self.declarations(),
                "classes": self.classes, "window_s": self.window_s}

    def declarations(self) -> dict[str, dict[str, Any]]:
        """Metric name → its declaration (what run records keep)."""
        return {str(m): declared(m).declaration() for m in self.metrics}


def _plain(value: Any) -> Any:
    """A fitted attribute as a JSON value (arrays as lists)."""
    return value.tolist() if isinstance(value, np.ndarray) else copy.deepcopy(value)

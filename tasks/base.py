"""The task contract: how labels become targets, how outputs are scored.

A task is declarative data (name, kind, view, metrics) plus a few functions. The
probe engine only talks to a task through this class:

- ``fit(train_labels)``: infer what the labels can be (classes) from the training split.
- ``encode(label)`` / ``encode_frames(label, num_frames, frame_rate)``: targets.
- ``loss(logits, targets)``: one loss per head, ``logits`` shaped ``[heads, batch, out]``.
- ``score(outputs, targets)``: the selection metric per head, on the device, higher is better
  (cheap enough to run every epoch for every head; for beat a documented proxy).
- ``predictions(outputs, frame_rate=...)``: what is stored per test track (scores, or beat times).
- ``evaluate(predictions, labels)``: every metric, computed with mir_eval / scikit-learn.
- ``chance(train_labels, test_labels)``: the score of a label-prior baseline, for the leaderboard.

Track outputs of clip tasks are the mean of the window logits (the probe engine does it);
tasks with ``group_by_uid`` are further merged per ``ori_uid`` (clips of one song).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

KINDS = ("multiclass", "multilabel", "regression", "beat")
VIEWS = ("clip", "frame")


class Task(ABC):
    name: ClassVar[str]
    kind: ClassVar[str]
    view: ClassVar[str] = "clip"
    #: Metric names; the first is the selection metric.
    metrics: ClassVar[tuple[str, ...]]
    higher_is_better: ClassVar[bool] = True
    #: Merge clip predictions per ``ori_uid`` before scoring (clips cut from one song).
    group_by_uid: ClassVar[bool] = False

    def __init__(self, classes: Sequence[str] | None = None, window_s: float | None = None,
                 **options: Any) -> None:
        self.classes = list(classes) if classes is not None else None
        #: Window length in seconds; None means the model's native context.
        self.window_s = window_s
        self.options = options

    @property
    def selection_metric(self) -> str:
        return self.metrics[0]

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

    @abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[H, B, out]`` logits and ``[B, ...]`` targets → ``[H]`` mean loss per head."""

    @abstractmethod
    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[H, N, out]`` track outputs and ``[N, ...]`` targets → ``[H]`` selection score.

        Always higher-is-better (negated when the metric is not). Runs on the tensors' device.
        """

    def predictions(self, outputs: Any, *, frame_rate: float | None = None) -> Any:
        """What is stored for one head's test tracks; ``outputs`` is ``[N, out]`` (clip view)
        or a list of ``[frames, out]`` arrays (frame view)."""
        return np.asarray(outputs, dtype=np.float32)

    @abstractmethod
    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        """Every metric in ``metrics`` for track ``predictions`` against raw JSONL labels."""

    @abstractmethod
    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """Scores of a baseline that knows only the training label distribution."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "view": self.view,
                "metrics": list(self.metrics), "classes": self.classes, "window_s": self.window_s,
                **self.options}

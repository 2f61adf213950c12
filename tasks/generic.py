"""Generic tasks for any dataset declared in YAML: multiclass, multilabel and regression.

The built-in MIR tasks (genre, tagging, emotion, key) specialise these. Classes are inferred
from the training labels (sorted) unless given; regression targets are standardised with the
training mean and deviation so that one learning-rate grid fits every scale, and predictions
are mapped back to label units before they are stored or evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mirprobe.tasks import metrics, weighted
from mirprobe.tasks.base import Metric, Task


def _check_predictions(predictions: Any, labels: Sequence[Any], width: int) -> np.ndarray:
    """Track predictions as ``float64 [N, width]``, checked against the labels."""
    array = np.asarray(predictions, dtype=np.float64)
    if array.ndim != 2 or array.shape != (len(labels), width):
        raise ValueError(f"predictions have shape {array.shape}; expected "
                         f"({len(labels)}, {width}): one row per label")
    return array


class MulticlassTask(Task):
    """One class per track (a string label); scored by accuracy, also macro F1."""

    name: ClassVar[str] = "multiclass"
    kind: ClassVar[str] = "multiclass"
    metrics: ClassVar[tuple[str, ...]] = (
        Metric("accuracy", resample="mean", device=metrics.head_accuracy), Metric("macro_f1"))

    def fit(self, train_labels: Sequence[Any]) -> None:
        if self.classes is None:
            self.classes = sorted({self._label_name(label) for label in train_labels})
        if not self.classes:
            raise ValueError(f"task {self.name!r}: no training labels to infer classes from")

    @staticmethod
    def _label_name(label: Any) -> str:
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise ValueError(f"label {label!r} is not a class name (a string)")
        return str(label)

    def _index(self) -> dict[str, int]:
        if self.classes is None:
            raise RuntimeError(f"task {self.name!r}: call fit() or give classes before encoding")
        return {name: i for i, name in enumerate(self.classes)}

    @property
    def output_dim(self) -> int:
        return len(self._index())

    def encode(self, label: Any) -> np.ndarray:
        name = self._label_name(label)
        index = self._index()
        if name not in index:
            raise ValueError(f"label {label!r} is not one of the task's classes "
                             f"({', '.join(self.classes[:10])}{', …' if len(index) > 10 else ''})")
        return np.int64(index[name])

    def _targets(self, labels: Sequence[Any]) -> np.ndarray:
        index = self._index()  # once per call, not per label (evaluated for every head)
        try:
            return np.array([index[self._label_name(label)] for label in labels], dtype=np.int64)
        except KeyError:  # encode() names the unknown label
            return np.array([self.encode(label) for label in labels], dtype=np.int64)

    def _class_metrics(self, predicted: np.ndarray, labels: Sequence[Any]) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score

        truth = self._targets(labels)
        return {"accuracy": float(accuracy_score(truth, predicted)),
                "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0))}

    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        """Accuracy and macro F1 (over the classes present in the truth or the predictions)
        of the argmax of the track scores."""
        scores = _check_predictions(predictions, labels, self.output_dim)
        return self._class_metrics(scores.argmax(1), labels)

    def per_track(self, predictions: Any, labels: Sequence[Any]) -> dict[str, np.ndarray]:
        """Accuracy per track is whether the argmax is the label (vectorised: ``evaluate`` on
        each track alone takes a scikit-learn call per track); other ``mean`` metrics as the
        base class gives them."""
        correct = _check_predictions(predictions, labels, self.output_dim).argmax(1) == \
            self._targets(labels)
        rest = [m for m in self.metrics if m != "accuracy" and self.metric(m).resampling == "mean"]
        return {"accuracy": correct.astype(float), **self.evaluate_each(predictions, labels, rest)}

    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """Always predict the most frequent training class (first in class order on ties)."""
        counts = np.bincount(self._targets(train_labels), minlength=self.output_dim)
        return self._class_metrics(np.full(len(test_labels), counts.argmax()), test_labels)


class MultilabelTask(Task):
    """Any number of tags per track (a list of strings, possibly empty).

    ROC-AUC and average precision are macro means over the classes that have at least one
    positive and one negative track in the evaluated set: other classes have no AUC, and they
    are left out of both metrics, in ``score`` and ``evaluate`` alike.
    """

    name: ClassVar[str] = "multilabel"
    kind: ClassVar[str] = "multilabel"
    metrics: ClassVar[tuple[str, ...]] = (
        Metric("roc_auc", resample=weighted.macro_roc_auc, device=metrics.head_macro_roc_auc),
        Metric("average_precision", resample=weighted.macro_average_precision))

    @staticmethod
    def _tags(label: Any) -> list[str]:
        if isinstance(label, str):
            return [label]
        if isinstance(label, list | tuple) and all(isinstance(tag, str) for tag in label):
            return list(label)
        raise ValueError(f"label {label!r} is not a list of tag strings")

    def fit(self, train_labels: Sequence[Any]) -> None:
        if self.classes is None:
            self.classes = sorted({tag for label in train_labels for tag in self._tags(label)})
        if not self.classes:
            raise ValueError(f"task {self.name!r}: the training labels hold no tag")

    @property
    def output_dim(self) -> int:
        if self.classes is None:
            raise RuntimeError(f"task {self.name!r}: call fit() or give classes first")
        return len(self.classes)

    def encode(self, label: Any) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.classes or [])}
        target = np.zeros(self.output_dim, dtype=np.float32)
        for tag in self._tags(label):
            if tag not in index:
                raise ValueError(f"tag {tag!r} in label {label!r} is not one of the task's classes")
            target[index[tag]] = 1.0
        return target

    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        from sklearn.metrics import average_precision_score, roc_auc_score

        scores = _check_predictions(predictions, labels, self.output_dim)
        truth = np.array([self.encode(label) for label in labels]).reshape(scores.shape)
        positives = truth.sum(0)
        keep = (positives > 0) & (positives < len(labels))
        if not keep.any():
            return {"roc_auc": math.nan, "average_precision": math.nan}
        return {"roc_auc": float(roc_auc_score(truth[:, keep], scores[:, keep], average="macro")),
                "average_precision": float(average_precision_score(
                    truth[:, keep], scores[:, keep], average="macro"))}

    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """A constant score for every track: AUC 0.5 and AP the mean test prevalence of the
        evaluable classes (sklearn's AP of a constant score is the class prevalence)."""
        constant = np.zeros((len(test_labels), self.output_dim))
        return self.evaluate(constant, test_labels)


class RegressionTask(Task):
    """A vector of numbers per track; scored by R² (mean over dimensions, and per dimension).

    Options: ``dims`` names the target dimensions (default ``"0", "1", …``, the count inferred
    from the training labels); ``standardize`` (default true) trains on z-scored targets.
    """

    name: ClassVar[str] = "regression"
    kind: ClassVar[str] = "regression"
    metrics: ClassVar[tuple[str, ...]] = (
        Metric("r2", resample=weighted.r2_of(None), device=metrics.head_mean_r2),)
    default_dims: ClassVar[tuple[str, ...] | None] = None
    fitted: ClassVar[tuple[str, ...]] = ("classes", "dims", "mean", "std")

    def __init__(self, classes: Sequence[str] | None = None, window_s: float | None = None,
                 dims: Sequence[str] | None = None, standardize: bool = True,
                 **options: Any) -> None:
        super().__init__(classes=classes, window_s=window_s, **options)
        given = dims if dims is not None else self.default_dims
        self.dims = [str(d) for d in given] if given is not None else None
        self.standardize = bool(standardize)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        if self.dims is not None:
            self._set_metrics()

    def _set_metrics(self) -> None:
        self.metrics = (self.metrics[0], *(Metric(f"r2_{d}", resample=weighted.r2_of(j))
                                            for j, d in enumerate(self.dims)))

    def vector(self, label: Any) -> np.ndarray:
        """The label as a ``float64`` vector in label units; ``ValueError`` when it is not one."""
        values = [label] if isinstance(label, int | float) and not isinstance(label, bool) else label
        try:
            vector = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"label {label!r} is not a list of numbers") from None
        if vector.ndim != 1 or not np.isfinite(vector).all():
            raise ValueError(f"label {label!r} is not a list of finite numbers")
        if self.dims is not None and vector.size != len(self.dims):
            raise ValueError(f"label {label!r} has {vector.size} values; expected "
                             f"{len(self.dims)} ({', '.join(self.dims)})")
        return vector

    def fit(self, train_labels: Sequence[Any]) -> None:
        if not train_labels:
            raise ValueError(f"task {self.name!r}: no training labels")
        if self.dims is None:
            self.dims = [str(i) for i in range(self.vector(train_labels[0]).size)]
            self._set_metrics()
        values = np.stack([self.vector(label) for label in train_labels])
        if self.standardize:
            self.mean = values.mean(0)
            std = values.std(0)
            self.std = np.where(std > 0, std, 1.0)

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.mean, self.std = (None if state[k] is None else np.asarray(state[k])
                               for k in ("mean", "std"))
        if self.dims is not None:
            self._set_metrics()

    @property
    def output_dim(self) -> int:
        if self.dims is None:
            raise RuntimeError(f"task {self.name!r}: call fit() or give dims first")
        return len(self.dims)

    def encode(self, label: Any) -> np.ndarray:
        vector = self.vector(label)
        if self.mean is not None:
            vector = (vector - self.mean) / self.std
        return vector.astype(np.float32)

    def predictions(self, outputs: Any, *, frame_rate: float | None = None) -> np.ndarray:
        """Track outputs mapped back to label units."""
        values = np.asarray(outputs, dtype=np.float64)
        if self.mean is not None:
            values = values * self.std + self.mean
        return values.astype(np.float32)

    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        from sklearn.metrics import r2_score

        estimate = _check_predictions(predictions, labels, self.output_dim)
        truth = np.stack([self.vector(label) for label in labels])
        per_dim = r2_score(truth, estimate, multioutput="raw_values")
        return {"r2": float(np.mean(per_dim)),
                **{f"r2_{d}": float(v) for d, v in zip(self.dims, per_dim, strict=True)}}

    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """Predict the training mean for every test track."""
        mean = np.stack([self.vector(label) for label in train_labels]).mean(0)
        return self.evaluate(np.tile(mean, (len(test_labels), 1)), test_labels)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dims": self.dims, "standardize": self.standardize}


__all__ = ["MulticlassTask", "MultilabelTask", "RegressionTask"]

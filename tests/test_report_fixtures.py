"""Hand-built run records and small sklearn-backed tasks for the report tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    r2_score,
    roc_auc_score,
)

from mirprobe.record import DatasetRef, LayerResult, Predictions, Record, TaskRef, select
from mirprobe.results import RecordStore
from mirprobe.tasks import weighted
from mirprobe.tasks.base import Metric, Task
from tests.plugin_registry import install_entry_points


class ToyClassTask(Task):
    name = "toyclass"
    kind = "multiclass"
    metrics = (Metric("accuracy", resample="mean"), "macro_f1")

    @property
    def output_dim(self) -> int:
        return len(self.classes)

    def encode(self, label: Any) -> np.ndarray:
        return np.int64(self.classes.index(label))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, predictions: Any, labels: list[Any]) -> dict[str, float]:
        y = [self.classes.index(lab) for lab in labels]
        p = np.asarray(predictions).argmax(-1)
        return {"accuracy": float(accuracy_score(y, p)),
                "macro_f1": float(f1_score(y, p, average="macro", labels=range(len(self.classes)),
                                           zero_division=0))}

    def chance(self, train_labels: list[Any], test_labels: list[Any]) -> dict[str, float]:
        return {"accuracy": 1 / len(self.classes), "macro_f1": 1 / len(self.classes)}

    def per_track(self, predictions: Any, labels: list[Any]) -> dict[str, np.ndarray]:
        """Accuracy per track, vectorised (the default calls evaluate once per track)."""
        y = np.array([self.classes.index(lab) for lab in labels])
        return {"accuracy": (np.asarray(predictions).argmax(-1) == y).astype(float)}


class ToyTagTask(ToyClassTask):
    name = "toytags"
    kind = "multilabel"
    metrics = (Metric("roc_auc", resample=weighted.macro_roc_auc),
               Metric("ap", resample=weighted.macro_average_precision))

    def encode(self, label: Any) -> np.ndarray:
        return np.array([c in label for c in self.classes], dtype=np.float32)

    def evaluate(self, predictions: Any, labels: list[Any]) -> dict[str, float]:
        y = np.stack([self.encode(lab) for lab in labels])
        p = np.asarray(predictions)
        return {"roc_auc": float(roc_auc_score(y, p, average="macro")),
                "ap": float(average_precision_score(y, p, average="macro"))}

    def chance(self, train_labels: list[Any], test_labels: list[Any]) -> dict[str, float]:
        return {"roc_auc": 0.5, "ap": 0.4}


class ToyRegTask(ToyClassTask):
    name = "toyreg"
    kind = "regression"
    metrics = (Metric("r2", resample=weighted.r2_of(None)),
               Metric("r2_arousal", resample=weighted.r2_of(0)),
               Metric("r2_valence", resample=weighted.r2_of(1)))

    @property
    def output_dim(self) -> int:
        return 2

    def vector(self, label: Any) -> np.ndarray:
        return np.asarray(label, dtype=float)

    def encode(self, label: Any) -> np.ndarray:
        return np.asarray(label, dtype=np.float32)

    def evaluate(self, predictions: Any, labels: list[Any]) -> dict[str, float]:
        y = np.asarray(labels, dtype=float)
        p = np.asarray(predictions, dtype=float)
        per = r2_score(y, p, multioutput="raw_values")
        return {"r2": float(per.mean()), "r2_arousal": float(per[0]), "r2_valence": float(per[1])}

    def chance(self, train_labels: list[Any], test_labels: list[Any]) -> dict[str, float]:
        return {"r2": 0.0, "r2_arousal": 0.0, "r2_valence": 0.0}


class ShiftedTask(ToyClassTask):
    """Scores the class ``shift`` places after the argmax: an option that changes every metric,
    and that this plugin's ``describe()`` does not list."""

    name = "shifted"

    def __init__(self, shift: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self.shift = int(shift)

    def _shifted(self, predictions: Any) -> np.ndarray:
        return np.roll(np.asarray(predictions), self.shift, axis=-1)

    def evaluate(self, predictions: Any, labels: list[Any]) -> dict[str, float]:
        return super().evaluate(self._shifted(predictions), labels)

    def per_track(self, predictions: Any, labels: list[Any]) -> dict[str, np.ndarray]:
        return super().per_track(self._shifted(predictions), labels)


class ShiftedListedTask(ShiftedTask):
    """:class:`ShiftedTask` whose ``describe()`` lists the option."""

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "shift": self.shift}


TOYS = {"toyclass": ToyClassTask, "toytags": ToyTagTask, "toyreg": ToyRegTask,
        "shifted": ShiftedTask, "shifted_listed": ShiftedListedTask}


def register_toys(monkeypatch: pytest.MonkeyPatch, folder: Path) -> dict[str, type]:
    """Register the toy tasks as task plugins of a test distribution (entry points)."""
    install_entry_points(monkeypatch, folder, {"mirprobe.tasks": {
        name: f"test_report_fixtures:{cls.__name__}" for name, cls in TOYS.items()}})
    return TOYS


@pytest.fixture
def toy_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, type]:
    """Register the toy tasks in the task registry for the test."""
    return register_toys(monkeypatch, tmp_path / "plugins")


def make_record(store: RecordStore, model: str, task: Task, layer_preds: dict[int, Any],
                labels: list[Any], uids: list[str], *, val: dict[int, float] | None = None,
                rid: str | None = None, plugin: str | None = None) -> Record:
    """A run record for ``task`` (its plugin: ``plugin``, default the task's name) whose layers
    hold ``layer_preds`` (``[seeds, units, out]`` arrays have a seed axis); the validation scores
    ``val`` (default: the test scores) decide the selected layer."""
    rid = rid or f"{model}-{task.name}".replace("/", "_")
    per_layer = []
    for k, pred in layer_preds.items():
        test = _seed_mean(task, pred, labels) if np.ndim(pred) == 3 else task.evaluate(pred, labels)
        v = {m: (val[k] if val else test[task.metrics[0]]) for m in task.metrics}
        per_layer.append(LayerResult(layer=f"layer{k}", index=k, chosen={"lr": 1e-3}, val=v,
                                     test=test))
    record = Record(
        id=rid, model=model, task=TaskRef.of(task.name, plugin or task.name, task),
        dataset=DatasetRef(task=task.name, folder="toy", jsonl=task.name, digest="0" * 16),
        feature_entry="toy", config={"model": {"name": model}}, versions={},
        selection=select(per_layer, task.metrics[0], True), per_layer=per_layer,
        chance=task.chance([], labels), counts={"test": len(labels)}, test_units=len(labels),
        excluded={"train": [], "val": [], "test": []}, predictions=f"{rid}.npz", num_heads=1,
        timings={"probe_s": 1.0})
    seeds = {f"layer{k}": list(p) if np.ndim(p) == 3 else [p] for k, p in layer_preds.items()}
    Predictions(uids, labels, seeds).write(store.root / f"{rid}.npz")
    store.put(record)
    return store.get(rid)


def _seed_mean(task: Task, pred: np.ndarray, labels: list[Any]) -> dict[str, float]:
    per = [task.evaluate(p, labels) for p in pred]
    return {m: float(np.mean([d[m] for d in per])) for m in per[0]}


def class_data(rng: np.random.Generator, n: int, classes: int, skill: float,
               seeds: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Logits whose argmax is right with probability about ``skill``, and labels."""
    names = [f"c{i}" for i in range(classes)]
    y = rng.integers(0, classes, n)
    shape = (seeds, n, classes) if seeds else (n, classes)
    logits = rng.normal(size=shape)
    right = rng.random(shape[:-1]) < skill
    logits[..., np.arange(n), y] += np.where(right, 5.0, 0.0)
    return logits.astype(np.float32), [names[i] for i in y]


def write_suite(root: Path) -> tuple[RecordStore, list[Record]]:
    """Two models × two tasks of records in ``root`` (classification and tagging)."""
    store = RecordStore(root)
    rng = np.random.default_rng(0)
    cls = ToyClassTask(classes=[f"c{i}" for i in range(4)])
    tags = ToyTagTask(classes=["rock", "pop", "jazz"])
    n = 60
    uids = [f"song{i // 2}" for i in range(n)]
    records = []
    y = rng.random((n, 3)) < 0.4
    y[0], y[1] = True, False
    tag_labels = [[c for c, on in zip(tags.classes, row, strict=True) if on] for row in y]
    for model, skill in (("good", 0.8), ("weak", 0.4)):
        preds = {}
        labels = None
        for k in range(3):
            logits, labels_k = class_data(np.random.default_rng(1), n, 4, skill * (k + 1) / 3)
            labels = labels_k
            preds[k] = logits
        records.append(make_record(store, model, cls, preds, labels, uids))
        tag_preds = {k: (y * skill * k + rng.normal(size=y.shape)).astype(np.float32)
                     for k in range(3)}
        records.append(make_record(store, model, tags, tag_preds, tag_labels, uids))
    return store, records

"""The run record: what one probe job (one model × one task) found, typed end to end.

This module is the one place that knows the record's fields, its JSON form and the form of the
test predictions saved beside it; the probe engine builds :class:`LayerResult` objects, the
pipeline builds :class:`Record` objects, :class:`mirprobe.results.RecordStore` keeps them as
``<id>.json`` files, and the report reads their attributes.

Schema 3 (the ``schema`` key of the JSON object)::

    schema            3
    id                content address of the job (see mirprobe.jobs.job_identity)
    created           local time the record was written, ISO 8601
    model             the run's model name
    task              {name, plugin, options, state, declarations, note}: the task's name, its
                      plugin, the options it was constructed with, the state fit() gave it
                      (classes, ...), its metric declarations and its scoring note
    dataset           {task, folder, jsonl, digest}: the task's name, the dataset folder's name
                      (never a local path), the JSONL prefix and the digest of its rows
    feature_entry     id of the feature cache entry probed
    config            provenance: the job's identity, device, window_s, precisions
    versions          python, torch, numpy, sklearn, mir_eval, mirprobe
    selection         {layer, metric, higher_is_better}: the layer chosen on validation only
    per_layer         [{layer, index, chosen: {head, lr, ...}, val: {metric: v}, test: {metric: v},
                        seeds: [{seed, val, test, epochs}]}]; the layer named "weighted" is the
                      learned sum of layers (index: after the last layer)
    chance            {metric: v}
    counts            {train, val, test}: tracks used
    test_units        scored test units (tracks, or songs when clips of a song are merged)
    excluded          {split: [{source, line, reason, path}]}   items that could not be used
    predictions       file name (next to the record) of the per-track test predictions
    num_heads         heads trained in the job's grid
    timings           {probe_s, ...}

Records of another schema (schema 2 kept the task as its ``describe()``, schema 1 named the
dataset by its local path), or with no ``schema`` key, are not read: :meth:`Record.from_dict`
raises :class:`RecordFormatError`, the store treats such a file as absent (``mirprobe run``
writes the record again) and reports skip it with a one-line note.

Predictions (``<id>.npz``, loaded with ``allow_pickle=False``) hold ``uids`` and ``labels``
(JSON strings, one per scored test unit) and per layer name either ``array:<layer>`` (an array
``[seeds, units, out]``) or ``json:<layer>`` (JSON ``[seeds][units]``, e.g. beat times): the
seed axis is always there, one entry per seed of the chosen configuration.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mirprobe.data import Problem
from mirprobe.errors import UserError
from mirprobe.workfolder import atomic_file, jsonable

if TYPE_CHECKING:  # annotations only: the record never imports a task plugin eagerly
    from mirprobe.tasks.base import Task

SCHEMA = 3
#: The layer name of the learned softmax-weighted sum of layers (the mean of layers for ridge
#: heads); the one spelling of it outside the probe grid.
WEIGHTED = "weighted"
Metrics = dict[str, float]


class RecordFormatError(UserError):
    """A run record of another schema, or one that is not a run record at all."""


@dataclass(frozen=True, kw_only=True)
class DatasetRef:
    """A dataset named without local paths: by the task that read it, its folder's name, the
    JSONL prefix and a digest of its rows."""

    task: str
    folder: str
    jsonl: str
    digest: str

    def __str__(self) -> str:
        return f"{self.folder}/{self.jsonl} ({self.digest})"


@dataclass(frozen=True, kw_only=True)
class Declaration:
    """A metric's declaration as a record keeps it (``Metric.declaration`` in
    :mod:`mirprobe.tasks.base`): its direction, display scale and bootstrap resampling."""

    higher_is_better: bool
    scale: float
    resample: str


class TaskRef(str):
    """The task of a record: its name (this string, so ``record.task`` reads as the name
    everywhere), and what rebuilds it exactly (:meth:`build`) — the plugin, the options it was
    constructed with (captured by :class:`mirprobe.tasks.base.Task` itself, so none can be left
    out) and the state ``fit`` gave it."""

    plugin: str
    options: dict[str, Any]
    state: dict[str, Any]
    declarations: dict[str, Declaration]
    note: str | None

    def __new__(cls, name: str, *, plugin: str, options: dict[str, Any], state: dict[str, Any],
                declarations: dict[str, Declaration], note: str | None = None) -> TaskRef:
        self = super().__new__(cls, name)
        self.plugin, self.options, self.state = plugin, options, state
        self.declarations, self.note = declarations, note
        return self

    @classmethod
    def of(cls, name: str, plugin: str, task: Task) -> TaskRef:
        """The reference of a constructed (and fitted) task."""
        declarations = {m: Declaration(**d) for m, d in task.declarations().items()}
        return cls(name, plugin=plugin, options=task.options, state=task.fitted_state(),
                   declarations=declarations, note=task.scoring_note)

    def build(self) -> Task:
        """The task plugin, constructed and fitted as it was for the run."""
        from mirprobe.plugins import get_task

        task = get_task(self.plugin, **self.options)
        task.restore(self.state)
        return task

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TaskRef):
            return str(self) == str(other) and self._body() == other._body()
        return str.__eq__(self, other)

    __hash__ = str.__hash__

    def __reduce__(self) -> tuple:  # copy/deepcopy keep the reference
        return (_task_ref, (str(self), self._body()))

    def _body(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "options": self.options, "state": self.state,
                "declarations": self.declarations, "note": self.note}


def _task_ref(name: str, body: dict[str, Any]) -> TaskRef:
    return TaskRef(name, **body)


@dataclass(frozen=True, kw_only=True)
class SeedResult:
    """One seed's head of a layer's chosen configuration."""

    seed: int
    val: Metrics
    test: Metrics
    epochs: int


@dataclass(frozen=True, kw_only=True)
class LayerResult:
    """A layer's chosen configuration (on validation) with its scores, means over seeds."""

    layer: str  # the layer's name; WEIGHTED for the learned sum of layers
    index: int  # position among the entry's layers; the weighted sum comes after the last
    chosen: dict[str, Any]  # the head configuration chosen on validation (head, lr, ...)
    val: Metrics
    test: Metrics
    seeds: list[SeedResult] = field(default_factory=list)

    @property
    def weighted(self) -> bool:
        return self.layer == WEIGHTED


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The layer chosen on validation only, by ``metric`` in its direction."""

    layer: str
    metric: str
    higher_is_better: bool


@dataclass
class Predictions:
    """Per-unit test predictions of each layer's chosen configuration, one entry per seed."""

    uids: list[str]
    labels: list[Any]
    layers: dict[str, list[Any]]  # layer name → per seed: [units, out] array or per-unit list

    def seeds(self, layer: str) -> list[Any]:
        """The per-seed predictions of ``layer``; a UserError when none were saved."""
        if layer not in self.layers:
            raise UserError(f"no test predictions saved for layer {layer!r}; re-run the record")
        return self.layers[layer]

    def write(self, path: Path) -> None:
        """Save atomically (see the module docstring for the format)."""
        arrays: dict[str, np.ndarray] = {
            "uids": np.asarray([str(u) for u in self.uids], dtype=str),
            "labels": np.asarray([json.dumps(lab, default=jsonable) for lab in self.labels],
                                 dtype=str)}
        for name, seeds in self.layers.items():
            if all(isinstance(p, np.ndarray) for p in seeds):
                arrays[f"array:{name}"] = np.stack(seeds).astype(np.float32)
            else:
                arrays[f"json:{name}"] = np.asarray(json.dumps(seeds, default=jsonable))
        with atomic_file(path) as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def read(cls, path: Path) -> Predictions:
        with np.load(path, allow_pickle=False) as z:
            labels = [json.loads(s) for s in z["labels"]]
            uids = [str(u) for u in z["uids"]]
            layers: dict[str, list[Any]] = {}
            for key in z.files:
                kind, _, name = key.partition(":")
                if kind == "array":
                    layers[name] = list(z[key])
                elif kind == "json":
                    layers[name] = json.loads(str(z[key]))
        return cls(uids, labels, layers)


@dataclass(kw_only=True)
class Record:
    """One probe job's results and provenance (schema :data:`SCHEMA`)."""

    id: str
    model: str
    task: TaskRef
    dataset: DatasetRef
    feature_entry: str
    config: dict[str, Any]
    versions: dict[str, str]
    selection: Selection
    per_layer: list[LayerResult]
    chance: Metrics
    counts: dict[str, int]
    test_units: int
    excluded: dict[str, list[Problem]]
    predictions: str
    num_heads: int
    timings: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))

    @property
    def best(self) -> LayerResult:
        """The layer selected on validation."""
        return next(r for r in self.per_layer if r.layer == self.selection.layer)

    @property
    def selection_metric(self) -> str:
        return self.selection.metric

    @property
    def higher_is_better(self) -> bool:
        """The selection metric's direction."""
        return self.selection.higher_is_better

    @property
    def layers(self) -> list[str]:
        """Layer names probed, the weighted sum last."""
        return [r.layer for r in self.per_layer]

    # ------------------------------------------------------------------ JSON form
    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``schema`` first); values are plain JSON types."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        task = {"name": str(self.task), **self.task._body(),
                "declarations": {m: dataclasses.asdict(d)
                                 for m, d in self.task.declarations.items()}}
        body |= {"task": task,
                 "dataset": dataclasses.asdict(self.dataset),
                 "selection": dataclasses.asdict(self.selection),
                 "per_layer": [dataclasses.asdict(r) for r in self.per_layer],
                 "excluded": {s: [_problem_json(p) for p in ps] for s, ps in self.excluded.items()}}
        return json.dumps({"schema": SCHEMA, **body}, indent=2, default=jsonable) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "run record") -> Record:
        """The record of a JSON object; :class:`RecordFormatError` when it is of another schema
        or lacks a field."""
        if not isinstance(data, dict):
            raise RecordFormatError(f"{source}: not a run record (a JSON object is expected)")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise RecordFormatError(
                f"{source}: run record of schema {schema!r}, this mirprobe reads schema {SCHEMA}; "
                "run `mirprobe run` with its config again to write it anew")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n, f in _required(cls).items() if n not in data)
        unknown = sorted(set(data) - names - {"schema"})
        if missing or unknown:
            raise RecordFormatError(f"{source}: damaged run record (missing {missing or 'nothing'}, "
                                    f"unknown {unknown or 'nothing'}); delete it and run again")
        fields = {k: v for k, v in data.items() if k in names}
        for name, parse in _PARSERS.items():
            try:
                fields[name] = parse(fields[name])
            except (TypeError, KeyError, AttributeError, ValueError) as e:
                raise RecordFormatError(f"{source}: damaged {name!r} field ({e}); delete it and "
                                        "run again") from e
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str, source: str = "run record") -> Record:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecordFormatError(f"{source}: not valid JSON ({e}); delete it and run again") from e
        return cls.from_dict(data, source)

    @classmethod
    def read(cls, path: Path) -> Record:
        return cls.from_json(Path(path).read_text(), str(path))


def _layer(d: dict[str, Any]) -> LayerResult:
    return LayerResult(**{**d, "seeds": [SeedResult(**s) for s in d["seeds"]]})


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"source": p.source, "line": p.line, "reason": p.reason, "path": p.audio_path}


def _problem(d: dict[str, Any]) -> Problem:
    return Problem(d["source"], d["line"], d["reason"], d["path"])


def _task(d: dict[str, Any]) -> TaskRef:
    body = dict(d)
    body["declarations"] = {m: Declaration(**v) for m, v in body["declarations"].items()}
    return TaskRef(body.pop("name"), **body)


#: JSON value → typed value of each structured field (the JSON deserialiser).
_PARSERS = {
    "task": _task,
    "dataset": lambda d: DatasetRef(**d),
    "selection": lambda d: Selection(**d),
    "per_layer": lambda ls: [_layer(d) for d in ls],
    "excluded": lambda ex: {s: [_problem(d) for d in ps] for s, ps in ex.items()},
}


def _required(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def select(per_layer: Sequence[LayerResult], metric: str, higher_is_better: bool) -> Selection:
    """The layer with the best validation ``metric`` (NaN never wins; ties go to the first)."""
    sign = 1.0 if higher_is_better else -1.0
    pos = max(range(len(per_layer)), key=lambda n: (np.nan_to_num(
        sign * per_layer[n].val[metric], nan=-np.inf), -n))
    return Selection(layer=per_layer[pos].layer, metric=metric, higher_is_better=higher_is_better)

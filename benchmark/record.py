"""The run record: what one probe job (one model × one task) found, as a typed dataclass.

This module is the one place that knows the record's fields and its JSON form; the pipeline
builds :class:`Record` objects, :class:`mirprobe.results.RecordStore` keeps them as
``<id>.json`` files, and the report reads their attributes.

Schema 2 (the ``schema`` key of the JSON object)::

    schema            2
    id                content address of the job (see mirprobe.jobs.job_identity)
    created           local time the record was written, ISO 8601
    model, task       the run's model and task names
    dataset           {task, folder, jsonl, digest}: the task's name, the dataset folder's name
                      (never a local path), the JSONL prefix and the digest of its rows
    feature_entry     id of the feature cache entry probed
    config            the job's resolved config (model, task, probe, seed, device, window_s)
    versions          python, torch, numpy, sklearn, mir_eval, mirprobe
    task_info         Task.describe(): name, kind, view, metrics, classes, options
    selection_metric, higher_is_better
    layers            layer names; the last may be "weighted" (learned sum)
    per_layer         [{layer, index, chosen: {head, lr, ...}, val: {metric: v}, test: {metric: v},
                        seeds: [{seed, val, test}]}]
    best              {layer, index, chosen, val, test}   (chosen on validation only)
    chance            {metric: v}
    counts            {train, val, test}: tracks used
    test_units        scored test units (tracks, or songs when clips of a song are merged)
    excluded          {split: [{source, line, reason, path}]}   items that could not be used
    predictions       file name (next to the record) of the per-track test predictions
    num_heads         heads trained in the job's grid
    timings           {probe_s, ...}

Records of another schema (schema 1 named the dataset by its local path), or with no
``schema`` key, are not read: :meth:`Record.from_dict` raises :class:`RecordFormatError`, the store
treats such a file as absent (``mirprobe run`` writes the record again) and reports skip it
with a one-line note.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.errors import UserError

SCHEMA = 2


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


@dataclass(kw_only=True)
class Record:
    """One probe job's results and provenance (schema :data:`SCHEMA`)."""

    id: str
    model: str
    task: str
    dataset: DatasetRef
    feature_entry: str
    config: dict[str, Any]
    versions: dict[str, str]
    task_info: dict[str, Any]
    selection_metric: str
    higher_is_better: bool
    layers: list[str]
    per_layer: list[dict[str, Any]]
    best: dict[str, Any]
    chance: dict[str, float]
    counts: dict[str, int]
    test_units: int
    excluded: dict[str, list[dict[str, Any]]]
    predictions: str
    num_heads: int
    timings: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))

    # ------------------------------------------------------------------ JSON form
    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``schema`` first); values are plain JSON types."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        body["dataset"] = dataclasses.asdict(self.dataset)
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
        try:
            fields["dataset"] = DatasetRef(**fields["dataset"])
        except TypeError as e:
            raise RecordFormatError(f"{source}: damaged 'dataset' field ({e})") from e
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


def _required(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def jsonable(x: Any) -> Any:
    """``json.dumps`` hook: numpy scalars and arrays, paths."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")

"""Probe jobs: one model × one task, identified by content, and the run record it writes.

A job's identity is everything that determines its result; its digest is the record id, so
a re-run finds the record and does nothing, and a changed config writes a new record.
:func:`job_identity` is the one place that decides what belongs to it: the features enter through
their entry's id (:func:`mirprobe.features.entry_identity`: model weights and options, items with
size and modification time, view, window, compute precision), so whatever changes the features
changes the record — a record is never reused for features it was not trained on. Records
written under an older rule simply have ids no run asks for any more (nothing is deleted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mirprobe.data import SPLITS, Dataset
from mirprobe.features import FeatureEntry, entry_id
from mirprobe.probes import ENGINE_VERSION
from mirprobe.probing import ProbeOutcome
from mirprobe.record import DatasetRef, Record
from mirprobe.results import RecordStore, probe_precision, record_id, save_predictions, versions
from mirprobe.specs import TaskSpec


@dataclass
class Job:
    """One probe job: a model × a task, with its record id and (once extracted) its features."""

    model: str
    spec: TaskSpec
    rid: str
    identity: dict[str, Any]
    entry: FeatureEntry | None = None


def job_identity(model: str, entry: dict[str, Any], spec: TaskSpec, dataset: Dataset,
                 cfg: DictConfig) -> dict[str, Any]:
    """What determines a job's result: its feature entry (``entry`` is the entry's identity), the
    task and its options, the dataset's rows, the probe protocol, the probe engine's version and
    the seed."""
    return {"model": {"name": model}, "features": entry_id(entry), "engine": ENGINE_VERSION,
            "task": {"name": spec.name, "plugin": spec.plugin, "options": spec.options},
            "dataset": dataset.digest(),
            "probe": OmegaConf.to_container(cfg.probe, resolve=True),
            "seed": int(cfg.seed)}


def make_job(model: str, entry: dict[str, Any], spec: TaskSpec, dataset: Dataset,
             cfg: DictConfig) -> Job:
    identity = job_identity(model, entry, spec, dataset, cfg)
    return Job(model, spec, record_id(identity), identity)


def write_record(store: RecordStore, job: Job, dataset: Dataset, outcome: ProbeOutcome,
                 device: Any, extract_precision: str) -> Record:
    """Save the job's test predictions and its run record (append-only)."""
    entry, task, result, splits = job.entry, outcome.task, outcome.result, outcome.splits
    assert entry is not None
    if entry.id != job.identity["features"]:  # one identity rule: this would be a bug
        raise RuntimeError(f"feature entry {entry.id} is not the job's {job.identity['features']}")
    pred_name = f"{job.rid}.npz"
    save_predictions(store.root / pred_name, result.predictions, result.test_labels,
                     result.test_uids)
    record = Record(
        id=job.rid, model=job.model, task=job.spec.name,
        dataset=DatasetRef(task=job.spec.name, folder=dataset.folder.name, jsonl=dataset.name,
                           digest=job.identity["dataset"]),
        feature_entry=entry.id,
        config={**job.identity, "device": str(device), "window_s": entry.meta["window_s"],
                "extract_precision": extract_precision, "probe_precision": probe_precision(device)},
        versions=versions(), task_info=task.describe(),
        selection_metric=task.selection_metric, higher_is_better=task.higher_is_better,
        layers=result.layers, per_layer=result.per_layer, best=result.best,
        chance=task.chance(splits["train"].labels, splits["test"].labels),
        counts={s: len(splits[s].labels) for s in SPLITS}, test_units=len(result.test_labels),
        excluded=outcome.excluded, predictions=pred_name, num_heads=result.num_heads,
        timings={"probe_s": round(outcome.seconds, 3), **result.timings})
    store.put(record)
    return record

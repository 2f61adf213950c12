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

from omegaconf import DictConfig

from mirprobe.config import Settings
from mirprobe.data import SPLITS, Dataset
from mirprobe.features import FeatureEntry, entry_id
from mirprobe.probes import ENGINE_VERSION, ProbeConfig, probe_identity
from mirprobe.probes.fewshot import variant_label
from mirprobe.probing import ProbeOutcome
from mirprobe.record import DatasetRef, Predictions, Record, TaskRef
from mirprobe.results import RecordStore, record_id, versions
from mirprobe.specs import TaskSpec


@dataclass
class Job:
    """One probe job: a model × a task, with its record id, the identity of its feature entry
    and (once extracted) the entry itself."""

    model: str
    spec: TaskSpec
    rid: str
    identity: dict[str, Any]
    features: dict[str, Any]  # the feature entry's identity (mirprobe.features.entry_identity)
    entry: FeatureEntry | None = None
    probe: ProbeConfig | None = None  # the job's probe protocol (None: the run's)
    suffix: str = ""  # after the task's name in its record (a deformation: "@noise(...)")


def job_identity(model: str, entry: dict[str, Any], spec: TaskSpec, dataset: Dataset,
                 cfg: DictConfig, probe: ProbeConfig) -> dict[str, Any]:
    """What determines a job's result: its feature entry (``entry`` is the entry's identity), the
    task and its options, the dataset's rows, the probe protocol, the probe engine's version and
    the seed."""
    return {"model": {"name": model}, "features": entry_id(entry), "engine": ENGINE_VERSION,
            "task": {"name": spec.name, "plugin": spec.plugin, "options": spec.options},
            "dataset": dataset.digest(), "probe": probe_identity(probe),
            "seed": int(cfg.seed)}


def make_job(model: str, entry: dict[str, Any], spec: TaskSpec, dataset: Dataset,
             cfg: DictConfig, probe: ProbeConfig) -> Job:
    identity = job_identity(model, entry, spec, dataset, cfg, probe)
    return Job(model, spec, record_id(identity), identity, entry, probe=probe)


def write_record(store: RecordStore, job: Job, dataset: Dataset, outcome: ProbeOutcome,
                 settings: Settings) -> Record:
    """Save the job's test predictions and its run record (append-only)."""
    entry, task, result, splits = job.entry, outcome.task, outcome.result, outcome.splits
    assert entry is not None
    pred_name = f"{job.rid}.npz"
    Predictions(result.test_uids, result.test_labels, result.predictions).write(
        store.root / pred_name)
    record = Record(
        id=job.rid, model=job.model, task=TaskRef.of(job.spec.name + variant_label(job.probe) + job.suffix,
                                         job.spec.plugin, task),
        dataset=DatasetRef(task=job.spec.name, folder=dataset.folder.name, jsonl=dataset.name,
                           digest=dataset.digest()),
        feature_entry=entry.id,
        config={**job.identity, "device": str(settings.device), "window_s": entry.meta["window_s"],
                "extract_precision": settings.extract_precision,
                "probe_precision": settings.probe_precision},
        versions=versions(), selection=result.selection, per_layer=result.per_layer,
        chance=task.chance(splits["train"].labels, splits["test"].labels),
        counts={s: len(splits[s].labels) for s in SPLITS}, test_units=len(result.test_labels),
        excluded=outcome.excluded, predictions=pred_name, num_heads=result.num_heads,
        timings={"probe_s": round(outcome.seconds, 3), **result.timings})
    store.put(record)
    return record

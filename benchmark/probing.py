"""Probing one job: the usable tracks of each split, the task fitted on them, the probe grid.

Items that cannot be used (unreadable audio, a label the task cannot encode) go to the
outcome's ``excluded`` lists with their reason, never silently out of a metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mirprobe.data import SPLITS, Dataset, Item, Problem
from mirprobe.errors import UserError
from mirprobe.features import FeatureEntry
from mirprobe.probes import ProbeConfig, ProbeResult, SplitData, run_probe
from mirprobe.specs import TaskSpec
from mirprobe.tasks.base import Task

Excluded = dict[str, list[dict[str, Any]]]


@dataclass
class ProbeOutcome:
    """A probed job: the fitted task, the splits used, what was excluded, the probe's result."""

    task: Task
    splits: dict[str, SplitData]
    excluded: Excluded
    result: ProbeResult
    seconds: float


def probe_job(spec: TaskSpec, entry: FeatureEntry, dataset: Dataset, probe: dict[str, Any], *,
              device: torch.device, seed: int, progress: bool) -> ProbeOutcome:
    """Train the probe grid (``probe``: the resolved ``probe`` config) of one job."""
    task = spec.make()
    splits, excluded = usable_splits(spec, task, entry, dataset)
    started = time.perf_counter()
    result = run_probe(task, entry, splits, ProbeConfig(**probe), device=device, seed=seed,
                       progress=progress)
    return ProbeOutcome(task, splits, excluded, result, time.perf_counter() - started)


def encodable(task: Task, label: Any) -> None:
    """Raise ``ValueError`` (naming the label) when ``task`` cannot turn ``label`` into a target."""
    if task.view == "clip":
        task.encode(label)
    else:
        task.encode_frames(label, 1, 1.0)


def fit_task(spec: TaskSpec, task: Task, train: list[Item], excluded: list[dict[str, Any]]) -> list[Item]:
    """Fit the label space on the training labels; a label that cannot be fitted alone is
    excluded (named by file and line) and the task is fitted on the rest."""
    try:
        task.fit([it.label for it in train])
        return train
    except ValueError:
        pass
    keep = []
    for it in train:
        try:
            spec.make().fit([it.label])
            keep.append(it)
        except ValueError as e:
            excluded.append(Problem(str(it.source), it.line, f"{e}; item skipped", it.key).to_dict())
    task.fit([it.label for it in keep])
    return keep


def usable_splits(spec: TaskSpec, task: Task, entry: FeatureEntry,
                  dataset: Dataset) -> tuple[dict[str, SplitData], Excluded]:
    """Usable tracks per split; everything else goes to ``excluded`` with its reason."""
    index = entry.index()
    failed = {f["path"]: f["reason"] for f in entry.failed}
    excluded: Excluded = {s: [] for s in SPLITS}
    for p in dataset.problems:
        split = next((s for s in SPLITS if p.source.endswith(f".{s}.jsonl")), "train")
        excluded[split].append(p.to_dict())
    usable = {s: [it for it in dataset.splits[s] if it.key not in failed] for s in SPLITS}
    for s in SPLITS:
        for it in dataset.splits[s]:
            if it.key in failed:
                reason = it.missing(dataset.audio_root) or failed[it.key]
                excluded[s].append(Problem(str(it.source), it.line, reason, it.key).to_dict())
    usable["train"] = fit_task(spec, task, usable["train"], excluded["train"])
    out = {}
    for s in SPLITS:
        keep = []
        for it in usable[s]:
            try:
                encodable(task, it.label)
                keep.append(it)
            except ValueError as e:
                excluded[s].append(Problem(str(it.source), it.line, f"{e}; item skipped", it.key).to_dict())
        if not keep:
            raise UserError(f"{dataset.folder}/{dataset.name}.{s}.jsonl: no usable items "
                            f"({len(excluded[s])} excluded, first: {excluded[s][:1]})")
        out[s] = SplitData(np.asarray([index[it.key] for it in keep], dtype=np.int64),
                           [it.label for it in keep], [it.uid for it in keep])
    return out, excluded

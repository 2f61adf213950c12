"""Probing one job: the usable tracks of each split, the task fitted on them, the probe grid.

Items that cannot be used (unreadable audio, a label the task cannot encode) go to the
outcome's ``excluded`` lists with their reason, never silently out of a metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from mirprobe.admission import admit
from mirprobe.data import SPLITS, Dataset, Item, Problem
from mirprobe.errors import UserError
from mirprobe.features import FeatureEntry
from mirprobe.probes import ProbeConfig, ProbeResult, SplitData, run_probe
from mirprobe.probes.fewshot import check_shots
from mirprobe.specs import TaskSpec
from mirprobe.tasks.base import Task

Excluded = dict[str, list[Problem]]


@dataclass
class ProbeOutcome:
    """A probed job: the fitted task, the splits used, what was excluded, the probe's result."""

    task: Task
    splits: dict[str, SplitData]
    excluded: Excluded
    result: ProbeResult
    seconds: float


def check_draws(spec: TaskSpec, dataset: Dataset, probe: ProbeConfig) -> None:
    """Few-shot (``probe.shots``): a one-line error, before any features are extracted, when a
    class of the train split has fewer labelled tracks than a shot count asks for. (Tracks
    whose audio then fails are checked again when the draws are made.)"""
    if not probe.shots:
        return
    admitted = admit(spec.make, dataset.splits, dataset.problems, lambda it: None)
    task = admitted.task
    if task.kind != "multiclass":
        return  # check_protocol names the head kind the task cannot take
    names = [str(c) for c in getattr(task, "classes", None) or range(task.output_dim)]
    counts = dict.fromkeys(names, 0)
    for it in admitted.usable["train"]:
        counts[names[int(task.encode(it.label))]] += 1
    for shots in probe.shots:
        check_shots(counts, int(shots))


def probe_job(spec: TaskSpec, entry: FeatureEntry, dataset: Dataset, probe: ProbeConfig, *,
              device: torch.device, seed: int, progress: bool) -> ProbeOutcome:
    """Train the probe grid (``probe``: the run's probe config) of one job."""
    task, splits, excluded = usable_splits(spec, entry, dataset)
    started = time.perf_counter()
    result = run_probe(task, entry, splits, probe, device=device, seed=seed,
                       progress=progress)
    return ProbeOutcome(task, splits, excluded, result, time.perf_counter() - started)


def usable_splits(spec: TaskSpec, entry: FeatureEntry,
                  dataset: Dataset) -> tuple[Task, dict[str, SplitData], Excluded]:
    """The fitted task, its usable tracks per split and every excluded item with its reason
    (the rules of :mod:`mirprobe.admission`; audio that failed in extraction is excluded)."""
    index = entry.index()
    failed = {f["path"]: f["reason"] for f in entry.failed}
    def failure(it: Item) -> str | None:  # a missing file names every place it was looked for
        return (it.missing(dataset.audio_root) or failed[it.key]) if it.key in failed else None

    admitted = admit(spec.make, dataset.splits, dataset.problems, failure)
    excluded: Excluded = {s: list(admitted.excluded[s]) for s in SPLITS}
    out = {}
    for s in SPLITS:
        keep = admitted.usable[s]
        if not keep:
            raise UserError(f"{dataset.folder}/{dataset.name}.{s}.jsonl: no usable items "
                            f"({len(excluded[s])} excluded, first: "
                            f"{excluded[s][0].describe() if excluded[s] else 'none'})")
        out[s] = SplitData(np.asarray([index[it.key] for it in keep], dtype=np.int64),
                           [it.label for it in keep], [it.uid for it in keep])
    return admitted.task, out, excluded

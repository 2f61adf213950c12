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

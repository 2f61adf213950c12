"""The records of a real run with several seeds: `mirprobe compare` on beat and genre against a
per-seed reference, and a work folder a colleague can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from mirprobe.cli import main
from mirprobe.config import load_run_config
from mirprobe.pipeline import run
from mirprobe.record import Predictions, Record
from mirprobe.report.compare import compare
from mirprobe.report.stats import cluster_weights, expand, percentile_interval

N_BOOT = 100
RUN = ["synthetic.size=tiny", "progress=false", "tasks=[beat,genre]",
       "models=[handcrafted,random]", "probe.seeds=2", "probe.heads=[linear]", "probe.lr=[1e-2]",
       "probe.max_epochs=3", "probe.patience=2"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    """A two-seed run written under umask 022 (a shared work folder's usual mask)."""
    work = tmp_path_factory.mktemp("shared")
    old = os.umask(0o022)
    try:
        records = run(load_run_config("quickstart", [*RUN, f"work_dir={work}"]))
    finally:
        os.umask(old)
    return work, records


def test_every_file_of_the_work_folder_is_readable_by_group_and_others(shared) -> None:
    work, _ = shared
    files = [p for p in work.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".json", ".npz", ".npy", ".wav", ".jsonl", ".md", ".csv", ".lock"} <= kinds, kinds
    private = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in files
               if p.stat().st_mode & 0o044 != 0o044]
    assert not private, private


def _reference(task, seeds_a, seeds_b, labels, uids, metric: str) -> dict[str, float]:
    """A − B from ``task.evaluate`` on each materialised resample, per seed, seeds averaged."""
    weights = cluster_weights(uids, N_BOOT, 0)

    def score(seeds, idx):
        return np.mean([task.evaluate([p[i] for i in idx] if isinstance(p, list) else p[idx],
                                      [labels[i] for i in idx])[metric] for p in seeds])

    whole = np.arange(len(labels))
    diff = np.array([score(seeds_a, expand(w)) - score(seeds_b, expand(w)) for w in weights])
    low, high = percentile_interval(diff)
    return {"a": score(seeds_a, whole), "b": score(seeds_b, whole), "ci_low": low, "ci_high": high,
            "p_a_better": float((diff > 0).mean() + 0.5 * (diff == 0).mean())}


def test_compare_with_two_seeds_matches_a_per_seed_reference(shared, capsys) -> None:
    work, records = shared
    assert main(["compare", "handcrafted", "random", "--work-dir", str(work),
                 "--resamples", str(N_BOOT)]) == 0
    shown = capsys.readouterr().out
    assert "beat (beat_f_measure)" in shown and "genre (accuracy)" in shown
    table = compare(records, "handcrafted", "random", records_dir=work / "records", n_boot=N_BOOT)
    recs = {(r.model, str(r.task)): r for r in records}
    for task_name in ("beat", "genre"):
        a, b = recs[("handcrafted", task_name)], recs[("random", task_name)]
        pa = Predictions.read(work / "records" / a.predictions)
        pb = Predictions.read(work / "records" / b.predictions)
        seeds_a, seeds_b = pa.seeds(a.best.layer), pb.seeds(b.best.layer)
        assert len(seeds_a) == len(seeds_b) == 2, "one entry per seed"
        assert pa.uids == pb.uids and pa.labels == pb.labels
        want = _reference(a.task.build(), seeds_a, seeds_b, pa.labels, pa.uids,
                          a.selection_metric)
        row = table.loc[task_name]
        for key, value in want.items():
            assert row[key] == pytest.approx(value, abs=1e-9), (task_name, key)
        assert row["a"] == pytest.approx(a.best.test[a.selection_metric], abs=1e-9)

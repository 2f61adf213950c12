"""``mirprobe run``: data → features → probes → records → leaderboard, each stage skipping done work.

For every model × task: read the task's JSONL splits (:mod:`mirprobe.resolve`, generating the
built-in synthetic suite when the task asks for it), name the job by its content
(:mod:`mirprobe.jobs`), extract or find its feature entry, train the probe grid
(:mod:`mirprobe.probing`) unless a run record with the same id exists, and write the record
(:mod:`mirprobe.record`). Items that cannot be used are kept in the record's ``excluded`` list
and printed, never dropped silently.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mirprobe import robustness
from mirprobe.config import resolve_device  # noqa: F401 - its former home, for callers
from mirprobe.distributed import Dist
from mirprobe.extraction import compile_extractor
from mirprobe.jobs import Job
from mirprobe.models import load_model
from mirprobe.probes.fewshot import variants
from mirprobe.record import Record
from mirprobe.report.render import print_and_write
from mirprobe.runner import Runner, report_problems  # Runner's former home, for callers too
from mirprobe.specs import model_specs, task_specs


def run(cfg: DictConfig, *, stages: tuple[str, ...] = ("extract", "probe", "report"),
        dist: Dist | None = None) -> list[Record]:
    """Run the benchmark described by ``cfg``; returns the run records of this run.

    Under several processes (``dist``, see :func:`mirprobe.distributed.launch`), every rank
    extracts its share of each feature entry, probe jobs are dealt out across ranks, and rank 0
    prints the tables (other ranks return []). A config with ``robustness.deformations`` runs
    the robustness protocol (:func:`mirprobe.robustness.run`: clean and deformed records)."""
    if cfg.robustness.deformations:
        return robustness.run(cfg, stages=stages, dist=dist)
    runner = Runner(cfg, dist)
    d = runner.dist
    specs = task_specs(cfg)
    runner.preflight(specs)
    jobs: list[Job] = []
    for name, options in model_specs(cfg):
        with runner.timer.stage("load model"):
            extractor = load_model(name, **options)
            if cfg.extract.compile:
                extractor = compile_extractor(extractor)
        for spec in specs:
            # one job per value of a varied probe key (shots, train_fraction), one entry for all
            new = [runner.job(name, extractor, spec, p) for p in variants(runner.settings.probe)]
            jobs.extend(new)
            todo = [j for j in new if "probe" not in stages or runner.records.get(j.rid) is None]
            if not todo:
                continue  # already done: no features needed
            entry = runner.entry(extractor, spec, extract="extract" in stages,
                                 identity=todo[0].features)
            for j in todo:
                j.entry = entry
        del extractor
    if "probe" not in stages:
        if d.is_main:
            print(runner.timer.summary())
        return []
    for j, job in enumerate(jobs):
        if j % d.world_size == d.rank and job.entry is not None:
            with runner.records.claim(job.rid) as done:  # another process may be making it
                if done is None:
                    runner.run_job(job)
    d.barrier()
    if not d.is_main:
        return []
    records = [r for r in (runner.records.get(job.rid) for job in jobs) if r is not None]
    if "report" in stages and records:
        out = Path(str(cfg.output)) if cfg.output else runner.work.run(str(cfg.name))
        with runner.timer.stage("report"):
            print_and_write(records, out, records_dir=runner.work.records)
        report_problems(records)
        print(f"tables written to {out}")
    print(runner.timer.summary())
    return records

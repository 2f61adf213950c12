"""``mirprobe run robustness``: probes trained on clean features, scored on deformed test sets.

For every model × task, the probe grid is trained and selected on the clean train and
validation features exactly as in an ordinary run: its record is the ordinary one (same id, same
numbers), written when missing. For every deformation of ``robustness.deformations``
(:mod:`mirprobe.deform`) the test split's audio is deformed and extracted into a feature entry of
its own, whose key is the clean key plus the deformation (name and every parameter), and the
chosen heads of every layer are scored on it (``run_probe``'s ``extra_tests``: same heads, same
train statistics, selection untouched). Labels follow the deformation where they must (beat
times under time stretch, keys under pitch shift; :func:`mirprobe.deform.relabel`).

Each deformation of a job writes a run record of its own (schema 3): its id is the digest of the
clean job's identity plus ``deformation`` (the deformation's identity), ``deformed_features``
(the deformed entry's id) and ``clean_record`` (the clean record's id); its task is named
``<task>@<deformation>``, its ``feature_entry`` is the deformed entry, its ``per_layer`` holds
the clean validation scores and the deformed test scores, its predictions the deformed test
predictions. :mod:`mirprobe.report.robustness` pairs each with its clean record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from mirprobe.admission import excluded
from mirprobe.data import Dataset, Problem
from mirprobe.deform import Deformation, check_task, parse_all, relabel
from mirprobe.distributed import Dist
from mirprobe.errors import UserError
from mirprobe.features import FeatureEntry, entry_id
from mirprobe.jobs import Job, write_record
from mirprobe.models import load_model
from mirprobe.models.base import Extractor
from mirprobe.probes import ProbeConfig, SplitData, run_probe
from mirprobe.probes.fewshot import variants
from mirprobe.probing import ProbeOutcome, usable_splits
from mirprobe.record import Record
from mirprobe.results import record_id
from mirprobe.runner import Runner, report_problems
from mirprobe.specs import TaskSpec, model_specs, task_specs


@dataclass
class Plan:
    """One clean job and its deformed jobs (one per deformation)."""

    clean: Job
    deformed: list[tuple[Deformation, Job]] = field(default_factory=list)

    def done(self, runner: Runner) -> bool:
        return all(runner.records.get(j.rid) is not None for j in [self.clean, *self.jobs])

    @property
    def jobs(self) -> list[Job]:
        return [j for _, j in self.deformed]


def deformations(cfg: DictConfig) -> list[Deformation]:
    """The run's deformations, checked (empty: not a robustness run)."""
    return parse_all(OmegaConf.to_container(cfg.robustness.deformations, resolve=True))


def test_keys(dataset: Dataset) -> list[str]:
    """Audio keys of the test split, in order, once each."""
    return list(dict.fromkeys(it.key for it in dataset.splits["test"]))


def deformed_identity(runner: Runner, extractor: Extractor, spec: TaskSpec,
                      d: Deformation) -> dict[str, Any]:
    """The deformed entry's key: the test items' clean entry identity plus the deformation."""
    clean = runner.entry_identity(extractor, spec, test_keys(runner.datasets.dataset(spec)))
    return {**clean, "deformation": d.identity()}


def plan(runner: Runner, model: str, extractor: Extractor, spec: TaskSpec, probe: ProbeConfig,
         ds: list[Deformation]) -> Plan:
    clean = runner.job(model, extractor, spec, probe)
    out = Plan(clean)
    for d in ds:
        features = deformed_identity(runner, extractor, spec, d)
        identity = {**clean.identity, "deformation": d.identity(),
                    "deformed_features": entry_id(features), "clean_record": clean.rid}
        out.deformed.append((d, Job(model, spec, record_id(identity), identity, features,
                                    probe=probe, suffix=f"@{d.label}")))
    return out


def deformed_tracks(d: Deformation, task: Any, clean: FeatureEntry, tracks: SplitData,
                    other: FeatureEntry, dataset: Dataset) -> tuple[SplitData, list[Problem]]:
    """The clean test tracks in the deformed entry, labels as the deformation makes them; a
    track whose deformed audio failed is excluded with its reason."""
    index, failed = other.index(), {f["path"]: f["reason"] for f in other.failed}
    items = {it.key: it for it in dataset.splits["test"]}
    keep, problems = [], []
    for pos, i in enumerate(tracks.items):
        key = clean.items[int(i)]
        if key in failed or key not in index:
            problems.append(excluded(items[key], failed.get(key, f"no features under {d.label}")))
        else:
            keep.append(pos)
    return SplitData(np.asarray([index[clean.items[int(tracks.items[p])]] for p in keep],
                                dtype=np.int64),
                     [relabel(d, task, tracks.labels[p]) for p in keep],
                     [tracks.uids[p] for p in keep]), problems


def probe_plan(runner: Runner, p: Plan) -> None:
    """Train the clean job's grid once; write its record (when missing) and every deformed
    job's record."""
    job = p.clean
    dataset = runner.datasets.dataset(job.spec)
    assert job.entry is not None
    with runner.timer.stage("probe"):
        task, splits, excl = usable_splits(job.spec, job.entry, dataset)
        tests, lost = {}, {}
        for d, dj in p.deformed:
            assert dj.entry is not None
            tracks, lost[dj.rid] = deformed_tracks(d, task, job.entry, splits["test"], dj.entry,
                                                   dataset)
            tests[dj.rid] = (dj.entry, tracks)
        result = run_probe(task, job.entry, splits, job.probe or runner.settings.probe,
                           device=runner.device, seed=int(runner.cfg.seed),
                           progress=runner.progress, extra_tests=tests)
    seconds = float(result.timings.get("probe_s", 0.0))
    with runner.records.claim(job.rid) as done:
        if done is None:
            write_record(runner.records, job, dataset,
                         ProbeOutcome(task, splits, excl, result, seconds), runner.settings)
    for _, dj in p.deformed:
        outcome = ProbeOutcome(task, {**splits, "test": tests[dj.rid][1]},
                               {**excl, "test": excl["test"] + lost[dj.rid]},
                               result.extra[dj.rid], seconds)
        write_record(runner.records, dj, dataset, outcome, runner.settings)


def check(runner: Runner, specs: list[TaskSpec], ds: list[Deformation]) -> None:
    """Every error that can be found before long work: protocol, deformations, weights, data."""
    if runner.dist.world_size > 1:
        raise UserError("mirprobe run robustness runs in one process; set launch.devices=1")
    for spec in specs:
        task = spec.make()
        for d in ds:
            check_task(d, task, spec.name)
    runner.preflight(specs)


def run(cfg: DictConfig, *, stages: tuple[str, ...] = ("extract", "probe", "report"),
        dist: Dist | None = None) -> list[Record]:
    """The robustness run of ``cfg`` (``robustness.deformations`` set); returns its records,
    clean and deformed."""
    runner = Runner(cfg, dist)
    ds = deformations(cfg)
    specs = task_specs(cfg)
    check(runner, specs, ds)
    extract, probing = "extract" in stages, "probe" in stages
    plans: list[Plan] = []
    for name, options in model_specs(cfg):
        with runner.timer.stage("load model"):
            extractor = load_model(name, **options)
        for spec in specs:
            for probe in variants(runner.settings.probe):
                p = plan(runner, name, extractor, spec, probe, ds)
                plans.append(p)
                if probing and p.done(runner):
                    continue
                p.clean.entry = runner.entry(extractor, spec, extract=extract,
                                             identity=p.clean.features)
                keys = test_keys(runner.datasets.dataset(spec))
                for d, dj in p.deformed:
                    dj.entry = runner.entry(extractor, spec, extract=extract,
                                            identity=dj.features, keys=keys, deform=d)
        del extractor
    if not probing:
        print(runner.timer.summary())
        return []
    for p in plans:
        if not p.done(runner) and all(j.entry is not None for j in [p.clean, *p.jobs]):
            probe_plan(runner, p)
    records = [r for p in plans for r in (runner.records.get(j.rid) for j in [p.clean, *p.jobs])
               if r is not None]
    if "report" in stages and records:
        report(runner, records)
    print(runner.timer.summary())
    return records


def report(runner: Runner, records: list[Record]) -> None:
    """The clean leaderboard and layer tables, then the robustness view (tables and heatmap)."""
    from mirprobe.report.render import print_and_write, write_view
    from mirprobe.report.robustness import is_deformed
    from mirprobe.report.views import Context, robustness_view

    cfg = runner.cfg
    out = Path(str(cfg.output)) if cfg.output else runner.work.run(str(cfg.name))
    with runner.timer.stage("report"):
        print_and_write([r for r in records if not is_deformed(r)], out,
                        records_dir=runner.work.records)
        view = robustness_view(Context(records, runner.work.records, ci=True, plots=out / "plots"))
        if view is not None:
            write_view(view, out)
    report_problems(records)
    print(f"tables written to {out}")

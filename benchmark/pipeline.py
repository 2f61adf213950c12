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
from typing import Any

from omegaconf import DictConfig

from mirprobe import config as C
from mirprobe.config import resolve_device  # noqa: F401 - its former home, for callers
from mirprobe.distributed import Dist
from mirprobe.extraction import batch_windows, compile_extractor
from mirprobe.features import FeatureEntry, FeatureStore, entry_id, entry_identity
from mirprobe.jobs import Job, make_job, write_record
from mirprobe.models import check_model, load_model
from mirprobe.models.base import Extractor
from mirprobe.models.hub import require_weights
from mirprobe.probes import ProbeConfig
from mirprobe.probes.engine import check_protocol
from mirprobe.probes.fewshot import variants
from mirprobe.probing import probe_job
from mirprobe.record import Record
from mirprobe.report.render import print_and_write
from mirprobe.resolve import DatasetResolver
from mirprobe.results import RecordStore
from mirprobe.specs import TaskSpec, model_specs, task_specs
from mirprobe.timing import Timer


class Runner:
    """One run's config, folders and caches, shared across its models and tasks."""

    def __init__(self, cfg: DictConfig, dist: Dist | None = None) -> None:
        self.cfg = cfg
        self.dist = dist or Dist()
        self.work = C.work_folder(cfg)
        self.settings = C.settings(cfg, self.dist.device)
        self.device = self.settings.device
        self.features = FeatureStore(self.work.features)
        self.records = RecordStore(self.work.records)
        self.timer = Timer()
        self.progress = bool(cfg.progress) and self.dist.is_main
        self.datasets = DatasetResolver(cfg, self.work, self.timer, self.progress)

    def job(self, model: str, extractor: Extractor, spec: TaskSpec,
            probe: ProbeConfig | None = None) -> Job:
        return make_job(model, self.entry_identity(extractor, spec), spec,
                        self.datasets.dataset(spec), self.cfg, probe or self.settings.probe)

    def _keys(self, spec: TaskSpec) -> list[str]:
        return list(dict.fromkeys(it.key for it in self.datasets.dataset(spec).all_items()))

    def entry_identity(self, extractor: Extractor, spec: TaskSpec) -> dict[str, Any]:
        """The identity of the job's feature entry (the one place it is computed)."""
        task = spec.make()
        window = float(task.window_s or extractor.context_s)
        return entry_identity(extractor, self._keys(spec), task.view, window,
                              self.settings.extract_precision)

    def entry(self, extractor: Extractor, spec: TaskSpec, *, extract: bool = True,
              identity: dict[str, Any] | None = None, keys: list[str] | None = None,
              deform: Any = None) -> FeatureEntry | None:
        """The job's feature entry (``identity``: its :meth:`entry_identity`, when known):
        extracted (collectively across ranks) or only looked up. ``keys`` and ``deform``: the
        entry of those items under a deformation (:mod:`mirprobe.robustness`)."""
        identity = identity or self.entry_identity(extractor, spec)
        x = self.cfg.extract
        with self.timer.stage("extract" if deform is None else "extract deformed"):
            if not extract:
                found = self.features.get(entry_id(identity))
                if found is None and self.dist.is_main:
                    print(f"no features yet for {extractor.name} × {spec.name}; run `mirprobe extract` first")
                return found
            d = self.dist
            window = float(identity["window_s"])
            batch = (max(1, int(float(x.batch_seconds) // window)) if x.batch_seconds
                     else batch_windows(x.batch_size, self.device))
            return self.features.extract(
                extractor.to(self.device), keys or self._keys(spec), identity=identity,
                view=identity["view"], window_s=window, batch_size=batch,
                num_workers=x.num_workers, chunk_items=x.chunk_items,
                dtype=self.settings.extract_precision, progress=self.progress, rank=d.rank,
                world_size=d.world_size, barrier=d.barrier if d.world_size > 1 else None,
                label=f"{extractor.name} × {spec.name}" + (f" @ {deform.label}" if deform else ""),
                deform=deform)

    def run_job(self, job: Job) -> Record:
        """Train the probe grid of one job on its features and write its record."""
        assert job.entry is not None
        dataset = self.datasets.dataset(job.spec)
        with self.timer.stage("probe"):
            outcome = probe_job(job.spec, job.entry, dataset, job.probe or self.settings.probe,
                                device=self.device, seed=int(self.cfg.seed), progress=self.progress)
        return write_record(self.records, job, dataset, outcome, self.settings)


def report_problems(records: list[Record]) -> None:
    """Print every excluded item once (the records keep them too)."""
    seen: set[tuple[str, str, str]] = set()
    lines = []
    for rec in records:
        for split, items in rec.excluded.items():
            for p in items:
                key = (split, p.source, str(p.line))
                if key not in seen:
                    seen.add(key)
                    lines.append(f"  [{split}] {p.describe()}")
    if lines:
        print(f"{len(lines)} item(s) could not be used (listed in each run record's 'excluded'):")
        print("\n".join(lines[:50]) + (f"\n  … and {len(lines) - 50} more" if len(lines) > 50 else ""))


def run(cfg: DictConfig, *, stages: tuple[str, ...] = ("extract", "probe", "report"),
        dist: Dist | None = None) -> list[Record]:
    """Run the benchmark described by ``cfg``; returns the run records of this run.

    Under several processes (``dist``, see :func:`mirprobe.distributed.launch`), every rank
    extracts its share of each feature entry, probe jobs are dealt out across ranks, and rank 0
    prints the tables (other ranks return [])."""
    runner = Runner(cfg, dist)
    d = runner.dist
    specs = task_specs(cfg)
    for spec in specs:  # a head kind a task cannot take fails before any long work
        check_protocol(spec.make(), runner.settings.probe)
    for name, options in model_specs(cfg):  # missing weights fail before any long work
        require_weights(options)
        check_model(name, **options)
    if d.is_main:  # read every dataset first: data errors surface before any long work
        for spec in specs:  # (rank 0 first: it may have to generate the synthetic suite)
            runner.datasets.dataset(spec)
    d.barrier()
    for spec in specs:
        runner.datasets.dataset(spec)
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

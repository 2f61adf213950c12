"""The state one run shares across its models and tasks (:class:`Runner`: config, folders,
feature and record stores, datasets, timer) and the listing of excluded items; used by
``mirprobe run`` (:mod:`mirprobe.pipeline`), its robustness protocol (:mod:`mirprobe.robustness`)
and ``mirprobe similarity``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from mirprobe import config as C
from mirprobe.distributed import Dist
from mirprobe.extraction import batch_windows
from mirprobe.features import FeatureEntry, FeatureStore, entry_id, entry_identity
from mirprobe.jobs import Job, make_job, write_record
from mirprobe.models import check_model
from mirprobe.models.base import Extractor
from mirprobe.models.hub import require_weights
from mirprobe.probes import ProbeConfig
from mirprobe.probes.engine import check_protocol
from mirprobe.probing import check_draws, probe_job
from mirprobe.record import Record
from mirprobe.resolve import DatasetResolver
from mirprobe.results import RecordStore
from mirprobe.specs import TaskSpec, model_specs
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

    def entry_identity(self, extractor: Extractor, spec: TaskSpec,
                       keys: list[str] | None = None) -> dict[str, Any]:
        """The identity of the job's feature entry (the one place it is computed); ``keys``:
        of an entry of those items only (default every item of the task's dataset)."""
        task = spec.make()
        window = float(task.window_s or extractor.context_s)
        return entry_identity(extractor, keys or self._keys(spec), task.view, window,
                              self.settings.extract_precision)

    def preflight(self, specs: list[TaskSpec]) -> None:
        """Every error that can be found before long work: a head kind a task cannot take,
        missing weights, data errors (rank 0 reads the datasets first: it may have to generate
        a built-in suite), few-shot counts per class."""
        for spec in specs:
            check_protocol(spec.make(), self.settings.probe)
        for name, options in model_specs(self.cfg):
            require_weights(options)
            check_model(name, **options)
        if self.dist.is_main:
            for spec in specs:
                self.datasets.dataset(spec)
        self.dist.barrier()
        for spec in specs:
            check_draws(spec, self.datasets.dataset(spec), self.settings.probe)

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

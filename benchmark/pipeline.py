"""``mirprobe run``: data → features → probes → records → leaderboard, each stage skipping done work.

For every model × task: read the task's JSONL splits (generating the built-in synthetic suite
when the task asks for it), extract or find the feature entry, train the probe grid unless a run
record with the same content address exists, and write the record. Items that cannot be used are
kept in the record's ``excluded`` list and printed, never dropped silently.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mirprobe import config as C
from mirprobe.data import SPLITS, Dataset, Item, Problem, load_dataset
from mirprobe.errors import UserError
from mirprobe.extraction import batch_windows, precision
from mirprobe.features import FeatureEntry, FeatureStore, entry_id, entry_identity
from mirprobe.models import load_model, model_options
from mirprobe.models.base import Extractor
from mirprobe.probes import ProbeConfig, SplitData, run_probe
from mirprobe.results import RecordStore, record_id, save_predictions, versions
from mirprobe.tasks import Task, get_task

TASK_KEYS = ("plugin", "data", "jsonl", "audio_root")


@dataclass
class TaskSpec:
    """One entry of the run's ``tasks`` list, resolved."""

    name: str
    plugin: str
    data: str
    jsonl: str
    options: dict[str, Any]
    audio_root: str | None = None

    def make(self) -> Task:
        return get_task(self.plugin, **self.options)


@dataclass
class Dist:
    """This process's place among the run's processes (one process unless launched distributed)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None  # the rank's device; None: from the config's `device`
    barrier: Callable[[], None] = field(default=lambda: None)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Job:
    """One probe job: a model × a task, with its record id and (once extracted) its features."""

    model: str
    spec: TaskSpec
    rid: str
    identity: dict[str, Any]
    entry: FeatureEntry | None = None


@dataclass
class Timer:
    """Wall time per stage, for the closing summary."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def summary(self) -> str:
        parts = [f"{k} {v:.1f}s" for k, v in self.seconds.items() if v >= 0.05]
        return "time per stage: " + (", ".join(parts) or "nothing to do")


def task_specs(cfg: DictConfig) -> list[TaskSpec]:
    specs = []
    for entry in cfg.tasks:
        name, opts = C.named_section(entry, "tasks")
        plugin = opts.get("plugin")
        if not plugin:
            raise UserError(f"task {name!r} has no 'plugin' key; add e.g. plugin: multiclass")
        for key in ("data", "jsonl"):
            if not opts.get(key):
                raise UserError(f"task {name!r} has no {key!r} key; see configs/tasks/*.yaml for examples")
        options = {k: v for k, v in opts.items() if k not in TASK_KEYS}
        specs.append(TaskSpec(name, str(plugin), str(opts["data"]), str(opts["jsonl"]), options,
                              opts.get("audio_root")))
    return specs


def model_specs(cfg: DictConfig) -> list[tuple[str, dict[str, Any]]]:
    """``models`` entries → (name, options): config names, inline mappings, folders or hub names."""
    named = C.available("models")
    return [(m, model_options(m)) if isinstance(m, str) and m not in named
            else C.named_section(m, "models") for m in cfg.models]


def encodable(task: Task, label: Any) -> None:
    """Raise ``ValueError`` (naming the label) when ``task`` cannot turn ``label`` into a target."""
    if task.view == "clip":
        task.encode(label)
    else:
        task.encode_frames(label, 1, 1.0)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use device=auto or device=cpu")
    return torch.device(name)


class Runner:
    """Carries one run's config, folders and caches across models and tasks."""

    def __init__(self, cfg: DictConfig, dist: Dist | None = None) -> None:
        self.cfg = cfg
        self.dist = dist or Dist()
        self.work = C.work_dir(cfg)
        self.features = FeatureStore(self.work / "features")
        self.records = RecordStore(self.work / "records")
        self.device = self.dist.device or resolve_device(cfg.device)
        self.timer = Timer()
        self.progress = bool(cfg.progress) and self.dist.is_main
        self._datasets: dict[tuple[str, str, str | None], Dataset] = {}

    # ---------------------------------------------------------------- data
    def dataset_folder(self, spec: TaskSpec) -> Path:
        if spec.data == "synthetic":
            from mirprobe.synth import generate_suite

            size, seed = self.cfg.synthetic.size, int(self.cfg.synthetic.seed)
            with self.timer.stage("synthesize"):
                return generate_suite(self.work / "synthetic" / f"{size}-seed{seed}", size=size,
                                      seed=seed, progress=self.progress)
        folder = Path(spec.data).expanduser()
        if not folder.is_absolute():
            if not self.cfg.data_root:
                raise UserError(f"task {spec.name!r}: data folder {spec.data!r} is relative; "
                                f"set data_root=/path/to/datasets (or give an absolute path)")
            folder = Path(str(self.cfg.data_root)).expanduser() / folder
        return folder

    def dataset(self, spec: TaskSpec) -> Dataset:
        root = spec.audio_root or self.cfg.audio_root
        key = (spec.data, spec.jsonl, root)
        if key not in self._datasets:
            folder = self.dataset_folder(spec)
            audio_root = Path(str(root)).expanduser() if root else None
            self._datasets[key] = load_dataset(folder, spec.jsonl, audio_root)
        return self._datasets[key]

    # ---------------------------------------------------------------- one job
    def job(self, model: str, extractor: Extractor, spec: TaskSpec) -> Job:
        dataset = self.dataset(spec)
        identity = {"model": {"name": model, "fingerprint": extractor.fingerprint()},
                    "task": {"name": spec.name, "plugin": spec.plugin, "options": spec.options},
                    "dataset": dataset.digest(),
                    "probe": OmegaConf.to_container(self.cfg.probe, resolve=True),
                    "seed": int(self.cfg.seed)}
        return Job(model, spec, record_id(identity), identity)

    def run_job(self, job: Job) -> dict[str, Any]:
        """Train the probe grid of one job on its features and write its record."""
        spec, entry = job.spec, job.entry
        assert entry is not None
        dataset = self.dataset(spec)
        task = spec.make()
        splits, excluded = self.splits(spec, task, entry, dataset)
        with self.timer.stage("probe"):
            started = time.perf_counter()
            result = run_probe(task, entry, splits, ProbeConfig(**job.identity["probe"]),
                               device=self.device, seed=int(self.cfg.seed), progress=self.progress)
            probe_s = time.perf_counter() - started
        pred_name = f"{job.rid}.npz"
        save_predictions(self.records.root / pred_name, result.predictions, result.test_labels,
                         result.test_uids)
        record = {
            "id": job.rid, "model": job.model, "task": spec.name,
            "dataset": str(dataset.folder / dataset.name), "feature_entry": entry.id,
            "config": {**job.identity, "device": str(self.device), "window_s": entry.meta["window_s"],
                       "task": {**job.identity["task"], "data": spec.data, "jsonl": spec.jsonl}},
            "versions": versions(), "task_info": task.describe(),
            "selection_metric": task.selection_metric, "higher_is_better": task.higher_is_better,
            "layers": result.layers, "per_layer": result.per_layer, "best": result.best,
            "chance": task.chance(splits["train"].labels, splits["test"].labels),
            "counts": {s: len(splits[s].labels) for s in SPLITS},
            "test_units": len(result.test_labels),
            "excluded": excluded, "predictions": pred_name, "num_heads": result.num_heads,
            "timings": {"probe_s": round(probe_s, 3), **result.timings},
        }
        self.records.put(record)
        return record

    def entry(self, extractor: Extractor, spec: TaskSpec, *, extract: bool = True) -> FeatureEntry | None:
        """The job's feature entry: extracted (collectively across ranks) or only looked up."""
        task = spec.make()
        keys = list(dict.fromkeys(it.key for it in self.dataset(spec).all_items()))
        x = self.cfg.extract
        with self.timer.stage("extract"):
            if not extract:
                window = float(task.window_s or extractor.context_s)
                found = self.features.get(entry_id(entry_identity(
                    extractor, keys, task.view, window, precision(self.device, x.dtype))))
                if found is None and self.dist.is_main:
                    print(f"no features yet for {extractor.name} × {spec.name}; run `mirprobe extract` first")
                return found
            d = self.dist
            window = float(task.window_s or extractor.context_s)
            batch = (max(1, int(float(x.batch_seconds) // window)) if x.batch_seconds
                     else batch_windows(x.batch_size, self.device))
            return self.features.extract(
                extractor.to(self.device), keys, view=task.view, window_s=task.window_s,
                batch_size=batch, num_workers=x.num_workers, chunk_items=x.chunk_items,
                dtype=x.dtype, progress=self.progress, rank=d.rank, world_size=d.world_size,
                barrier=d.barrier if d.world_size > 1 else None,
                label=f"{extractor.name} × {spec.name}")

    @staticmethod
    def fit_task(spec: TaskSpec, task: Task, train: list[Item],
                 excluded: list[dict[str, Any]]) -> list[Item]:
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

    def splits(self, spec: TaskSpec, task: Task, entry: FeatureEntry,
               dataset: Dataset) -> tuple[dict[str, SplitData], dict[str, list[dict[str, Any]]]]:
        """Usable tracks per split; everything else goes to ``excluded`` with its reason."""
        index = entry.index()
        failed = {f["path"]: f["reason"] for f in entry.failed}
        excluded: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for p in dataset.problems:
            split = next((s for s in SPLITS if p.source.endswith(f".{s}.jsonl")), "train")
            excluded[split].append(p.to_dict())
        usable = {s: [it for it in dataset.splits[s] if it.key not in failed] for s in SPLITS}
        for s in SPLITS:
            for it in dataset.splits[s]:
                if it.key in failed:
                    excluded[s].append(Problem(str(it.source), it.line, failed[it.key], it.key).to_dict())
        usable["train"] = self.fit_task(spec, task, usable["train"], excluded["train"])
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


def report_problems(records: list[dict[str, Any]]) -> None:
    """Print every excluded item once (the records keep them too)."""
    seen: set[tuple[str, str, str]] = set()
    lines = []
    for rec in records:
        for split, items in rec.get("excluded", {}).items():
            for p in items:
                key = (split, str(p.get("source")), str(p.get("line")))
                if key not in seen:
                    seen.add(key)
                    where = f"{p['source']}:{p['line']}" if p.get("line") else p["source"]
                    lines.append(f"  [{split}] {where}: {p['reason']}")
    if lines:
        print(f"{len(lines)} item(s) could not be used (listed in each run record's 'excluded'):")
        print("\n".join(lines[:50]) + (f"\n  … and {len(lines) - 50} more" if len(lines) > 50 else ""))


def run(cfg: DictConfig, *, stages: tuple[str, ...] = ("extract", "probe", "report"),
        dist: Dist | None = None) -> list[dict[str, Any]]:
    """Run the benchmark described by ``cfg``; returns the run records of this run.

    Under several processes (``dist``), every rank extracts its share of each feature entry, probe
    jobs are dealt out across ranks, and rank 0 prints the tables (other ranks return [])."""
    runner = Runner(cfg, dist)
    d = runner.dist
    specs = task_specs(cfg)
    if d.is_main:  # read every dataset first: data errors surface before any long work
        for spec in specs:  # (rank 0 first: it may have to generate the synthetic suite)
            runner.dataset(spec)
    d.barrier()
    for spec in specs:
        runner.dataset(spec)
    jobs: list[Job] = []
    for name, options in model_specs(cfg):
        with runner.timer.stage("load model"):
            extractor = load_model(name, **options)
            if cfg.extract.compile:
                from mirprobe.distributed import compile_extractor

                extractor = compile_extractor(extractor)
        for spec in specs:
            job = runner.job(name, extractor, spec)
            jobs.append(job)
            if "probe" in stages and runner.records.get(job.rid) is not None:
                continue  # already done: no features needed
            job.entry = runner.entry(extractor, spec, extract="extract" in stages)
        del extractor
    if "probe" not in stages:
        if d.is_main:
            print(runner.timer.summary())
        return []
    for j, job in enumerate(jobs):
        if j % d.world_size == d.rank and job.entry is not None and runner.records.get(job.rid) is None:
            runner.run_job(job)
    d.barrier()
    if not d.is_main:
        return []
    records = [r for r in (runner.records.get(job.rid) for job in jobs) if r is not None]
    if "report" in stages and records:
        from mirprobe.report.render import print_and_write

        out = Path(str(cfg.output)) if cfg.output else runner.work / "runs" / str(cfg.name)
        with runner.timer.stage("report"):
            print_and_write(records, out, records_dir=runner.records.root)
        report_problems(records)
        print(f"tables written to {out}")
    print(runner.timer.summary())
    return records

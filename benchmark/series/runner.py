"""One round of a checkpoint series — new or changed checkpoints through the pipeline — and
``--watch``.

Each checkpoint is a model of an ordinary run (``<series>@step=<step>``, an inline ``models``
entry), so the pipeline's content-addressed run records decide what is already done: a
checkpoint × task whose record exists trains nothing. Checkpoints are loaded once first, so that
one that fails to load is listed as failed and the others still run; the good ones then go
through one :func:`mirprobe.pipeline.run`, which deals the checkpoint × task probe jobs out
across the processes of a distributed launch. Only rank 0 finds and loads the checkpoints; the
other ranks read its plan from the shared work folder, so every rank runs the same jobs even
while new checkpoints appear.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mirprobe import config as C
from mirprobe.distributed import Dist
from mirprobe.errors import UserError
from mirprobe.models import load_model
from mirprobe.pipeline import report_problems
from mirprobe.pipeline import run as run_pipeline
from mirprobe.record import Record
from mirprobe.report import series as report
from mirprobe.report.series_plots import layer_heatmaps, score_curves
from mirprobe.series.checkpoints import Checkpoint, NoCheckpoints, check_name, discover
from mirprobe.workfolder import atomic_write_json

#: The run config of a series when none is given: the fast ridge heads when installed.
FAST_CONFIG = "fast"
#: Otherwise the quickstart protocol with linear heads only.
FALLBACK = (C.DEFAULT_RUN, ["probe.heads=[linear]"])
STAGES = ("extract", "probe")


def series_config(config: str | None, overrides: list[str]) -> tuple[DictConfig, str]:
    """The run config of a series and a one-line description of its protocol."""
    if any(o.split("=", 1)[0].strip() == "models" for o in overrides):
        raise UserError("models=... cannot be set for a series: its models are the checkpoints; "
                        "run other models with `mirprobe run`")
    if config is not None:
        return C.load_run_config(config, overrides), _describe(Path(config).name, overrides)
    if FAST_CONFIG in C.available("runs"):
        return C.load_run_config(FAST_CONFIG, overrides), _describe(FAST_CONFIG, overrides)
    name, fixed = FALLBACK
    return (C.load_run_config(name, [*fixed, *overrides]),
            _describe(name, [*fixed, *overrides]) + " (the fast ridge protocol is not installed)")


def _describe(config: str, overrides: list[str]) -> str:
    """The config's name and its probe overrides (the tasks show in the tables)."""
    return " ".join([config, *(o for o in overrides if o.startswith("probe."))])


def _one_line(error: BaseException, path: Path) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if str(path) in text else f"{path}: {text}"


@dataclass
class Outcome:
    """What became of one checkpoint: its records per task, or why it failed."""

    signature: tuple
    records: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)  # tasks trained in the latest round
    error: str | None = None


class Series:
    """A checkpoint series under one run config, evaluated round by round."""

    def __init__(self, source: Path, cfg: DictConfig, protocol: str, *, name: str | None = None,
                 dist: Dist | None = None, ci: bool = True, n_boot: int = report.N_BOOT,
                 seed: int = report.SEED) -> None:
        self.source, self.cfg, self.protocol = Path(source).expanduser().resolve(), cfg, protocol
        self.dist = dist or Dist()
        self.fixed_name = check_name(name) if name else None
        self.work = C.work_folder(cfg)
        self.outcomes: dict[int, Outcome] = {}
        self.checkpoints: list[Checkpoint] = []
        self.name = self.fixed_name or ""
        self.ci, self.n_boot, self.seed = ci, n_boot, seed
        self._intervals: dict[str, tuple[float, float]] = {}
        self._signatures: dict[int, tuple] = {}  # at planning time: a re-write after it is redone

    @property
    def failed(self) -> list[int]:
        """Steps of the checkpoints that could not be evaluated."""
        return sorted(step for step, out in self.outcomes.items() if out.error)

    @property
    def folder(self) -> Path:
        return self.work.series(self.name)

    # ------------------------------------------------------------------ plan (rank 0)
    def _plan(self) -> dict[str, Any]:
        """Find the checkpoints, pick the new or changed ones and load each once."""
        name, found = discover(self.source)
        self.name = self.fixed_name or name
        pending, failed = [], {}
        for ckpt in found:
            old = self.outcomes.get(ckpt.step)
            self._signatures[ckpt.step] = ckpt.signature()
            if old is not None and old.signature == self._signatures[ckpt.step]:
                continue
            entry = ckpt.model_entry(self.name)
            try:
                extractor = load_model(entry["name"], **{k: v for k, v in entry.items() if k != "name"})
                del extractor
                pending.append(ckpt.step)
            except Exception as e:  # noqa: BLE001 - any failure to load marks this checkpoint only
                failed[str(ckpt.step)] = _one_line(e, ckpt.path)
        return {"name": self.name, "pending": pending, "failed": failed,
                "checkpoints": [{"step": c.step, "path": str(c.path), "options": c.options}
                                for c in found]}

    def _shared_plan(self) -> dict[str, Any]:
        """Rank 0's plan, seen by every rank (through the work folder when there are several)."""
        d = self.dist
        if d.world_size == 1:
            return self._plan()
        path = self.work.series_root / f".plan-{self.source.name}.json"
        if d.is_main:
            try:
                plan = self._plan()
            except UserError as e:
                plan = {"error": str(e), "empty": isinstance(e, NoCheckpoints)}
            atomic_write_json(path, plan)
        d.barrier()
        return json.loads(path.read_text())

    # ------------------------------------------------------------------ one round
    def round(self) -> bool:
        """Evaluate every new or changed checkpoint; returns whether anything was to do."""
        plan = self._shared_plan()
        if "error" in plan:
            raise (NoCheckpoints if plan.get("empty") else UserError)(plan["error"])
        self.name = plan["name"]
        self.checkpoints = [Checkpoint(c["step"], Path(c["path"]), c["options"])
                            for c in plan["checkpoints"]]
        by_step = {c.step: c for c in self.checkpoints}
        todo = [by_step[s] for s in plan["pending"]]
        if not todo and not plan["failed"]:
            return False
        if self.dist.is_main:
            print(f"series {self.name}: {len(self.checkpoints)} checkpoint(s), "
                  f"{len(todo) + len(plan['failed'])} to evaluate (checkpoint × task pairs already "
                  f"done are reused); protocol: {self.protocol}")
        before = self._record_ids() if self.dist.is_main else set()
        records = self._run(todo) if todo else []
        if not self.dist.is_main:
            return True
        self._collect(todo, plan["failed"], records, before)
        self.outcomes = {s: o for s, o in self.outcomes.items() if s in by_step}
        report_problems(records)
        self.report()
        return True

    def _run(self, todo: list[Checkpoint]) -> list[Record]:
        cfg = self.cfg.copy()
        cfg.name = self.name
        cfg.models = [c.model_entry(self.name) for c in todo]
        return run_pipeline(cfg, stages=STAGES, dist=self.dist)

    def _record_ids(self) -> set[str]:
        return {p.stem for p in self.work.records.glob("*.json")}

    def _collect(self, todo: list[Checkpoint], failed: dict[str, str],
                 records: list[Record], before: set[str]) -> None:
        for old in self.outcomes.values():
            old.new = []
        by_model: dict[str, list[Record]] = {}
        for rec in records:
            by_model.setdefault(rec.model, []).append(rec)
        for ckpt in todo:
            mine = by_model.get(ckpt.model_name(self.name), [])
            self.outcomes[ckpt.step] = Outcome(
                self._signatures[ckpt.step], {str(r.task): r.id for r in mine},
                [str(r.task) for r in mine if r.id not in before])
        for step, error in failed.items():
            ckpt = next(c for c in self.checkpoints if c.step == int(step))
            self.outcomes[ckpt.step] = Outcome(self._signatures[ckpt.step], error=error)

    # ------------------------------------------------------------------ output (rank 0)
    def manifest(self) -> report.Manifest:
        tasks = [C.named_section(t, "tasks")[0] for t in self.cfg.tasks]
        rows = []
        for ckpt in self.checkpoints:
            out = self.outcomes.get(ckpt.step)
            status = ("failed" if out and out.error else
                      "done" if out and set(out.records) >= set(tasks) else "partial")
            rows.append(report.CheckpointRow(
                step=ckpt.step, model=ckpt.model_name(self.name), path=str(ckpt.path),
                status=status, records=dict(out.records) if out else {},
                new=list(out.new) if out else [], error=out.error if out else None))
        return report.Manifest(name=self.name, source=str(self.source), protocol=self.protocol,
                               tasks=tasks, checkpoints=rows)

    def report(self) -> None:
        """Write the manifest, the tables and the plots; print the tables."""
        manifest = self.manifest()
        report.write_manifest(self.folder, manifest)
        out = Path(str(self.cfg.output)) if self.cfg.output else self.folder
        table, layers = report.write_tables(manifest, out, self.work.records, ci=self.ci,
                                            n_boot=self.n_boot, seed=self.seed, cache=self._intervals)
        if len(table):
            score_curves(table, out / "plots", self.name)
            layer_heatmaps(layers, out / "plots", self.name)
        trained = sum(len(c.new) for c in manifest.checkpoints)
        reused = sum(len(c.records) for c in manifest.checkpoints) - trained
        print(f"{trained} checkpoint × task job(s) trained, {reused} reused; tables and plots "
              f"written to {out}")


def watch(series: Series, seconds: float) -> None:
    """Rounds every ``seconds`` until interrupted; a folder still without checkpoints is waited on."""
    waiting, announce = False, True
    while True:
        try:
            announce = series.round() or announce
            waiting = False
        except NoCheckpoints as e:
            if not waiting and series.dist.is_main:
                print(f"{e} — waiting for checkpoints")
            waiting = True
        if announce and series.dist.is_main:
            print(f"watching {series.source} every {seconds:g} s for new checkpoints (Ctrl-C to "
                  "stop)", flush=True)
        announce = False
        time.sleep(seconds)

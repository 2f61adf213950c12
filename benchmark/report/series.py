"""Checkpoint series: the manifest ``mirprobe series`` leaves, and its tables.

``mirprobe series`` writes ``<work_dir>/series/<name>/series.json`` — the series' checkpoints
in step order, each with its model name, folder, status and the run record id per task — so that
``mirprobe publish`` (and anything else) finds every series of a work folder. All numbers come
from the run records the manifest names:

- the score table: per step × task, the test score of the layer selected on validation with
  its 95% bootstrap interval (:func:`mirprobe.report.stats.record_interval`, as the leaderboard);
- the layer table: per step × task × layer, the validation and test score.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mirprobe.errors import UserError
from mirprobe.record import WEIGHTED, Record
from mirprobe.report.records import fmt, layer_label, metric_scale
from mirprobe.report.render import CI_CAPTION, W_NOTE, displayed, markdown_table, text_table
from mirprobe.report.stats import N_BOOT, SEED, record_interval
from mirprobe.results import RecordStore
from mirprobe.workfolder import WorkFolder, atomic_write_json

MANIFEST = "series.json"
SCHEMA = 1
SCORE_CAPTION = ("Test score of the layer selected on validation at each training step (its layer "
                 f"after @; {W_NOTE}), ×100 for 0–1 metrics (R² included)."
                 " Row 'chance': a baseline that knows only the training label distribution.")
LAYER_CAPTION = ("Test score per training step (rows) and layer (columns), ×100 for 0–1 metrics; "
                 "* marks the layer selected on validation.")
CHANCE_ROW = "chance"
STATUSES = ("done", "partial", "failed")


@dataclass
class CheckpointRow:
    """One checkpoint of a series: its model name, folder, status and run record per task."""

    step: int
    model: str
    path: str
    status: str  # one of STATUSES
    records: dict[str, str] = field(default_factory=dict)  # task → run record id
    new: list[str] = field(default_factory=list)  # tasks trained in the latest round
    error: str | None = None  # why a failed checkpoint could not be evaluated


@dataclass
class Manifest:
    """What ``mirprobe series`` leaves in ``series.json`` (schema :data:`SCHEMA`)."""

    name: str
    source: str
    protocol: str
    tasks: list[str]
    checkpoints: list[CheckpointRow]
    updated: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = MANIFEST) -> Manifest:
        try:
            rows = [CheckpointRow(**c) for c in data["checkpoints"]]
            return cls(**{**{k: v for k, v in data.items() if k != "schema"}, "checkpoints": rows})
        except (TypeError, KeyError) as e:
            raise UserError(f"{source}: not a series manifest ({e}); run `mirprobe series` "
                            "again") from e


def series_dir(work_dir: Path, name: str) -> Path:
    """Where a series' manifest lives: ``<work_dir>/series/<name>/``."""
    return WorkFolder(Path(work_dir)).series(name)


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``series.json`` atomically (readers see the old or the new one)."""
    path = Path(folder) / MANIFEST
    manifest.updated = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_json(path, manifest.to_dict())
    return path


def read_manifests(work_dir: Path) -> list[Manifest]:
    """Every series manifest of a work folder, by name."""
    out = []
    for path in sorted(WorkFolder(Path(work_dir)).series_root.glob(f"*/{MANIFEST}")):
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e}); run `mirprobe series` again") from e
        out.append(Manifest.from_dict(data, str(path)))
    return out


def series_records(manifest: Manifest, records_dir: Path) -> list[tuple[int, Record]]:
    """``(step, record)`` of every record the manifest names that is on disk, in step order."""
    store = RecordStore(records_dir)
    out = []
    for ckpt in sorted(manifest.checkpoints, key=lambda c: c.step):
        for rid in ckpt.records.values():
            rec = store.get(rid)
            if rec is not None:
                out.append((ckpt.step, rec))
    return out


def score_table(manifest: Manifest, records_dir: Path, *, ci: bool = True,
                n_boot: int = N_BOOT, seed: int = SEED,
                cache: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """One row per step × task: raw score of the validation-selected layer, its interval, chance.

    ``cache`` (record id → interval) spares recomputing intervals of unchanged records."""
    rows = []
    for step, rec in series_records(manifest, records_dir):
        metric = rec.selection_metric
        best = rec.best
        row = {"step": step, "model": rec.model, "task": str(rec.task), "metric": metric,
               "scale": metric_scale(rec, metric), "layer": best.layer,
               "score": best.test.get(metric, np.nan),
               "ci_low": np.nan, "ci_high": np.nan, "chance": rec.chance.get(metric, np.nan),
               "higher_is_better": rec.higher_is_better, "record": rec.id}
        if ci:
            key = f"{rec.id}:{n_boot}:{seed}"
            interval = cache.get(key) if cache is not None else None
            if interval is None:
                interval = record_interval(rec, None, metric, records_dir=records_dir,
                                           n_boot=n_boot, seed=seed)
                if cache is not None:
                    cache[key] = interval
            row["ci_low"], row["ci_high"] = interval
        rows.append(row)
    return pd.DataFrame(rows, columns=["step", "model", "task", "metric", "scale", "layer", "score",
                                       "ci_low", "ci_high", "chance", "higher_is_better", "record"])


def layer_scores(manifest: Manifest, records_dir: Path) -> pd.DataFrame:
    """One row per step × task × layer: raw validation and test score, selected or not."""
    rows = []
    for step, rec in series_records(manifest, records_dir):
        metric = rec.selection_metric
        chosen = rec.best.layer
        for entry in rec.per_layer:
            rows.append({"step": step, "task": str(rec.task), "metric": metric,
                         "scale": metric_scale(rec, metric), "layer": entry.layer,
                         "index": entry.index, "val": entry.val.get(metric, np.nan),
                         "test": entry.test.get(metric, np.nan),
                         "selected": entry.layer == chosen})
    return pd.DataFrame(rows, columns=["step", "task", "metric", "scale", "layer", "index", "val", "test",
                                       "selected"])


def tasks_of(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["task"]))


def score_display(table: pd.DataFrame) -> pd.DataFrame:
    """String table: rows are steps (and chance), one ``score [ci] @layer`` column per task."""
    steps = sorted(set(table["step"]))
    out = pd.DataFrame(index=pd.Index([*map(str, steps), CHANCE_ROW], name="step"))
    for task in tasks_of(table):
        sub = table[table["task"] == task].set_index("step")
        metric, scale = str(sub["metric"].iloc[0]), float(sub["scale"].iloc[0])
        cells = []
        for step in steps:
            if step not in sub.index:
                cells.append("–")
                continue
            r = sub.loc[step]
            text = fmt(r["score"], scale)
            if np.isfinite(r["ci_low"]):
                text += f" [{fmt(r['ci_low'], scale)}, {fmt(r['ci_high'], scale)}]"
            cells.append(f"{text} @{layer_label(r['layer'])}")
        chance = pd.to_numeric(sub["chance"], errors="coerce").dropna()
        cells.append(fmt(float(chance.mean()), scale) if len(chance) else "–")
        out[f"{task} ({metric})"] = cells
    return out


def layer_display(layers: pd.DataFrame, task: str) -> pd.DataFrame:
    """String step × layer table of one task's test scores, ``*`` on the selected layer."""
    sub = layers[layers["task"] == task]
    metric, scale = str(sub["metric"].iloc[0]), float(sub["scale"].iloc[0])
    order = sub.drop_duplicates("layer").sort_values("index")["layer"].tolist()
    if WEIGHTED in order:  # the learned sum after the layers, as in the layer tables
        order = [x for x in order if x != WEIGHTED] + [WEIGHTED]
    out = pd.DataFrame(index=pd.Index([str(s) for s in sorted(set(sub["step"]))], name="step"),
                       columns=[layer_label(x) for x in order], data="–")
    for _, r in sub.iterrows():
        out.loc[str(r["step"]), layer_label(r["layer"])] = fmt(r["test"], scale) + ("*" if r["selected"] else "")
    out.attrs["metric"] = metric
    return out


def score_csv(table: pd.DataFrame) -> pd.DataFrame:
    """The score table with values as displayed (×100 for 0–1 metrics)."""
    out = table.copy()
    for col in ("score", "ci_low", "ci_high", "chance"):
        out[col] = [displayed(v, s) for v, s in zip(out[col], out["scale"], strict=True)]
    return out


def layers_csv(layers: pd.DataFrame) -> pd.DataFrame:
    """The layer table with values as displayed (×100 for 0–1 metrics)."""
    out = layers.copy()
    for col in ("val", "test"):
        out[col] = [displayed(v, s) for v, s in zip(out[col], out["scale"], strict=True)]
    return out


def failed_lines(manifest: Manifest) -> list[str]:
    """One line per checkpoint that could not be evaluated: its folder and why."""
    return [f"step {c.step}: {c.error}" for c in manifest.checkpoints if c.status == "failed"]


def caption(manifest: Manifest, *, ci: bool, n_boot: int, seed: int) -> str:
    text = SCORE_CAPTION + (CI_CAPTION.format(n_boot=n_boot, seed=seed) if ci else "")
    return text + f" Protocol: {manifest.protocol or '?'}."


def write_tables(manifest: Manifest, out_dir: Path, records_dir: Path, *,
                 console: bool = True, ci: bool = True, n_boot: int = N_BOOT, seed: int = SEED,
                 cache: dict[str, tuple[float, float]] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``series.md``, ``series.csv`` and ``series_layers.csv`` into ``out_dir`` (and print
    them); returns the raw score and layer tables."""
    table = score_table(manifest, records_dir, ci=ci, n_boot=n_boot, seed=seed, cache=cache)
    layers = layer_scores(manifest, records_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name, failed = manifest.name, failed_lines(manifest)
    text = caption(manifest, ci=ci, n_boot=n_boot, seed=seed)
    md = [f"## Series {name}: score by training step\n"]
    console_text = [f"Series {name}: score by training step"]
    if len(table):
        shown = score_display(table)
        md.append(f"{markdown_table(shown)}\n{text}\n")
        console_text.append(f"{text_table(shown)}\n{text}\n")
        for task in tasks_of(layers):
            grid = layer_display(layers, task)
            md.append(f"### {task} ({grid.attrs['metric']}) by step and layer\n\n{markdown_table(grid)}")
            console_text.append(f"{task} ({grid.attrs['metric']}): test score by step × layer\n"
                                f"{text_table(grid)}\n")
        md.append(LAYER_CAPTION + "\n")
        console_text.append(LAYER_CAPTION)
    else:
        md.append("No checkpoint evaluated yet.\n")
        console_text.append("No checkpoint evaluated yet.")
    if failed:
        md.append("### Failed checkpoints\n\n" + "\n".join(f"- {line}" for line in failed) + "\n")
        console_text.append(f"{len(failed)} checkpoint(s) failed:\n" + "\n".join(f"  {x}" for x in failed))
    (out / "series.md").write_text("\n".join(md))
    score_csv(table).to_csv(out / "series.csv", index=False)
    layers_csv(layers).to_csv(out / "series_layers.csv", index=False)
    if console:
        print("\n".join(console_text))
    return table, layers


def leaderboard_records(records: Sequence[Record],
                        manifests: Sequence[Manifest]) -> list[Record]:
    """Records for a leaderboard next to series: every record that belongs to no series, and
    of each series only its latest evaluated step (the series has its own section)."""
    drop: set[str] = set()
    for manifest in manifests:
        done = [c for c in manifest.checkpoints if c.records]
        latest = max(done, key=lambda c: c.step) if done else None
        drop |= {c.model for c in manifest.checkpoints if c is not latest}
    kept = [r for r in records if r.model not in drop]
    return kept or list(records)

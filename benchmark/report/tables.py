"""Result tables built from run records: the leaderboard, per-layer tables, the aggregate.

Values here are raw metric values (0–1 for accuracy and the like); :mod:`.render` scales
them for display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mirprobe.errors import UserError
from mirprobe.record import Record
from mirprobe.report.records import (
    by_model_task,
    higher_is_better,
    metric_scale,
    models_and_tasks,
)

#: Fields of each task's column group in :func:`leaderboard`.
FIELDS = ("metric", "score", "layer", "chance", "higher_is_better", "scale")
CI_FIELDS = ("ci_low", "ci_high")
#: Joins task and metric in the column key of a secondary metric (``--all-metrics``).
SEP = " · "


def leaderboard(records: Sequence[Record], *, ci: bool = False,
                records_dir: Path | None = None, metric: str | None = None,
                all_metrics: bool = False, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Model × task table of the validation-selected layer's test score.

    Rows are models; columns a ``(task, field)`` MultiIndex with the fields of
    :data:`FIELDS` (primary metric name, test score, selected layer, chance level, direction,
    display scale as the task declares it)
    and, with ``ci``, a 95% bootstrap interval (``ci_low``, ``ci_high``) over test tracks,
    seeds combined (:func:`mirprobe.report.stats.record_interval`). ``metric`` picks another
    metric than each task's primary one (a task that lacks it is left empty); ``all_metrics``
    adds a column group ``"<task> · <metric>"`` for each other metric, at the same layer.
    """
    if not records:
        raise UserError("no run records to tabulate; run `mirprobe run` first")
    if all_metrics:
        return _all_metrics(records, ci=ci, records_dir=records_dir, n_boot=n_boot, seed=seed)
    index = by_model_task(records)
    models, tasks = models_and_tasks(records)
    fields = FIELDS + (CI_FIELDS if ci else ())
    columns = pd.MultiIndex.from_product([tasks, fields], names=["task", "field"])
    board = pd.DataFrame(index=pd.Index(models, name="model"), columns=columns, dtype=object)
    for (model, task), rec in index.items():
        board.loc[model, task] = _cell(rec, metric, ci, records_dir, n_boot, seed)
    return board


def _cell(rec: Record, metric: str | None, ci: bool, records_dir: Path | None,
          n_boot: int, seed: int) -> list[Any]:
    name = metric or rec.selection_metric
    best = rec.best
    score = best.test.get(name, np.nan)
    cell = [name, score, best.layer, rec.chance.get(name, np.nan),
            higher_is_better(rec, name), metric_scale(rec, name)]
    if ci:
        from mirprobe.report.stats import record_interval

        lo, hi = record_interval(rec, None, name, records_dir=records_dir, n_boot=n_boot, seed=seed)
        cell += [lo, hi]
    return cell


def _all_metrics(records: Sequence[Record], **kw: Any) -> pd.DataFrame:
    parts = []
    for task, names in metrics_of(records).items():
        mine = [r for r in records if r.task == task]
        for i, name in enumerate(names):
            part = leaderboard(mine, metric=name, **kw)
            if i:
                part = part.rename(columns={task: f"{task}{SEP}{name}"}, level=0)
            parts.append(part)
    board = pd.concat(parts, axis=1)
    return board.reindex(models_and_tasks(records)[0])


def metrics_of(records: Sequence[Record]) -> dict[str, list[str]]:
    """Task → every metric its records report (primary first)."""
    out: dict[str, list[str]] = {}
    for rec in records:
        names = out.setdefault(str(rec.task), [])
        for m in [rec.selection_metric, *rec.best.test]:
            if m not in names:
                names.append(m)
    return out


def aggregate(board: pd.DataFrame) -> pd.DataFrame:
    """Mean over tasks of each model's score normalised between chance (0) and the best
    score any model reached on that task (1); direction-aware, so it also holds for
    lower-is-better metrics. Columns: ``normalised`` (the mean) and ``tasks`` (how many
    tasks it averages: a model missing tasks is averaged over the ones it has)."""
    tasks = [t for t in dict.fromkeys(board.columns.get_level_values(0)) if SEP not in t]
    norm = pd.DataFrame(index=board.index, columns=tasks, dtype=float)
    for task in tasks:
        score = pd.to_numeric(board[(task, "score")], errors="coerce")
        chance = pd.to_numeric(board[(task, "chance")], errors="coerce")
        higher = board[(task, "higher_is_better")].dropna()
        up = bool(higher.iloc[0]) if len(higher) else True
        best = score.max() if up else score.min()
        with np.errstate(divide="ignore", invalid="ignore"):
            norm[task] = (score - chance) / (best - chance)
    norm = norm.replace([np.inf, -np.inf], np.nan)
    return pd.DataFrame({"normalised": norm.mean(axis=1, skipna=True),
                         "tasks": norm.notna().sum(axis=1)}, index=board.index)


def layer_table(records: Sequence[Record], model: str,
                metric: str | None = None) -> pd.DataFrame:
    """Per-layer validation and test scores of ``model`` on each task.

    Rows are layer names (``layer0`` …, ``weighted``); columns a ``(task, field)`` MultiIndex
    with ``val``, ``test`` and ``selected`` (True on the validation-selected layer).
    ``attrs["metrics"]`` maps each task to the metric shown, ``attrs["scales"]`` to its
    declared display scale.
    """
    mine = [r for r in records if r.model == model]
    if not mine:
        known = ", ".join(models_and_tasks(records)[0]) or "none"
        raise UserError(f"no run records for model {model!r}; models with records: {known}")
    index = by_model_task(mine)
    tasks = models_and_tasks(mine)[1]
    layers: dict[str, None] = {}
    for rec in index.values():
        for entry in rec.per_layer:
            layers.setdefault(entry.layer)
    columns = pd.MultiIndex.from_product([tasks, ["val", "test", "selected"]],
                                         names=["task", "field"])
    table = pd.DataFrame(index=pd.Index(list(layers), name="layer"), columns=columns, dtype=object)
    metrics: dict[str, str] = {}
    scales: dict[str, float] = {}
    for (_, task), rec in index.items():
        name = metric or rec.selection_metric
        metrics[task] = name
        scales[task] = metric_scale(rec, name)
        chosen = rec.best.layer
        for entry in rec.per_layer:
            table.loc[entry.layer, task] = [entry.val.get(name, np.nan),
                                            entry.test.get(name, np.nan), entry.layer == chosen]
    table.attrs["metrics"] = metrics
    table.attrs["scales"] = scales
    table.attrs["model"] = model
    return table

"""Reading run records for reports: names, metrics, layers, predictions, the task itself.

Everything a report shows comes from run records (:class:`mirprobe.record.Record`); this
module holds what the report modules share about them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mirprobe.errors import UserError
from mirprobe.plugins import get_task
from mirprobe.record import Record
from mirprobe.results import load_predictions
from mirprobe.tasks.base import Task


def default_work_dir() -> Path:
    """``$MIRPROBE_HOME``, else ``~/.cache/mirprobe``."""
    return Path(os.environ.get("MIRPROBE_HOME") or Path.home() / ".cache" / "mirprobe")


def declaration(record: Record, metric: str | None = None) -> dict[str, Any]:
    """The task's declaration of ``metric`` (default: the selection metric): direction,
    display scale and resampling (``Metric.declaration`` in :mod:`mirprobe.tasks.base`), as the
    record keeps it; from the task plugin itself for records that do not."""
    metric = metric or record.selection_metric
    found = (record.task_info.get("declarations") or {}).get(metric)
    if found is None:
        try:
            found = rebuild_task(record).metric(metric).declaration()
        except KeyError as e:
            raise UserError(f"run record {record.id}: {e.args[0]}") from None
    return found


def higher_is_better(record: Record, metric: str | None = None) -> bool:
    """Direction of ``metric`` (default: the selection metric) as the task declares it."""
    if metric is None or metric == record.selection_metric:
        return bool(record.higher_is_better)
    return bool(declaration(record, metric)["higher_is_better"])


def metric_scale(record: Record, metric: str | None = None) -> float:
    """Display factor of ``metric`` as the task declares it: 100 for 0–1 scores, 1 as is."""
    return float(declaration(record, metric)["scale"])


def fmt(value: float | None, scale: float) -> str:
    """A metric value as displayed: ×100 with one decimal for 0–1 scores (``scale`` 100)."""
    if value is None or value != value:  # None or NaN
        return "–"
    if scale == 100.0:
        return f"{value * 100:.1f}"
    return f"{value:.3g}"


def layer_label(name: str) -> str:
    """Short layer label: ``layer7`` → ``7``, ``weighted`` → ``w``."""
    if name == "weighted":
        return "w"
    return name.removeprefix("layer")


def by_model_task(records: Iterable[Record]) -> dict[tuple[str, str], Record]:
    """Index records by (model, task); of duplicates the most recent wins."""
    out: dict[tuple[str, str], Record] = {}
    for rec in sorted(records, key=lambda r: (r.created, r.id)):
        out[(rec.model, rec.task)] = rec
    return out


def models_and_tasks(records: Iterable[Record]) -> tuple[list[str], list[str]]:
    """Models and tasks in first-seen order."""
    models: dict[str, None] = {}
    tasks: dict[str, None] = {}
    for rec in records:
        models.setdefault(rec.model)
        tasks.setdefault(rec.task)
    return list(models), list(tasks)


def layer_entry(record: Record, layer: str | int | None = None) -> dict[str, Any]:
    """The per-layer entry for ``layer`` (name, ``7`` / ``layer7``, ``w``), or the selected one."""
    if layer is None:
        best = record.best
        return next((e for e in record.per_layer if e["index"] == best["index"]), best)
    key = str(layer)
    for entry in record.per_layer:
        names = {str(entry["layer"]), str(entry["index"]), layer_label(str(entry["layer"]))}
        if key in names or f"layer{key}" == entry["layer"]:
            return entry
    known = ", ".join(str(e["layer"]) for e in record.per_layer)
    raise UserError(f"{record.model} on {record.task} has no layer {layer!r}; "
                    f"layers: {known}")


def rebuild_task(record: Record) -> Task:
    """The record's task plugin, configured as it was for the run."""
    info = dict(record.task_info)
    plugin = (record.config.get("task") or {}).get("plugin") or info.get("name")
    options = {k: v for k, v in info.items()
               if k not in ("name", "kind", "view", "metrics", "declarations", "scoring_note")}
    return get_task(plugin, **options)


def predictions_file(record: Record, records_dir: Path | None = None) -> Path:
    """Where the record's per-track test predictions are."""
    name = record.predictions
    if not name:
        raise UserError(f"run record {record.id} saved no test predictions; "
                        "re-run it to get confidence intervals")
    path = Path(name)
    if not path.is_absolute():
        path = Path(records_dir or default_work_dir() / "records") / path
    if not path.exists():
        raise UserError(f"predictions file {path} of run record {record.id} is missing; "
                        "pass the records folder (--work-dir) or re-run the record")
    return path


def load_record_predictions(record: Record, records_dir: Path | None = None
                            ) -> tuple[dict[int, Any], list[Any], list[str]]:
    """``(per_layer, labels, uids)`` of a record's saved test predictions."""
    return load_predictions(predictions_file(record, records_dir))

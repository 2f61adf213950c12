"""Reading run records for reports: names, metrics, layers, predictions, the task itself.

Everything a report shows comes from run records (see :mod:`mirprobe.results`); this module
is the one place that knows their field names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mirprobe.errors import UserError
from mirprobe.results import load_predictions

#: Metrics shown as-is; every other metric (accuracy, ROC-AUC, AP, F-measure, weighted key
#: score, R²) is a 0–1 score and is shown ×100.
_UNSCALED = re.compile(r"mse|mae|rmse|error|loss|bpm|seconds|_s$", re.IGNORECASE)


def default_work_dir() -> Path:
    """``$MIRPROBE_HOME``, else ``~/.cache/mirprobe``."""
    return Path(os.environ.get("MIRPROBE_HOME") or Path.home() / ".cache" / "mirprobe")


def model_name(record: dict[str, Any]) -> str:
    """Display name of the record's model."""
    model = record.get("model")
    if isinstance(model, dict):
        model = model.get("name") or model.get("id")
    if not model:
        model = record.get("config", {}).get("model", {}).get("name")
    if not model:
        raise UserError(f"run record {record.get('id', '?')} names no model; re-run it with `mirprobe run`")
    return str(model)


def task_name(record: dict[str, Any]) -> str:
    """Display name of the record's task."""
    task = record.get("task")
    if isinstance(task, dict):
        task = task.get("name")
    return str(task or record.get("task_info", {}).get("name") or "?")


def primary_metric(record: dict[str, Any]) -> str:
    """The selection metric (the task's first metric)."""
    metric = record.get("selection_metric") or (record.get("task_info", {}).get("metrics") or [None])[0]
    if not metric:
        raise UserError(f"run record {record.get('id', '?')} has no selection_metric; re-run it")
    return str(metric)


def higher_is_better(record: dict[str, Any]) -> bool:
    return bool(record.get("higher_is_better", True))


def metric_scale(metric: str) -> float:
    """Display factor of a metric: 100 for 0–1 scores, 1 for errors and physical units."""
    return 1.0 if _UNSCALED.search(metric) else 100.0


def fmt(value: float | None, metric: str) -> str:
    """A metric value as displayed: ×100 with one decimal for 0–1 scores."""
    if value is None or value != value:  # None or NaN
        return "–"
    if metric_scale(metric) == 100.0:
        return f"{value * 100:.1f}"
    return f"{value:.3g}"


def layer_label(name: str) -> str:
    """Short layer label: ``layer7`` → ``7``, ``weighted`` → ``w``."""
    if name == "weighted":
        return "w"
    return name.removeprefix("layer")


def by_model_task(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Index records by (model, task); of duplicates the most recent wins."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in sorted(records, key=lambda r: (str(r.get("created", "")), str(r.get("id", "")))):
        out[(model_name(rec), task_name(rec))] = rec
    return out


def models_and_tasks(records: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Models and tasks in first-seen order."""
    models: dict[str, None] = {}
    tasks: dict[str, None] = {}
    for rec in records:
        models.setdefault(model_name(rec))
        tasks.setdefault(task_name(rec))
    return list(models), list(tasks)


def layer_entry(record: dict[str, Any], layer: str | int | None = None) -> dict[str, Any]:
    """The per-layer entry for ``layer`` (name, ``7`` / ``layer7``, ``w``), or the selected one."""
    if layer is None:
        best = record["best"]
        return next((e for e in record["per_layer"] if e["index"] == best["index"]), best)
    key = str(layer)
    for entry in record["per_layer"]:
        names = {str(entry["layer"]), str(entry["index"]), layer_label(str(entry["layer"]))}
        if key in names or f"layer{key}" == entry["layer"]:
            return entry
    known = ", ".join(str(e["layer"]) for e in record["per_layer"])
    raise UserError(f"{model_name(record)} on {task_name(record)} has no layer {layer!r}; "
                    f"layers: {known}")


def rebuild_task(record: dict[str, Any]):  # noqa: ANN201 - tasks.base.Task, imported lazily
    """The record's task plugin, configured as it was for the run."""
    from mirprobe.tasks import get_task

    info = dict(record.get("task_info") or {})
    plugin = (record.get("config", {}).get("task") or {}).get("plugin") or info.get("name")
    options = {k: v for k, v in info.items() if k not in ("name", "kind", "view", "metrics")}
    return get_task(plugin, **options)


def predictions_file(record: dict[str, Any], records_dir: Path | None = None) -> Path:
    """Where the record's per-track test predictions are."""
    name = record.get("predictions")
    if not name:
        raise UserError(f"run record {record.get('id', '?')} saved no test predictions; "
                        "re-run it to get confidence intervals")
    path = Path(name)
    if not path.is_absolute():
        path = Path(records_dir or default_work_dir() / "records") / path
    if not path.exists():
        raise UserError(f"predictions file {path} of run record {record.get('id', '?')} is missing; "
                        "pass the records folder (--work-dir) or re-run the record")
    return path


def load_record_predictions(record: dict[str, Any], records_dir: Path | None = None
                            ) -> tuple[dict[int, Any], list[Any], list[str]]:
    """``(per_layer, labels, uids)`` of a record's saved test predictions."""
    return load_predictions(predictions_file(record, records_dir))

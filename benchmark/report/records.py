"""Reading run records for reports: names, metrics, layers, predictions, the task itself.

Everything a report shows comes from run records (:class:`mirprobe.record.Record`); this
module holds what the report modules share about them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mirprobe.errors import UserError
from mirprobe.record import WEIGHTED, Declaration, LayerResult, Predictions, Record
from mirprobe.tasks.base import Task
from mirprobe.workfolder import WorkFolder, default_root


def default_work_dir() -> Path:
    """``$MIRPROBE_HOME``, else ``~/.cache/mirprobe``."""
    return default_root()


def declaration(record: Record, metric: str | None = None) -> Declaration:
    """The task's declaration of ``metric`` (default: the selection metric): direction,
    display scale and resampling (``Metric.declaration`` in :mod:`mirprobe.tasks.base`), as the
    record keeps it; from the task plugin itself for a metric the record does not declare."""
    metric = metric or record.selection_metric
    found = record.task.declarations.get(metric)
    if found is None:
        try:
            found = Declaration(**record.task.build().metric(metric).declaration())
        except KeyError as e:
            raise UserError(f"run record {record.id}: {e.args[0]}") from None
    return found


def higher_is_better(record: Record, metric: str | None = None) -> bool:
    """Direction of ``metric`` (default: the selection metric) as the task declares it."""
    if metric is None or metric == record.selection_metric:
        return bool(record.higher_is_better)
    return declaration(record, metric).higher_is_better


def metric_scale(record: Record, metric: str | None = None) -> float:
    """Display factor of ``metric`` as the task declares it: 100 for 0–1 scores, 1 as is."""
    return float(declaration(record, metric).scale)


def fmt(value: float | None, scale: float) -> str:
    """A metric value as displayed: ×100 with one decimal for 0–1 scores (``scale`` 100)."""
    if value is None or value != value:  # None or NaN
        return "–"
    if scale == 100.0:
        return f"{value * 100:.1f}"
    return f"{value:.3g}"


def layer_label(name: str) -> str:
    """Short layer label: ``layer7`` → ``7``, ``weighted`` → ``w``."""
    if name == WEIGHTED:
        return "w"
    return name.removeprefix("layer")


def by_model_task(records: Iterable[Record]) -> dict[tuple[str, str], Record]:
    """Index records by (model, task); of duplicates the most recent wins."""
    out: dict[tuple[str, str], Record] = {}
    for rec in sorted(records, key=lambda r: (r.created, r.id)):
        out[(rec.model, str(rec.task))] = rec
    return out


def models_and_tasks(records: Iterable[Record]) -> tuple[list[str], list[str]]:
    """Models and tasks in first-seen order."""
    models: dict[str, None] = {}
    tasks: dict[str, None] = {}
    for rec in records:
        models.setdefault(rec.model)
        tasks.setdefault(str(rec.task))
    return list(models), list(tasks)


def layer_entry(record: Record, layer: str | int | None = None) -> LayerResult:
    """The layer result for ``layer`` (name, ``7`` / ``layer7``, ``w``), or the selected one."""
    if layer is None:
        return record.best
    key = str(layer)
    for entry in record.per_layer:
        if key in (entry.layer, str(entry.index), layer_label(entry.layer)) \
                or f"layer{key}" == entry.layer:
            return entry
    known = ", ".join(e.layer for e in record.per_layer)
    raise UserError(f"{record.model} on {record.task} has no layer {layer!r}; "
                    f"layers: {known}")


def rebuild_task(record: Record) -> Task:
    """The record's task plugin, constructed and fitted as it was for the run."""
    return record.task.build()


def predictions_file(record: Record, records_dir: Path | None = None) -> Path:
    """Where the record's per-track test predictions are."""
    name = record.predictions
    if not name:
        raise UserError(f"run record {record.id} saved no test predictions; "
                        "re-run it to get confidence intervals")
    path = Path(name)
    if not path.is_absolute():
        path = Path(records_dir or WorkFolder.at().records) / path
    if not path.exists():
        raise UserError(f"predictions file {path} of run record {record.id} is missing; "
                        "pass the records folder (--work-dir) or re-run the record")
    return path


def load_record_predictions(record: Record, records_dir: Path | None = None) -> Predictions:
    """A record's saved test predictions."""
    return Predictions.read(predictions_file(record, records_dir))

"""Paired comparison of two models, or two layers, task by task on the same test tracks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mirprobe.errors import UserError
from mirprobe.record import Record
from mirprobe.report.records import (
    by_model_task,
    higher_is_better,
    layer_entry,
    load_record_predictions,
    metric_scale,
    models_and_tasks,
)
from mirprobe.report.stats import N_BOOT, SEED, align, paired_bootstrap, take

COLUMNS = ("metric", "layer_a", "layer_b", "a", "b", "diff", "ci_low", "ci_high", "p_a_better",
           "tracks", "higher_is_better", "scale")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``MODEL`` (its validation-selected layer per task) or ``MODEL@LAYER`` (``@7``,
    ``@layer7``, ``@weighted``). A checkpoint of a series is the model ``SERIES@step=N``."""
    model, sep, layer = spec.rpartition("@")
    if not sep or layer.startswith("step="):
        return spec, None
    if not model or not layer:
        raise UserError(f"bad model spec {spec!r}: write MODEL or MODEL@LAYER (e.g. MERT-v1-95M@7)")
    return model, layer


def compare(records: Sequence[Record], spec_a: str, spec_b: str, *,
            tasks: Sequence[str] | None = None, metric: str | None = None,
            records_dir: Path | None = None, n_boot: int = N_BOOT, seed: int = SEED
            ) -> pd.DataFrame:
    """One row per task both sides were run on: A, B, A − B with its 95% paired-bootstrap
    interval and P(A better), raw metric values (see :data:`COLUMNS`)."""
    index = by_model_task(records)
    (model_a, layer_a), (model_b, layer_b) = parse_spec(spec_a), parse_spec(spec_b)
    known = models_and_tasks(records)[0]
    for model in (model_a, model_b):
        if model not in known:
            raise UserError(f"no run records for model {model!r}; models with records: "
                            f"{', '.join(known) or 'none'}")
    shared = [t for t in models_and_tasks(records)[1]
              if (model_a, t) in index and (model_b, t) in index and (not tasks or t in tasks)]
    if not shared:
        raise UserError(f"{model_a} and {model_b} share no task with run records; run both on "
                        "the same task first")
    rows = {t: _compare_task(index[(model_a, t)], layer_a, index[(model_b, t)], layer_b, metric,
                             records_dir, n_boot, seed) for t in shared}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(COLUMNS))
    out.index.name = "task"
    out.attrs |= {"a": spec_a, "b": spec_b, "n_boot": n_boot, "seed": seed}
    return out


def _compare_task(rec_a: Record, layer_a: str | None, rec_b: Record,
                  layer_b: str | None, metric: str | None, records_dir: Path | None,
                  n_boot: int, seed: int) -> list[Any]:
    entry_a, entry_b = layer_entry(rec_a, layer_a), layer_entry(rec_b, layer_b)
    preds_a = load_record_predictions(rec_a, records_dir)
    preds_b = load_record_predictions(rec_b, records_dir)
    order = align(preds_a.uids, preds_a.labels, preds_b.uids, preds_b.labels)
    name = metric or rec_a.selection_metric
    up = higher_is_better(rec_a, name)
    b_in_a_order = [take(p, order) for p in preds_b.seeds(entry_b.layer)]
    cmp = paired_bootstrap(rec_a.task.build(), preds_a.seeds(entry_a.layer), b_in_a_order,
                           preds_a.labels, preds_a.uids, name, higher_is_better=up,
                           n_boot=n_boot, seed=seed)
    return [name, entry_a.layer, entry_b.layer, cmp.a, cmp.b, cmp.diff, cmp.low, cmp.high,
            cmp.p_a_better, cmp.tracks, up, metric_scale(rec_a, name)]

"""Robustness tables and plots: each deformed record beside its clean record.

A deformed record (:mod:`mirprobe.robustness`; its ``config`` holds ``deformation`` and
``clean_record``) was scored with the same heads as its clean record, so per layer the score's
**drop** is ``clean − deformed`` in the metric's direction (positive: worse under the
deformation). At the layer selected on clean validation the drop gets a 95% paired percentile
bootstrap interval: the same resamples of the test tracks score both (the deformed labels where
the deformation moved them, e.g. stretched beats). The robustness view
(:func:`mirprobe.report.views.robustness_view`) shows these tables and the heatmap in the run's
report and in every format of ``mirprobe publish``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mirprobe.errors import UserError
from mirprobe.record import Record
from mirprobe.report.records import fmt, layer_label, load_record_predictions, metric_scale
from mirprobe.report.stats import (
    N_BOOT,
    SEED,
    cluster_weights,
    percentile_interval,
    resampled_metric,
)

CAPTION = ("Robustness: test score of the layer selected on clean validation under each "
           "deformation, and its drop from the clean score (clean − deformed in the metric's "
           "direction: positive is worse), ×100 for 0–1 metrics. Brackets: 95% paired percentile "
           "bootstrap interval of the drop over test tracks ({n_boot} resamples, seed {seed}).")
LAYERS_CAPTION = ("Robustness per layer: drop from the clean test score under each deformation "
                  "(clean − deformed, positive is worse), ×100 for 0–1 metrics; * marks the layer "
                  "selected on clean validation.")


def is_deformed(record: Record) -> bool:
    """A record of the robustness protocol scored on a deformed test set."""
    return "deformation" in record.config


def deformation_label(record: Record) -> str:
    """The deformation's display name, as in the record's task name after ``@``."""
    return str(record.task).rpartition("@")[2]


def pairs(records: Sequence[Record]) -> list[tuple[Record, Record]]:
    """``(clean, deformed)`` record pairs; a deformed record whose clean one is absent is skipped."""
    clean = {r.id: r for r in records if not is_deformed(r)}
    return [(clean[r.config["clean_record"]], r) for r in records
            if is_deformed(r) and r.config.get("clean_record") in clean]


def drop_table(records: Sequence[Record], *, ci: bool = True, records_dir: Path | None = None,
               n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """One row per model × task × deformation × layer: clean and deformed test scores of the
    selection metric, the drop, and at the selected layer (``selected``) its interval."""
    rows = []
    for clean, deformed in pairs(records):
        metric, sign = clean.selection_metric, 1.0 if clean.higher_is_better else -1.0
        by_layer = {e.layer: e for e in clean.per_layer}
        for e in deformed.per_layer:
            c = by_layer.get(e.layer)
            if c is None:
                continue
            selected = e.layer == clean.selection.layer
            lo, hi = (drop_interval(clean, deformed, e.layer, records_dir, n_boot, seed)
                      if ci and selected else (np.nan, np.nan))
            rows.append({"model": clean.model, "task": str(clean.task),
                         "deformation": deformation_label(deformed), "layer": e.layer,
                         "index": e.index, "selected": selected, "metric": metric,
                         "clean": c.test[metric], "deformed": e.test[metric],
                         "drop": sign * (c.test[metric] - e.test[metric]),
                         "drop_low": lo, "drop_high": hi,
                         "scale": metric_scale(clean, metric), "record": deformed.id})
    return pd.DataFrame(rows)


def drop_interval(clean: Record, deformed: Record, layer: str, records_dir: Path | None,
                  n_boot: int, seed: int) -> tuple[float, float]:
    """95% paired bootstrap interval of the drop at ``layer`` (NaN when the two records were
    scored on different tracks, e.g. a deformed track failed)."""
    a = load_record_predictions(clean, records_dir)
    b = load_record_predictions(deformed, records_dir)
    if list(a.uids) != list(b.uids):
        return np.nan, np.nan
    metric, sign = clean.selection_metric, 1.0 if clean.higher_is_better else -1.0
    try:
        w = cluster_weights(a.uids, n_boot, seed)
    except UserError:
        return np.nan, np.nan
    _, sa = resampled_metric(clean.task.build(), a.seeds(layer), a.labels, metric, w)
    _, sb = resampled_metric(deformed.task.build(), b.seeds(layer), b.labels, metric, w)
    return percentile_interval(sign * (sa - sb))


def selected_display(table: pd.DataFrame) -> pd.DataFrame:
    """Model × task rows, one column per deformation: ``score (−drop [low, high])`` at the
    selected layer; the clean score in its own column."""
    sel = table[table["selected"]]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for _, r in sel.iterrows():
        s = float(r["scale"])
        row = rows.setdefault((r["model"], f"{r['task']} ({r['metric']}) @{layer_label(r['layer'])}"),
                              {"clean": fmt(r["clean"], s)})
        ci = (f" [{fmt(r['drop_low'], s)}, {fmt(r['drop_high'], s)}]"
              if np.isfinite(r["drop_low"]) else "")
        row[r["deformation"]] = f"{fmt(r['deformed'], s)} (drop {fmt(r['drop'], s)}{ci})"
    out = pd.DataFrame.from_dict(rows, orient="index").fillna("–")
    out.index = [f"{m} × {t}" for m, t in out.index]
    out.index.name = "model × task (metric) @layer"
    return out


def layers_display(table: pd.DataFrame) -> pd.DataFrame:
    """Model × task × layer rows, one column per deformation: the drop."""
    rows: dict[tuple[str, str, int, str], dict[str, str]] = {}
    for _, r in table.iterrows():
        name = layer_label(r["layer"]) + ("*" if r["selected"] else "")
        row = rows.setdefault((r["model"], r["task"], r["index"], name),
                              {"clean": fmt(r["clean"], float(r["scale"]))})
        row[r["deformation"]] = fmt(r["drop"], float(r["scale"]))
    out = pd.DataFrame.from_dict(rows, orient="index").fillna("–")
    out.index = [f"{m} × {t} · {n}" for m, t, _, n in out.index]
    out.index.name = "model × task · layer"
    return out


def drop_heatmap(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One panel per model: the drop at the selected layer, task × deformation."""
    from mirprobe.report.plots import plt, save_figure

    sel = table[table["selected"]]
    models = list(dict.fromkeys(sel["model"]))
    if not models:
        return []
    fig, axes = plt.subplots(1, len(models), squeeze=False,
                             figsize=(1.0 + 1.1 * sel["deformation"].nunique() * len(models),
                                      1.0 + 0.5 * sel["task"].nunique()))
    for ax, model in zip(axes[0], models, strict=True):
        m = sel[sel["model"] == model]
        grid = m.pivot_table(index="task", columns="deformation", values="drop", sort=False)
        scale = m.groupby("task")["scale"].first().reindex(grid.index).to_numpy()[:, None]
        values = grid.to_numpy() * scale
        lim = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
        ax.imshow(values, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=7)
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.3g}", ha="center", va="center", fontsize=6)
        ax.set_title(f"{model}: drop at the selected layer", fontsize=8)
    return save_figure(fig, out_dir, "robustness_drop")

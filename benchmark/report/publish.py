"""``mirprobe publish``: every output format from one set of run records.

``<out>/`` receives ``leaderboard.md`` (README-ready), ``leaderboard.tex`` (booktabs, best
per column in bold), ``leaderboard.csv``, ``layers.csv``, ``results.json`` (raw values and
provenance), ``plots/*.png|svg`` (layer curves per task, model × task heatmap) and
``index.html`` (one self-contained page). All formats show the same rounded numbers.

The protocol views (:mod:`mirprobe.report.views`: robustness to deformed test sets, probe vs
k-NN vs few-shot, data-efficiency curves, the work folder's CKA matrices, …) add ``<view>.csv``,
a section in ``leaderboard.md``, their tables in ``leaderboard.tex``, their figures in ``plots/``,
their rows in ``results.json`` and a section of the page.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mirprobe
from mirprobe.record import Record
from mirprobe.report import html, latex, plots
from mirprobe.report.protocols import DEFORMED, FEWSHOT, FRACTION, KNN, protocol_of
from mirprobe.report.records import models_and_tasks
from mirprobe.report.render import (
    AGG_COLUMN,
    LAYERS_CAPTION,
    layers_csv,
    layers_display,
    leaderboard_caption,
    leaderboard_csv,
    leaderboard_display,
    markdown_table,
    task_header,
    view_tables,
)
from mirprobe.report.series import leaderboard_records, read_manifests
from mirprobe.report.series_page import series_sections
from mirprobe.report.stats import N_BOOT, SEED
from mirprobe.report.tables import aggregate, layer_table, leaderboard
from mirprobe.report.views import Context, View, build_views
from mirprobe.workfolder import atomic_write_json


def best_mask(board: pd.DataFrame, display: pd.DataFrame) -> pd.DataFrame:
    """True on each column's best model (direction-aware; ties all marked)."""
    mask = pd.DataFrame(False, index=display.index, columns=display.columns)
    for task in dict.fromkeys(board.columns.get_level_values(0)):
        sub = board[task]
        metric = next((m for m in sub["metric"] if isinstance(m, str)), "?")
        score = pd.to_numeric(sub["score"], errors="coerce").round(6)
        if score.notna().any():
            up = bool(sub["higher_is_better"].dropna().iloc[0])
            best = score.max() if up else score.min()
            mask.loc[score.index[score == best], task_header(task, metric)] = True
    if AGG_COLUMN in display.columns:
        agg = aggregate(board)["normalised"].round(6)
        mask.loc[agg.index[agg == agg.max()], AGG_COLUMN] = True
    return mask


def provenance(records: Sequence[Record]) -> pd.DataFrame:
    """Where each number comes from: record id, dataset (folder name and digest, never a local
    path), features, software, when."""
    rows = []
    for rec in records:
        v = rec.versions
        rows.append({"model": rec.model, "task": str(rec.task), "record": rec.id,
                     "created": rec.created, "dataset": rec.dataset.folder,
                     "jsonl": rec.dataset.jsonl, "dataset digest": rec.dataset.digest,
                     "feature entry": rec.feature_entry, "test tracks": rec.test_units,
                     "mirprobe": v.get("mirprobe", ""), "torch": v.get("torch", ""),
                     "mir_eval": v.get("mir_eval", "")})
    return pd.DataFrame(rows).set_index("model")


#: Protocols whose records publish shows in their own views, not in the leaderboard.
SHOWN_APART = (KNN, FEWSHOT, FRACTION, DEFORMED)


def publish(records: Sequence[Record], out_dir: Path, *, records_dir: Path | None = None,
            ci: bool = True, all_metrics: bool = False, n_boot: int = N_BOOT, seed: int = SEED,
            title: str = "mirprobe results") -> dict[str, Path]:
    """Write every output format into ``out_dir``; returns name → path.

    Checkpoint series of the work folder (manifests beside ``records_dir``) get their own
    sections; in the tables above them each series shows only its latest step."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifests = read_manifests(Path(records_dir).parent) if records_dir else []
    everything = leaderboard_records(records, manifests)  # for the protocol views
    # k-NN, few-shot, data-efficiency and deformed records have their own views below; in the
    # leaderboard they would be columns of their own and skew the normalised mean over tasks.
    records = [r for r in everything if protocol_of(r)[0] not in SHOWN_APART]
    board = leaderboard(records, ci=ci, all_metrics=all_metrics, records_dir=records_dir,
                        n_boot=n_boot, seed=seed)
    shown = leaderboard_display(board)
    best = best_mask(board, shown)
    caption = leaderboard_caption(records, ci=ci, n_boot=n_boot, seed=seed)
    layer_tables = [layer_table(records, m) for m in models_and_tasks(records)[0]]
    prov = provenance(records)
    figures = plots.layer_curves(records, out / "plots")
    heat = plots.heatmap(board, out / "plots")
    paths = {"md": out / "leaderboard.md", "tex": out / "leaderboard.tex",
             "csv": out / "leaderboard.csv", "layers_csv": out / "layers.csv",
             "json": out / "results.json", "html": out / "index.html"}

    method = (f"Intervals: percentile bootstrap over test tracks ({n_boot} resamples, seed {seed}); "
              "clips of one song are resampled together; with several seeds the metric is "
              "averaged over seeds within each resample.")
    md = [f"## Leaderboard\n\n{markdown_table(shown)}\n{caption}\n", "## Layers\n"]
    md += [f"### {t.attrs['model']}\n\n{markdown_table(layers_display(t))}" for t in layer_tables]
    md.append(f"{LAYERS_CAPTION}\n\n{method}\n")
    views = build_views(Context(everything, records_dir, ci=ci, n_boot=n_boot, seed=seed,
                                plots=out / "plots"))
    md += [_view_md(v, out) for v in views]
    paths["md"].write_text("\n".join(md))

    tex = [latex.table(shown, caption, "tab:leaderboard", best)]
    tex += [latex.table(layers_display(t), f"{t.attrs['model']}: {LAYERS_CAPTION}",
                        f"tab:layers-{plots.slug(t.attrs['model'])}") for t in layer_tables]
    tex += [latex.table(t.display, t.caption, f"tab:{t.label(v.name)}") for v in views
            for t in v.tables]
    paths["tex"].write_text("% requires \\usepackage{booktabs}\n" + "\n".join(tex))

    leaderboard_csv(board).to_csv(paths["csv"], index=False)
    all_layers = pd.concat([layers_csv(t) for t in layer_tables])
    all_layers.to_csv(paths["layers_csv"], index=False)
    for v in views:
        paths[f"{v.name}_csv"] = out / f"{v.name}.csv"
        v.csv.to_csv(paths[f"{v.name}_csv"], index=False)
    atomic_write_json(paths["json"], {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S"), "mirprobe": mirprobe.__version__,
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95, "unit": "test track",
                      "clusters": "ori_uid", "interval": "percentile"} if ci else None,
        "leaderboard": _raw_rows(board), "leaderboard_display": leaderboard_csv(board).to_dict("records"),
        "aggregate": aggregate(board).reset_index().to_dict("records"),
        "layers": all_layers.to_dict("records"),
        "provenance": prov.reset_index().to_dict("records"),
        **{v.name: v.csv.astype(object).where(v.csv.notna(), None).to_dict("records")
           for v in views}})

    sections = [("Leaderboard", html.table(shown, caption=caption, best=best, table_id="leaderboard")),
                ("Plots", html.figure(heat[0], "Model × task heatmap")
                 + "".join(html.figure(p[0], f"Layer curves: {t}") for t, p in figures.items()))]
    sections += [(f"Layers: {t.attrs['model']}", html.table(layers_display(t), caption=LAYERS_CAPTION))
                 for t in layer_tables]
    sections += [(v.title, "".join(html.table(t.display, caption=t.caption, table_id=t.label(v.name))
                                   for t in v.tables)
                   + "".join(html.figure(p, c) for p, c in v.figures)) for v in views]
    sections += series_sections(manifests, out, Path(records_dir or ""), ci=ci, n_boot=n_boot,
                                seed=seed)
    sections.append(("Provenance", html.table(prov.astype(str), caption=method)))
    paths["html"].write_text(html.page(title, sections))
    paths["plots"] = out / "plots"
    return paths


def _view_md(view: View, out: Path) -> str:
    """A view's Markdown section: its tables, captions and figures (linked, relative to ``out``)."""
    figures = "".join(f"![{c}]({p.relative_to(out).as_posix()})\n" for p, c in view.figures)
    return f"## {view.title}\n\n{view_tables(view)}" + (f"\n{figures}" if figures else "")


def _raw_rows(board: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for model in board.index:
        for task in dict.fromkeys(board.columns.get_level_values(0)):
            cell = board.loc[model, task]
            if isinstance(cell["metric"], str):
                rows.append({"model": model, "task": task,
                             **{k: _plain(v) for k, v in cell.items()}})
    return rows


def _plain(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.generic):
        return v.item()
    return v

"""Report views beyond the leaderboard: the tables (and figures) of each protocol, written by the
run's report (tables only; a robustness run's report draws its figure too) and by
``mirprobe publish`` (every format).

Each view is a function ``(Context) → View | None`` (None: no records of its kind) listed in
:data:`VIEWS`; a new protocol's tables or plots are one more function there. A view fills the
same fields for every format, so the run folder, Markdown, LaTeX, CSV and the HTML page show the
same rounded numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mirprobe.record import Record


@dataclass
class Context:
    """What a view may read: the records shown, the work folder's records folder (predictions,
    the similarity outputs beside it), the interval settings and where figures go (None: no
    figures, as in the run's report)."""

    records: Sequence[Record]
    records_dir: Path | None = None
    ci: bool = False
    n_boot: int = 1000
    seed: int = 0
    plots: Path | None = None


@dataclass
class Table:
    """One table of a view: the string frame every format shows and its caption. ``key`` tells
    a view's further tables apart (LaTeX label and HTML id ``<view>-<key>``)."""

    display: pd.DataFrame
    caption: str
    key: str = ""

    def label(self, view: str) -> str:
        return f"{view}-{self.key}" if self.key else view


@dataclass
class View:
    """One section: ``name`` is the file stem of its tables (``<name>.md``, ``<name>.csv``); the
    first table is its summary (the one a run prints)."""

    name: str
    title: str
    tables: list[Table]
    csv: pd.DataFrame  # long form, values as displayed (robustness: raw values, as its run writes)
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (PNG path, caption)


def protocol_view(ctx: Context) -> View | None:
    """Probe vs k-NN vs few-shot (n = 5) at the selected layer."""
    from mirprobe.report.protocols import (
        protocol_caption,
        protocol_csv,
        protocol_display,
        protocol_table,
    )

    table = protocol_table(ctx.records)
    if table.empty or table[["knn_record", "fewshot_record"]].isna().all().all():
        return None  # probes alone: the leaderboard shows them
    return View("protocols", "Protocols: probe, k-NN, few-shot",
                [Table(protocol_display(table), protocol_caption(table))], protocol_csv(table))


def efficiency_view(ctx: Context) -> View | None:
    """Data-efficiency curves: score by train share, with intervals when asked."""
    from mirprobe.report.protocol_plots import efficiency_curves
    from mirprobe.report.protocols import (
        EFFICIENCY_CAPTION,
        efficiency_csv,
        efficiency_display,
        efficiency_table,
    )

    table = efficiency_table(ctx.records, ci=ctx.ci, records_dir=ctx.records_dir,
                             n_boot=ctx.n_boot, seed=ctx.seed)
    if table.empty:
        return None
    caption = EFFICIENCY_CAPTION + (
        f" Brackets: 95% percentile-bootstrap interval over test tracks ({ctx.n_boot} "
        f"resamples, seed {ctx.seed})." if ctx.ci else "")
    figures = []
    if ctx.plots is not None:
        figures = [(paths[0], f"Data efficiency: {task}")
                   for task, paths in efficiency_curves(table, ctx.plots).items()]
    return View("efficiency", "Data efficiency", [Table(efficiency_display(table), caption)],
                efficiency_csv(table), figures)


def similarity_view(ctx: Context) -> View | None:
    """The CKA matrices ``mirprobe similarity`` wrote into the work folder (beside the records
    folder), each drawn again as a heatmap, and one summary row per matrix."""
    from mirprobe.report.protocol_plots import cka_heatmap
    from mirprobe.report.similarity import CAPTION, long_form, read_matrices, summary

    found = read_matrices(Path(ctx.records_dir).parent) if ctx.records_dir else []
    if not found:
        return None
    figures = []
    for name, matrix, info in found if ctx.plots is not None else []:
        models, task = info.get("models") or [name], info.get("task", name)
        paths = cka_heatmap(matrix, ctx.plots, f"cka_{name}", rows=models[0], cols=models[-1],
                            title=f"linear CKA (unbiased) · {task}")
        figures.append((paths[0], f"CKA: {' vs '.join(dict.fromkeys(models))} ({task})"))
    display = pd.DataFrame([summary(*f) for f in found]).set_index("matrix")
    return View("similarity", "Layer similarity (CKA)", [Table(display, CAPTION)],
                pd.concat([long_form(*f) for f in found], ignore_index=True), figures)


def robustness_view(ctx: Context) -> View | None:
    """Deformed test sets beside their clean records: the selected layer's score and drop (with
    its paired interval when asked), the drop of every layer, and the drop heatmap."""
    from mirprobe.report.robustness import (
        CAPTION,
        LAYERS_CAPTION,
        drop_heatmap,
        drop_table,
        layers_display,
        selected_display,
    )

    table = drop_table(ctx.records, ci=ctx.ci, records_dir=ctx.records_dir, n_boot=ctx.n_boot,
                       seed=ctx.seed)
    if table.empty:
        return None
    figures = []
    if ctx.plots is not None:
        figures = [(drop_heatmap(table, ctx.plots)[0], "Drop at the selected layer")]
    tables = [Table(selected_display(table), CAPTION.format(n_boot=ctx.n_boot, seed=ctx.seed)),
              Table(layers_display(table), LAYERS_CAPTION, key="layers")]
    return View("robustness", "Robustness", tables, table, figures)


#: The views, in the order of the report.
VIEWS: list[Callable[[Context], View | None]] = [robustness_view, protocol_view, efficiency_view,
                                                 similarity_view]


def build_views(ctx: Context) -> list[View]:
    """Every view that has something to show."""
    return [v for v in (make(ctx) for make in VIEWS) if v is not None]

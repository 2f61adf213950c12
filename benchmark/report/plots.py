"""Figures: layer curves per task (one line per model) and the model × task heatmap.

Each figure is saved as PNG and SVG; matplotlib runs on the Agg backend (no display).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mirprobe.record import LayerResult, Record  # noqa: E402
from mirprobe.report.records import (  # noqa: E402
    by_model_task,
    fmt,
    layer_label,
    metric_scale,
    models_and_tasks,
)
from mirprobe.report.tables import SEP, aggregate  # noqa: E402

FORMATS = ("png", "svg")


def slug(text: str) -> str:
    """A file-name-safe form of a task or model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def save_figure(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``.svg`` (no date in the SVG: reproducible files) and close it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in FORMATS:
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def _x(entry: LayerResult, last: int) -> float:
    """Plot position: the layer's index; the weighted sum after the last layer."""
    return last + 1.5 if entry.weighted else float(entry.index)


def layer_curves(records: Sequence[Record], out_dir: Path) -> dict[str, list[Path]]:
    """One figure per task: test (solid) and validation (dashed) score per layer for each
    model, the validation-selected layer starred. Returns task → saved paths."""
    index = by_model_task(records)
    models, tasks = models_and_tasks(records)
    out: dict[str, list[Path]] = {}
    for task in tasks:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        metric, scale = "?", 100.0
        ticks: dict[float, str] = {}
        mine = [m for m in models if (m, task) in index]
        last = max((e.index for m in mine for e in index[(m, task)].per_layer
                    if not e.weighted), default=0)
        for model in mine:
            rec = index[(model, task)]
            metric = rec.selection_metric
            scale = metric_scale(rec, metric)
            layers = [e for e in rec.per_layer if not e.weighted]
            colour = f"C{models.index(model) % 10}"  # one colour per model in every figure
            xs = [_x(e, last) for e in layers]
            for e in layers:  # models naming a position differently share its label
                label, x = layer_label(e.layer), _x(e, last)
                ticks[x] = label if ticks.get(x, label) == label else f"{ticks[x]}/{label}"
            for test, style in ((True, "-"), (False, "--")):
                ys = [(e.test if test else e.val).get(metric, np.nan) * scale for e in layers]
                ax.plot(xs, ys, style, color=colour, marker="o" if test else None,
                        ms=3, lw=1.6 if test else 1, label=model if test else None)
            for e in rec.per_layer:
                if e.weighted:
                    ticks[_x(e, last)] = "w"
                    ax.plot(_x(e, last), e.test.get(metric, np.nan) * scale, "D", color=colour)
            sel = rec.best
            ax.plot(_x(sel, last), sel.test.get(metric, np.nan) * scale, "*", color=colour,
                    ms=14, mec="black", mew=0.6)
        step = max(1, len(ticks) // 13)  # at most about 13 labels
        shown = sorted(set(sorted(ticks)[::step]) | ({max(ticks)} if ticks else set()))
        ax.set_xticks(shown, [ticks[x] for x in shown])
        ax.set_xlabel("layer (w, D: weighted sum of layers; ★: selected on validation)")
        ax.set_ylabel(f"{metric}" + (" ×100" if scale == 100 else ""))
        ax.set_title(f"{task}: test (solid) and validation (dashed) by layer")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        out[task] = save_figure(fig, out_dir, f"layers_{slug(task)}")
    return out


def heatmap(board: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Model × task heatmap: colour = score normalised between chance (0) and the best model
    (1); each cell annotated with its score (×100 for 0–1 metrics)."""
    tasks = [t for t in dict.fromkeys(board.columns.get_level_values(0)) if SEP not in t]
    norm = np.full((len(board.index), len(tasks)), np.nan)
    text = [["–"] * len(tasks) for _ in board.index]
    for j, task in enumerate(tasks):
        single = aggregate(board[[task]])
        for i, model in enumerate(board.index):
            cell = board.loc[model, task]
            if isinstance(cell["metric"], str):
                norm[i, j] = single.loc[model, "normalised"]
                text[i][j] = fmt(cell["score"], float(cell["scale"]))
    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(tasks), 0.9 + 0.45 * len(board.index)))
    im = ax.imshow(np.clip(norm, 0, 1), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(len(board.index)):
        for j in range(len(tasks)):
            v = norm[i, j]
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=9,
                    color="black" if np.isfinite(v) and v > 0.6 else "white")
    metrics = [next((m for m in board[t]["metric"] if isinstance(m, str)), "?") for t in tasks]
    ax.set_xticks(range(len(tasks)), [f"{t}\n({m})" for t, m in zip(tasks, metrics, strict=True)],
                  fontsize=8)
    ax.set_yticks(range(len(board.index)), list(board.index), fontsize=8)
    fig.colorbar(im, ax=ax, label="(score − chance) / (best − chance)")
    ax.set_title("Test score of the validation-selected layer")
    return save_figure(fig, out_dir, "heatmap")

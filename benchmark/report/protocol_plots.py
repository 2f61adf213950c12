"""Figures of the protocols beyond one probe: data-efficiency curves and CKA heatmaps.

Saved as PNG and SVG like every report figure (:func:`mirprobe.report.plots.save_figure`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mirprobe.report.plots import plt, save_figure, slug


def efficiency_curves(table: pd.DataFrame, out_dir: Path) -> dict[str, list[Path]]:
    """One figure per task of :func:`mirprobe.report.protocols.efficiency_table`: score against
    the train share (log axis), one line per model and head, bars for the 95% intervals when
    the table has them. Returns task → saved paths."""
    out: dict[str, list[Path]] = {}
    if table.empty:
        return out
    models = list(dict.fromkeys(table["model"]))
    for task, sub in table.groupby("task", sort=False):
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        scale = float(sub["scale"].iloc[0])
        for (model, head), line in sub.groupby(["model", "head"], sort=False):
            x = line["share"].to_numpy() * 100
            y = line["score"].to_numpy(dtype=float) * scale
            lo = line["ci_low"].to_numpy(dtype=float) * scale
            hi = line["ci_high"].to_numpy(dtype=float) * scale
            colour = f"C{models.index(model) % 10}"
            label = model if sub["head"].nunique() == 1 else f"{model} ({head})"
            if np.isfinite(lo).all():
                ax.errorbar(x, y, yerr=[y - lo, hi - y], color=colour, marker="o", ms=3,
                            capsize=3, label=label)
            else:
                ax.plot(x, y, color=colour, marker="o", ms=3, label=label)
        ax.set_xscale("log")
        shares = sorted(sub["share"].unique() * 100)
        ax.set_xticks(shares, [f"{s:g}%" for s in shares])
        metric = sub["metric"].iloc[0]
        ax.set_xlabel("share of the train tracks")
        ax.set_ylabel(f"{metric}" + (" ×100" if scale == 100 else ""))
        ax.set_title(f"{task}: test score by train share (selected layer)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        out[str(task)] = save_figure(fig, out_dir, f"efficiency_{slug(str(task))}")
    return out


def cka_heatmap(matrix: pd.DataFrame, out_dir: Path, stem: str, *, rows: str, cols: str,
                title: str) -> list[Path]:
    """A layer × layer CKA matrix as a heatmap (rows: ``rows``' layers, bottom up)."""
    n, m = matrix.shape
    fig, ax = plt.subplots(figsize=(1.8 + 0.4 * m, 1.2 + 0.35 * n))
    values = matrix.to_numpy(dtype=float)
    im = ax.imshow(values, origin="lower", cmap="viridis", vmin=min(0.0, np.nanmin(values)),
                   vmax=1.0)
    ax.set_xticks(range(m), list(matrix.columns), rotation=90, fontsize=7)
    ax.set_yticks(range(n), list(matrix.index), fontsize=7)
    ax.set_ylabel(rows)
    ax.set_xlabel(cols)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="CKA")
    return save_figure(fig, out_dir, stem)

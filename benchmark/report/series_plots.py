"""Figures of a checkpoint series: score against training step with its interval band, and a
step × layer heatmap per task. PNG and SVG, matplotlib on the Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mirprobe.report.plots import save_figure, slug  # noqa: E402
from mirprobe.report.records import layer_label  # noqa: E402
from mirprobe.report.series import tasks_of  # noqa: E402

#: Annotate heatmap cells with their values up to this many cells.
MAX_ANNOTATED = 400


def _unit(metric: str, scale: float) -> str:
    return metric + (" ×100" if scale == 100 else "")


def score_curves(table: pd.DataFrame, out_dir: Path, name: str) -> dict[str, list[Path]]:
    """Per task: the validation-selected layer's test score against the training step, its 95%
    interval as a band, the selected layer beside each point and chance as a dotted line."""
    out: dict[str, list[Path]] = {}
    for task in tasks_of(table):
        sub = table[table["task"] == task].sort_values("step")
        metric = str(sub["metric"].iloc[0])
        scale = float(sub["scale"].iloc[0])
        steps = sub["step"].to_numpy(dtype=float)
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        if np.isfinite(sub["ci_low"].to_numpy(dtype=float)).any():
            ax.fill_between(steps, sub["ci_low"].to_numpy(dtype=float) * scale,
                            sub["ci_high"].to_numpy(dtype=float) * scale, alpha=0.25, color="C0",
                            lw=0, label="95% interval")
        ax.plot(steps, sub["score"].to_numpy(dtype=float) * scale, "-o", color="C0", ms=4,
                label="test score (layer selected on validation)")
        for x, y, layer in zip(steps, sub["score"] * scale, sub["layer"], strict=True):
            ax.annotate(f"@{layer_label(layer)}", (x, y), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7, color="#444")
        chance = pd.to_numeric(sub["chance"], errors="coerce").dropna()
        if len(chance):
            ax.axhline(float(chance.mean()) * scale, ls=":", color="grey", lw=1, label="chance")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(y=0.12)  # room for the layer labels above the points
        ax.set_xlabel("training step")
        ax.set_ylabel(_unit(metric, scale))
        ax.set_title(f"{name} · {task}: score by training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        out[task] = save_figure(fig, out_dir, f"series_{slug(name)}_{slug(task)}")
    return out


def layer_heatmaps(layers: pd.DataFrame, out_dir: Path, name: str) -> dict[str, list[Path]]:
    """Per task: test score by training step (x) and layer (y, the weighted sum on top); the
    layer selected on validation at each step is framed."""
    out: dict[str, list[Path]] = {}
    for task in tasks_of(layers):
        sub = layers[layers["task"] == task]
        metric = str(sub["metric"].iloc[0])
        scale = float(sub["scale"].iloc[0])
        steps = sorted(set(sub["step"]))
        order = sub.drop_duplicates("layer").sort_values("index")["layer"].tolist()
        order = [x for x in order if x != "weighted"] + (["weighted"] if "weighted" in order else [])
        grid = np.full((len(order), len(steps)), np.nan)
        chosen = []
        for _, r in sub.iterrows():
            i, j = order.index(r["layer"]), steps.index(r["step"])
            grid[i, j] = float(r["test"]) * scale
            if r["selected"]:
                chosen.append((i, j))
        fig, ax = plt.subplots(figsize=(1.6 + 0.55 * len(steps), 1.2 + 0.32 * len(order)))
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        if grid.size <= MAX_ANNOTATED:
            mid = np.nanmean(grid) if np.isfinite(grid).any() else 0.0
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.0f}" if scale == 100 else f"{v:.2g}", ha="center",
                            va="center", fontsize=7, color="black" if v > mid else "white")
        for i, j in chosen:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set_xticks(range(len(steps)), [str(s) for s in steps], rotation=45 if len(steps) > 6 else 0,
                      fontsize=7)
        ax.set_yticks(range(len(order)), [layer_label(x) for x in order], fontsize=7)
        ax.set_xlabel("training step")
        ax.set_ylabel("layer (w: weighted sum)")
        ax.set_title(f"{name} · {task}: test score by step and layer\n(red frame: selected on "
                     "validation)", fontsize=9)
        fig.colorbar(im, ax=ax, label=_unit(metric, scale))
        out[task] = save_figure(fig, out_dir, f"series_{slug(name)}_{slug(task)}_layers")
    return out

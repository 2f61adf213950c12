"""Few-shot records: the spread of a layer's score over its random draws.

A few-shot record (``chosen`` has ``shots``) holds one per-seed result per draw; the leaderboard
shows their mean. This table adds, for the selected layer, the number of draws, the mean, the
95 % interval of the mean (normal, ``1.96 · sd / √draws``) and the 2.5–97.5 % range of single
draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mirprobe.record import Record
from mirprobe.report.records import fmt, layer_entry, metric_scale

CAPTION = ("Few-shot: the selected layer's test score over random draws of n training tracks "
           "per class: mean, [95% interval of the mean], (2.5–97.5% of single draws).")


def draw_table(records: Sequence[Record]) -> pd.DataFrame:
    """One row per few-shot record: model, task, layer, shots, draws, metric, mean, interval."""
    rows = []
    for rec in records:
        best = layer_entry(rec)
        if "shots" not in best.chosen or not best.seeds:
            continue
        metric = rec.selection.metric
        v = np.array([s.test[metric] for s in best.seeds], dtype=float)
        half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
        rows.append({"model": rec.model, "task": str(rec.task), "layer": best.layer,
                     "shots": best.chosen["shots"], "draws": len(v), "metric": metric,
                     "mean": v.mean(), "lo": v.mean() - half, "hi": v.mean() + half,
                     "draw_lo": np.percentile(v, 2.5), "draw_hi": np.percentile(v, 97.5),
                     "scale": metric_scale(rec, metric)})
    return pd.DataFrame(rows)


def draw_display(table: pd.DataFrame) -> pd.DataFrame:
    """String form of :func:`draw_table`."""
    out = []
    for _, r in table.iterrows():
        s = float(r["scale"])
        out.append({"model": r["model"], "task": f"{r['task']} ({r['metric']})",
                    "layer": r["layer"], "draws": int(r["draws"]),
                    "score": f"{fmt(r['mean'], s)} [{fmt(r['lo'], s)}, {fmt(r['hi'], s)}] "
                             f"({fmt(r['draw_lo'], s)}–{fmt(r['draw_hi'], s)})"})
    return pd.DataFrame(out)

"""Protocols side by side: probe vs k-NN vs few-shot at the selected layer, and data-efficiency
curves (score against the share of the train split).

A record's protocol is read from the job identity it keeps (``config["probe"]``: ``shots``,
``train_fraction``) and its chosen head (``knn``, ``centroid``); its task is the dataset's task
name (``dataset.task``), without the ``/5-shot`` or ``/10%`` suffix of varied jobs. Scores are
the records' own: the test score of the layer selected on validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mirprobe.record import Record
from mirprobe.report.records import fmt, layer_label, metric_scale
from mirprobe.report.robustness import is_deformed

PROBE, KNN, FEWSHOT, FRACTION, CENTROID = "probe", "knn", "fewshot", "fraction", "centroid"
DEFORMED = "deformed"  # scored on a deformed test set (mirprobe run robustness)
#: Columns of the protocol table: (protocol, shot count) and their headers.
COLUMNS = ((PROBE, "probe"), (KNN, "k-NN"), (FEWSHOT, "few-shot (n={shots})"))
MISSING = "—"

PROTOCOL_CAPTION = (
    "Test score of the layer selected on validation (its layer after @), ×100 for 0–1 metrics, "
    "per protocol on the same features: probe (trained heads, the head after the layer), k-NN "
    "(no training; k and distance chosen on validation) and few-shot nearest centroids with n "
    "training tracks per class (mean over draws). {missing}: no record of that protocol for the "
    "model and task (k-NN takes clip tasks only; few-shot multiclass clip tasks whose every "
    "class has n training tracks).")
EFFICIENCY_CAPTION = (
    "Data efficiency: test score of the layer selected on validation when the heads are trained "
    "on a share of the train tracks (stratified by class, nested), scored on the whole test "
    "split; ×100 for 0–1 metrics.")


def protocol_of(rec: Record) -> tuple[str, float | None]:
    """The record's protocol and its value: ``(deformed, None)``, ``(fewshot, n)``,
    ``(fraction, share)``, ``(knn, None)``, ``(centroid, None)`` or ``(probe, None)``."""
    if is_deformed(rec):
        return DEFORMED, None
    probe = rec.config.get("probe", {}) if isinstance(rec.config, dict) else {}
    if probe.get("shots"):
        return FEWSHOT, int(probe["shots"][0])
    if probe.get("train_fraction"):
        return FRACTION, float(probe["train_fraction"][0])
    head = rec.best.chosen.get("head")
    if head in (KNN, CENTROID):
        return head, None
    return PROBE, None


def base_task(rec: Record) -> str:
    """The task's name without a varied job's suffix."""
    return rec.dataset.task or str(rec.task).split("/")[0]


def _latest(records: Sequence[Record]) -> dict[tuple, Record]:
    """``(model, task, protocol, value) → record``; of duplicates the most recent wins."""
    out: dict[tuple, Record] = {}
    for rec in sorted(records, key=lambda r: (r.created, r.id)):
        out[(rec.model, base_task(rec), *protocol_of(rec))] = rec
    return out


def with_companions(records: Sequence[Record], records_dir: Path | None) -> list[Record]:
    """``records`` and, when they hold k-NN or few-shot records, the records folder's probe,
    k-NN and few-shot records of the same models and tasks (so that a run of one protocol is
    set beside the others already there)."""
    records = list(records)
    if records_dir is None or not any(protocol_of(r)[0] in (KNN, FEWSHOT) for r in records):
        return records
    from mirprobe.results import RecordStore

    keys = {(r.model, base_task(r)) for r in records}
    have = {r.id for r in records}
    return records + [r for r in RecordStore(Path(records_dir)).all()
                      if r.id not in have and (r.model, base_task(r)) in keys
                      and protocol_of(r)[0] in (PROBE, KNN, FEWSHOT)]


def _score(rec: Record) -> dict[str, Any]:
    metric = rec.selection_metric
    return {"metric": metric, "scale": metric_scale(rec, metric), "layer": rec.best.layer,
            "head": rec.best.chosen.get("head"), "score": rec.best.test.get(metric, np.nan),
            "record": rec.id}


def protocol_table(records: Sequence[Record], shots: int = 5) -> pd.DataFrame:
    """One row per model × task that has a probe, k-NN or ``shots``-shot record: each
    protocol's selected test score, layer, head and record id (NaN / None where missing)."""
    latest = _latest(records)
    wanted = {PROBE: (PROBE, None), KNN: (KNN, None), FEWSHOT: (FEWSHOT, shots)}
    pairs = dict.fromkeys((m, t) for (m, t, p, v) in latest if (p, v) in wanted.values())
    rows = []
    for model, task in pairs:
        row: dict[str, Any] = {"model": model, "task": task, "shots": shots}
        for name, key in wanted.items():
            rec = latest.get((model, task, *key))
            got = _score(rec) if rec else {}
            row["metric"] = row.get("metric") or got.get("metric")
            row["scale"] = row.get("scale") or got.get("scale")
            for field in ("score", "layer", "head", "record"):
                row[f"{name}_{field}"] = got.get(field, np.nan if field == "score" else None)
        rows.append(row)
    return pd.DataFrame(rows)


def protocol_missing(table: pd.DataFrame) -> list[str]:
    """``model × task: protocol, …`` for every missing cell of :func:`protocol_table`."""
    out = []
    for _, r in table.iterrows():
        gone = [head.format(shots=r["shots"]) for name, head in COLUMNS if not _has(r, name)]
        if gone:
            out.append(f"{r['model']} × {r['task']}: {', '.join(gone)}")
    return out


def protocol_caption(table: pd.DataFrame) -> str:
    missing = protocol_missing(table)
    return PROTOCOL_CAPTION.format(missing=MISSING) + (
        f" Missing: {'; '.join(missing)}." if missing else "")


def protocol_display(table: pd.DataFrame) -> pd.DataFrame:
    """String form: ``score @layer`` per protocol, ``—`` where missing."""
    out = []
    for _, r in table.iterrows():
        row = {"model": r["model"], "task": f"{r['task']} ({r['metric']})"}
        for name, head in COLUMNS:
            if not _has(r, name):
                text = MISSING
            else:
                text = f"{fmt(r[f'{name}_score'], float(r['scale']))} @{layer_label(r[f'{name}_layer'])}"
                if name == PROBE:
                    text += f" ({r['probe_head']})"
            row[head.format(shots=r["shots"])] = text
        out.append(row)
    return pd.DataFrame(out).set_index("model") if out else pd.DataFrame()


def protocol_csv(table: pd.DataFrame) -> pd.DataFrame:
    """Long table as displayed: one row per model × task × protocol, missing ones included
    (empty score)."""
    rows = []
    for _, r in table.iterrows():
        scale = float(r["scale"])
        for name, head in COLUMNS:
            found = _has(r, name)
            rows.append({"model": r["model"], "task": r["task"], "metric": r["metric"],
                         "protocol": head.format(shots=r["shots"]),
                         "layer": r[f"{name}_layer"] if found else None,
                         "head": r[f"{name}_head"] if found else None,
                         "score": _shown(r[f"{name}_score"], scale) if found else None,
                         "record": r[f"{name}_record"]})
    return pd.DataFrame(rows)


def _has(row: pd.Series, protocol: str) -> bool:
    """Whether a row of :func:`protocol_table` has a record of ``protocol``."""
    return isinstance(row[f"{protocol}_record"], str)


def _shown(value: float, scale: float) -> float:
    return float(np.round(float(value) * scale, 1 if scale == 100 else 3))


def efficiency_table(records: Sequence[Record], *, ci: bool = False,
                     records_dir: Path | None = None, n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """One row per data-efficiency record (model, task, head, share), shares in increasing
    order: the selected layer's test score and, with ``ci``, its 95% bootstrap interval over
    test tracks (:func:`mirprobe.report.stats.record_interval`)."""
    rows = []
    for (model, task, proto, share), rec in _latest(records).items():
        if proto != FRACTION:
            continue
        row = {"model": model, "task": task, "share": share, **_score(rec),
               "train": rec.counts.get("train"), "ci_low": np.nan, "ci_high": np.nan}
        if ci:
            from mirprobe.report.stats import record_interval

            row["ci_low"], row["ci_high"] = record_interval(rec, None, records_dir=records_dir,
                                                            n_boot=n_boot, seed=seed)
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values(["task", "model", "head", "share"], kind="stable",
                                          ignore_index=True)


def efficiency_display(table: pd.DataFrame) -> pd.DataFrame:
    """String form: one row per model × task × head, one column per share."""
    out: dict[tuple, dict[str, str]] = {}
    for _, r in table.iterrows():
        s = float(r["scale"])
        text = f"{fmt(r['score'], s)} @{layer_label(r['layer'])}"
        if np.isfinite(r["ci_low"]):
            text = f"{fmt(r['score'], s)} [{fmt(r['ci_low'], s)}, {fmt(r['ci_high'], s)}] " \
                   f"@{layer_label(r['layer'])}"
        key = (r["model"], f"{r['task']} ({r['metric']})", r["head"])
        out.setdefault(key, {})[f"{r['share'] * 100:g}%"] = text
    shares = [f"{v * 100:g}%" for v in sorted(table["share"].unique())] if len(table) else []
    rows = [{"model": m, "task": t, "head": h, **{c: cells.get(c, MISSING) for c in shares}}
            for (m, t, h), cells in out.items()]
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def efficiency_csv(table: pd.DataFrame) -> pd.DataFrame:
    """Long table, one row per point, values as displayed (×100 for 0–1 metrics)."""
    if table.empty:
        return table
    out = table[["model", "task", "head", "metric", "share", "train", "layer"]].copy()
    for col in ("score", "ci_low", "ci_high"):
        out[col] = [_shown(v, float(s)) if np.isfinite(v) else None
                    for v, s in zip(table[col], table["scale"], strict=True)]
    out["record"] = table["record"]
    return out

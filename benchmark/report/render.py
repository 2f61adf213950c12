"""Display forms of the tables: terminal text, Markdown, CSV; the console/run-folder output.

Scores of 0–1 metrics are shown ×100 with one decimal (R² included); every caption says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mirprobe.record import Record
from mirprobe.report.records import fmt, layer_label, models_and_tasks
from mirprobe.report.tables import SEP, aggregate, layer_table, leaderboard
from mirprobe.report.views import View

CHANCE_ROW = "chance"
AGG_COLUMN = "norm. mean"
# Ridge heads have no learned weighted sum; their row "w" is the fixed mean of layers.
W_NOTE = "w = weighted sum of layers: learned, or their mean for ridge heads"

LEADERBOARD_CAPTION = (
    f"Test score of the layer selected on validation (its layer after @; {W_NOTE}), ×100 for "
    "0–1 metrics (R² included). Row 'chance': a baseline that knows "
    "only the training label distribution. 'norm. mean': mean over tasks of (score − chance) / "
    "(best score of any model − chance), with the number of tasks it covers.")
CI_CAPTION = (" Brackets: 95% percentile-bootstrap interval over test tracks (clips of one song "
              "resampled together), seeds combined; {n_boot} resamples, seed {seed}.")
LAYERS_CAPTION = (
    "Validation and test score per layer, ×100 for 0–1 metrics (R² included); * marks the "
    f"layer selected on validation ({W_NOTE}).")


def excluded_note(records: Sequence[Record]) -> str:
    """One sentence per model × task whose test split lost items, with the first reason."""
    notes = []
    for rec in records:
        test = rec.excluded.get("test", [])
        if test:
            reasons = sorted({p.reason for p in test})
            notes.append(f"{rec.model} × {rec.task}: {len(test)} test item(s) excluded "
                         f"({reasons[0]}{'; …' if len(reasons) > 1 else ''})")
    return (" Excluded from scoring: " + "; ".join(notes) + ".") if notes else ""


def scoring_notes(records: Sequence[Record]) -> str:
    """The tasks' own notes on non-default scoring (``Task.scoring_note``), once each."""
    notes = dict.fromkeys(f"{rec.task}: {rec.task.note}" for rec in records if rec.task.note)
    return "".join(f" {note}." for note in notes)


def leaderboard_caption(records: Sequence[Record], *, ci: bool, n_boot: int, seed: int) -> str:
    """The leaderboard's caption: how to read it, the interval method, non-default scoring and
    any excluded test items."""
    return (LEADERBOARD_CAPTION + (CI_CAPTION.format(n_boot=n_boot, seed=seed) if ci else "")
            + scoring_notes(records) + excluded_note(records))


def _has_ci(board: pd.DataFrame) -> bool:
    return "ci_low" in board.columns.get_level_values(1)


def task_header(task: str, metric: str) -> str:
    return f"{task.split(SEP)[0]} ({metric})"


def leaderboard_display(board: pd.DataFrame, *, with_aggregate: bool = True) -> pd.DataFrame:
    """String table: one column per task (``score [ci] @layer``), a chance row, the aggregate."""
    tasks = list(dict.fromkeys(board.columns.get_level_values(0)))
    out = pd.DataFrame(index=[*board.index, CHANCE_ROW])
    out.index.name = "model"
    ci = _has_ci(board)
    for task in tasks:
        sub = board[task]
        metric = next((m for m in sub["metric"] if isinstance(m, str)), "?")
        scale = _scale(sub)
        cells = []
        for model in board.index:
            row = sub.loc[model]
            if not isinstance(row["metric"], str):
                cells.append("–")
                continue
            text = fmt(row["score"], scale)
            if ci:
                text += f" [{fmt(row['ci_low'], scale)}, {fmt(row['ci_high'], scale)}]"
            cells.append(f"{text} @{layer_label(row['layer'])}")
        chance = pd.to_numeric(sub["chance"], errors="coerce").dropna()
        cells.append(fmt(float(chance.mean()), scale) if len(chance) else "–")
        out[task_header(task, metric)] = cells
    if with_aggregate and len([t for t in tasks if SEP not in t]) > 1:
        agg = aggregate(board)
        out[AGG_COLUMN] = [f"{v * 100:.1f} ({n})" if n else "–"
                           for v, n in zip(agg["normalised"], agg["tasks"], strict=True)] + [""]
    return out


def _scale(sub: pd.DataFrame) -> float:
    """The declared display scale of a leaderboard column group (100 when it has no record)."""
    return float(next((v for v in sub["scale"] if isinstance(v, int | float) and v == v), 100.0))


def layers_display(table: pd.DataFrame) -> pd.DataFrame:
    """String table: ``<task> val`` and ``<task> test`` columns, ``*`` on the selected layer."""
    out = pd.DataFrame(index=[layer_label(str(n)) for n in table.index])
    out.index.name = "layer"
    for task in dict.fromkeys(table.columns.get_level_values(0)):
        metric = table.attrs.get("metrics", {}).get(task, "?")
        scale = table.attrs.get("scales", {}).get(task, 100.0)
        sub = table[task]
        selected = sub["selected"].fillna(False).astype(bool)
        out[f"{task} val ({metric})"] = [fmt(_num(v), scale) for v in sub["val"]]
        out[f"{task} test"] = [fmt(_num(v), scale) + ("*" if s else "")
                               for v, s in zip(sub["test"], selected, strict=True)]
    return out


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def text_table(df: pd.DataFrame) -> str:
    """Plain aligned text (pandas ``to_string``)."""
    return df.to_string()


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown table of a string frame (index as first column)."""
    header = [df.index.name or "", *map(str, df.columns)]
    lines = ["| " + " | ".join(map(_md_escape, header)) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(df.columns)) + "|"]
    for name, row in df.iterrows():
        lines.append("| " + " | ".join(_md_escape(c) for c in [name, *row.tolist()]) + " |")
    return "\n".join(lines) + "\n"


def displayed(value: Any, scale: float) -> float:
    """A raw metric value rounded as displayed (×100 with one decimal for 0–1 scores)."""
    v = _num(value)
    return float(np.round(v * scale, 1 if scale == 100 else 3))


def leaderboard_csv(board: pd.DataFrame) -> pd.DataFrame:
    """Long table, one row per model × task, values as displayed (×100 for 0–1 metrics)."""
    agg = aggregate(board)
    rows = []
    ci = _has_ci(board)
    for model in board.index:
        for task in dict.fromkeys(board.columns.get_level_values(0)):
            cell = board.loc[model, task]
            if not isinstance(cell["metric"], str):
                continue
            m, scale = cell["metric"], float(cell["scale"])
            row = {"model": model, "task": task.split(SEP)[0], "metric": m, "scale": scale,
                   "layer": cell["layer"], "score": displayed(cell["score"], scale)}
            if ci:
                row |= {"ci_low": displayed(cell["ci_low"], scale),
                        "ci_high": displayed(cell["ci_high"], scale)}
            row |= {"chance": displayed(cell["chance"], scale),
                    "higher_is_better": bool(cell["higher_is_better"]),
                    "norm_mean": float(np.round(agg.loc[model, "normalised"] * 100, 1)),
                    "norm_tasks": int(agg.loc[model, "tasks"])}
            rows.append(row)
    return pd.DataFrame(rows)


def layers_csv(table: pd.DataFrame) -> pd.DataFrame:
    """Long table, one row per task × layer, values as displayed."""
    rows = []
    for task in dict.fromkeys(table.columns.get_level_values(0)):
        metric = table.attrs["metrics"].get(task, "?")
        scale = table.attrs.get("scales", {}).get(task, 100.0)
        for layer in table.index:
            cell = table.loc[layer, task]
            if cell.isna().all():
                continue
            rows.append({"model": table.attrs.get("model"), "task": task, "metric": metric,
                         "layer": layer, "val": displayed(cell["val"], scale),
                         "test": displayed(cell["test"], scale), "selected": bool(cell["selected"])})
    return pd.DataFrame(rows)


def print_and_write(records: Sequence[Record], out_dir: Path, *, console: bool = True,
                    ci: bool = False, records_dir: Path | None = None, n_boot: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """Print the leaderboard and per-layer tables; write ``leaderboard.{md,csv}`` and
    ``layers.{md,csv}`` into ``out_dir``. Returns the leaderboard frame."""
    board = leaderboard(records, ci=ci, records_dir=records_dir, n_boot=n_boot, seed=seed)
    caption = leaderboard_caption(records, ci=ci, n_boot=n_boot, seed=seed)
    shown = leaderboard_display(board)
    layer_tables = [layer_table(records, m) for m in models_and_tasks(records)[0]]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "leaderboard.md").write_text(f"{markdown_table(shown)}\n{caption}\n")
    leaderboard_csv(board).to_csv(out_dir / "leaderboard.csv", index=False)
    md = [f"### {t.attrs['model']}\n\n{markdown_table(layers_display(t))}" for t in layer_tables]
    (out_dir / "layers.md").write_text("\n".join(md) + f"\n{LAYERS_CAPTION}\n")
    pd.concat([layers_csv(t) for t in layer_tables]).to_csv(out_dir / "layers.csv", index=False)
    if console:
        print(f"Leaderboard\n{text_table(shown)}\n{caption}\n")
        for t in layer_tables:
            print(f"Layers of {t.attrs['model']}\n{text_table(layers_display(t))}\n")
        print(LAYERS_CAPTION)
    _write_draws(records, out_dir, console)
    _write_views(records, out_dir, console, records_dir)
    return board


def _write_draws(records: Sequence[Record], out_dir: Path, console: bool) -> None:
    """``fewshot.{md,csv}`` when there are few-shot records (:mod:`mirprobe.report.draws`)."""
    from mirprobe.report.draws import CAPTION, draw_display, draw_table

    table = draw_table(records)
    if table.empty:
        return
    table.to_csv(out_dir / "fewshot.csv", index=False)
    (out_dir / "fewshot.md").write_text(f"{markdown_table(draw_display(table))}\n{CAPTION}\n")
    if console:
        print(f"\nFew-shot draws\n{text_table(draw_display(table))}\n{CAPTION}")


def _write_views(records: Sequence[Record], out_dir: Path, console: bool,
                 records_dir: Path | None) -> None:
    """``<view>.{md,csv}`` of each protocol view with something to show
    (:mod:`mirprobe.report.views`); the protocol table sets the run's k-NN and few-shot records
    beside the work folder's other records of the same models and tasks."""
    from mirprobe.report.protocols import with_companions
    from mirprobe.report.views import Context, build_views

    for view in build_views(Context(with_companions(records, records_dir), records_dir)):
        write_view(view, out_dir, console=console)


def view_tables(view: View) -> str:
    """A view's tables in Markdown, each followed by its caption."""
    return "\n".join(f"{markdown_table(t.display)}\n{t.caption}\n" for t in view.tables)


def write_view(view: View, out_dir: Path, *, console: bool = True) -> None:
    """``<view>.md`` (its tables) and ``<view>.csv`` in ``out_dir``; printed: its first table."""
    view.csv.to_csv(out_dir / f"{view.name}.csv", index=False)
    (out_dir / f"{view.name}.md").write_text(view_tables(view))
    if console:
        first = view.tables[0]
        print(f"\n{view.title}\n{text_table(first.display)}\n{first.caption}")


COMPARE_CAPTION = (
    "A − B on the same test tracks, ×100 for 0–1 metrics (R² included). Brackets: 95% paired "
    "percentile-bootstrap interval (clips of one song resampled together; seeds combined; "
    "{n_boot} resamples, seed {seed}). P(A better): share of resamples where A beats B, ties "
    f"counting half. Layers after @ ({W_NOTE}).")


def compare_display(table: pd.DataFrame) -> pd.DataFrame:
    """String form of :func:`mirprobe.report.compare.compare`."""
    a, b = table.attrs.get("a", "A"), table.attrs.get("b", "B")
    rows = {}
    for task, r in table.iterrows():
        m, scale = r["metric"], float(r["scale"])
        diff = fmt(r["diff"], scale) if scale != 100 else f"{r['diff'] * 100:+.1f}"
        rows[f"{task} ({m})"] = {
            f"A: {a}": f"{fmt(r['a'], scale)} @{layer_label(str(r['layer_a']))}",
            f"B: {b}": f"{fmt(r['b'], scale)} @{layer_label(str(r['layer_b']))}",
            "A − B [95% CI]": f"{diff} [{fmt(r['ci_low'], scale)}, {fmt(r['ci_high'], scale)}]",
            "P(A better)": f"{r['p_a_better']:.3f}", "tracks": str(r["tracks"])}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "task"
    return out

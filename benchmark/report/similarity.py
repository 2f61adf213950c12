"""The layer-similarity outputs of ``mirprobe similarity`` in a report.

``mirprobe similarity`` writes ``<work folder>/similarity/<models>_<task>_<split>/`` holding
``cka.csv`` (the matrix: rows the first model's layers, columns the second's) and ``info.json``
(models, task, split, items). ``mirprobe publish`` finds them beside the records folder, draws
each heatmap again from its matrix and lists every matrix's summary in one table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mirprobe.errors import UserError

CAPTION = ("Linear CKA (unbiased HSIC) between layers, as `mirprobe similarity` wrote it into "
           "the work folder's similarity/ folder; diagonal: mean CKA of each layer with the "
           "same-position layer (1 for a model with itself); off-diagonal: mean over the other "
           "pairs.")


def read_matrices(root: Path) -> list[tuple[str, pd.DataFrame, dict]]:
    """``(folder name, matrix, info)`` of every ``similarity/*/cka.csv`` under ``root`` (the
    work folder), sorted by name; ``info`` is ``{}`` for outputs without ``info.json``."""
    out = []
    for csv in sorted((Path(root) / "similarity").glob("*/cka.csv")):
        try:
            matrix = pd.read_csv(csv, index_col=0)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise UserError(f"{csv}: not a CKA matrix ({e}); delete it or run "
                            "`mirprobe similarity` again") from None
        path = csv.parent / "info.json"
        info = json.loads(path.read_text()) if path.exists() else {}
        out.append((csv.parent.name, matrix, info))
    return out


def long_form(name: str, matrix: pd.DataFrame, info: dict) -> pd.DataFrame:
    """One row per layer pair: the CSV form of a matrix."""
    models = info.get("models") or [name]
    flat = matrix.stack().rename("cka").reset_index()
    flat.columns = ["row_layer", "column_layer", "cka"]
    return flat.assign(matrix=name, rows=models[0], columns=models[-1])


def summary(name: str, matrix: pd.DataFrame, info: dict) -> dict:
    """One table row: what was compared and the matrix's diagonal and off-diagonal means."""
    values = matrix.to_numpy(dtype=float)
    k = min(values.shape)
    diag = np.diag(values[:k, :k])
    off = values[~np.eye(*values.shape, dtype=bool)]
    models = info.get("models") or [name]
    return {"matrix": name, "rows": models[0], "columns": models[-1],
            "task": info.get("task", ""), "split": info.get("split", ""),
            "items": info.get("items", ""), "layers": f"{values.shape[0]} × {values.shape[1]}",
            "diagonal": f"{np.nanmean(diag):.3f}",
            "off-diagonal": f"{np.nanmean(off):.3f}" if off.size else "–"}

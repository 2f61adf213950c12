"""Leaderboard and layer tables from hand-built run records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_report_fixtures import write_suite

from mirprobe.errors import UserError
from mirprobe.report.render import print_and_write
from mirprobe.report.tables import aggregate, layer_table, leaderboard


def test_leaderboard_picks_validation_layer(tmp_path):
    store, records = write_suite(tmp_path / "records")
    board = leaderboard(records)
    assert list(board.index) == ["good", "weak"]
    for rec in records:
        cell = board.loc[rec.model, rec.task]
        # Independent reference: the layer with the best validation score.
        best = max(rec.per_layer, key=lambda e: e.val[rec.selection_metric])
        assert cell["layer"] == best.layer
        assert cell["score"] == pytest.approx(best.test[rec.selection_metric])
        assert cell["chance"] == pytest.approx(rec.chance[rec.selection_metric])


def test_aggregate_normalises_between_chance_and_best(tmp_path):
    _, records = write_suite(tmp_path / "records")
    board = leaderboard(records)
    agg = aggregate(board)
    manual = {}
    for model in board.index:
        vals = []
        for task in ("toyclass", "toytags"):
            s = [board.loc[m, (task, "score")] for m in board.index]
            c = board.loc[model, (task, "chance")]
            vals.append((board.loc[model, (task, "score")] - c) / (max(s) - c))
        manual[model] = np.mean(vals)
    assert agg.loc["good", "normalised"] == pytest.approx(manual["good"])
    assert agg.loc["weak", "normalised"] == pytest.approx(manual["weak"])
    assert agg.loc["good", "normalised"] == pytest.approx(1.0)
    assert (agg["tasks"] == 2).all()


def test_layer_table_marks_selected(tmp_path):
    _, records = write_suite(tmp_path / "records")
    table = layer_table(records, "good")
    assert list(table.index) == ["layer0", "layer1", "layer2"]
    for rec in (r for r in records if r.model == "good"):
        sel = table[rec.task]["selected"]
        assert sel.sum() == 1 and sel[rec.best.layer]
        m = rec.selection_metric
        assert [float(v) for v in table[rec.task]["test"]] == \
            pytest.approx([e.test[m] for e in rec.per_layer])
    with pytest.raises(UserError, match="no run records for model"):
        layer_table(records, "missing")


def test_print_and_write(tmp_path, capsys):
    _, records = write_suite(tmp_path / "records")
    print_and_write(records, tmp_path / "run")
    out = capsys.readouterr().out
    assert "Leaderboard" in out and "chance" in out and "Layers of good" in out
    for name in ("leaderboard.md", "leaderboard.csv", "layers.md", "layers.csv"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    csv = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    rec = records[0]
    row = csv[(csv.model == rec.model) & (csv.task == rec.task)].iloc[0]
    assert row.score == pytest.approx(round(rec.best.test["accuracy"] * 100, 1))
    assert f"{row.score:.1f}" in (tmp_path / "run" / "leaderboard.md").read_text()
    layers = pd.read_csv(tmp_path / "run" / "layers.csv")
    assert len(layers) == 2 * 2 * 3 and layers.selected.sum() == 4

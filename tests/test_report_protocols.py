"""Protocol views of the report: probe vs k-NN vs few-shot, data-efficiency curves, CKA heatmaps.

One tiny work folder (handcrafted features of the synthetic tiny suite) gets ridge probes, k-NN,
few-shot and data-efficiency records and a similarity matrix from the real commands; the tables
are checked against the record JSON files read here on their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mirprobe.cli import main

COMMON = ["models=[handcrafted]", "progress=false", "device=cpu", "extract.num_workers=0",
          "synthetic.size=tiny"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:  # noqa: ANN001
    root = tmp_path_factory.mktemp("protocols")
    args = [*COMMON, f"work_dir={root}"]
    assert main(["run", "fast", *args, "tasks=[genre,emotion]"]) == 0
    assert main(["run", "knn", *args, "tasks=[genre,emotion]", "probe.k=[1,3,5]"]) == 0
    assert main(["run", "fewshot", *args, "tasks=[genre]", "probe.shots=[2,4]",
                 "probe.draws=3"]) == 0
    assert main(["run", "data-efficiency", *args, "tasks=[genre]",
                 "probe.train_fraction=[0.25,0.5,1.0]"]) == 0
    assert main(["similarity", "handcrafted", "--task", "genre", *args, "tasks=[genre]"]) == 0
    return root


def raw_records(root: Path) -> list[dict]:
    """Every record as plain JSON (not through mirprobe.record)."""
    return [json.loads(p.read_text()) for p in sorted((root / "records").glob("*.json"))]


def selected(raw: dict) -> tuple[str, float]:
    """The selected layer and its test score, straight from the JSON."""
    layer, metric = raw["selection"]["layer"], raw["selection"]["metric"]
    [entry] = [e for e in raw["per_layer"] if e["layer"] == layer]
    return layer, entry["test"][metric]


def kind(raw: dict) -> str:
    probe = raw["config"]["probe"]
    if "shots" in probe:
        return f"fewshot{probe['shots'][0]}"
    if "train_fraction" in probe:
        return f"share{probe['train_fraction'][0]}"
    return raw["per_layer"][0]["chosen"]["head"]


def test_protocol_table_equals_the_records_and_marks_missing(work: Path) -> None:
    from mirprobe.report.protocols import MISSING, protocol_display, protocol_table
    from mirprobe.results import RecordStore

    table = protocol_table(RecordStore(work / "records").all(), shots=4)  # tiny: 4 a class
    raws = {(r["dataset"]["task"], kind(r)): r for r in raw_records(work)}
    assert sorted(table["task"]) == ["emotion", "genre"]
    for _, row in table.iterrows():
        for column, name in (("probe", "ridge"), ("knn", "knn"), ("fewshot", "fewshot4")):
            raw = raws.get((row["task"], name))
            if raw is None:
                assert pd.isna(row[f"{column}_record"]) and np.isnan(row[f"{column}_score"])
                continue
            layer, score = selected(raw)
            assert row[f"{column}_record"] == raw["id"] and row[f"{column}_layer"] == layer
            assert row[f"{column}_score"] == score
    shown = protocol_display(table)
    emotion = shown[shown["task"].str.startswith("emotion")].iloc[0]
    assert emotion["few-shot (n=4)"] == MISSING  # regression: no few-shot, shown, not dropped
    assert emotion["k-NN"] != MISSING and emotion["probe"] != MISSING
    genre = shown[shown["task"].str.startswith("genre")].iloc[0]
    assert MISSING not in genre.tolist()
    # the run's folder has the table (n = 5: none here), the footnote naming each missing cell
    md = (work / "runs" / "knn" / "protocols.md").read_text()
    footnote = md[md.index("Missing: "):].split("\n")[0]
    assert sorted(footnote.removeprefix("Missing: ").rstrip(".").split("; ")) == [
        "handcrafted × emotion: few-shot (n=5)", "handcrafted × genre: few-shot (n=5)"]
    assert f"| {MISSING} |" in md


def test_efficiency_curve_points_are_the_share_records(work: Path) -> None:
    from mirprobe.report.protocols import efficiency_table
    from mirprobe.results import RecordStore

    table = efficiency_table(RecordStore(work / "records").all(), ci=True,
                             records_dir=work / "records", n_boot=200)
    shares = {r["config"]["probe"]["train_fraction"][0]: r for r in raw_records(work)
              if "train_fraction" in r["config"]["probe"]}
    assert list(table["share"]) == sorted(shares) == [0.25, 0.5, 1.0]
    for _, row in table.iterrows():
        raw = shares[row["share"]]
        layer, score = selected(raw)
        assert (row["record"], row["layer"], row["score"]) == (raw["id"], layer, score)
        assert row["train"] == raw["counts"]["train"]
        assert row["ci_low"] <= row["score"] <= row["ci_high"]
    assert table["train"].is_monotonic_increasing


def test_publish_writes_protocol_views_and_cka(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "pub"
    assert main(["publish", "--work-dir", str(work), "--out", str(out), "--resamples", "200"]) == 0
    protocols = pd.read_csv(out / "protocols.csv")
    knn = protocols[(protocols["task"] == "genre") & (protocols["protocol"] == "k-NN")].iloc[0]
    raw = next(r for r in raw_records(work) if r["id"] == knn["record"])
    assert knn["score"] == pytest.approx(round(selected(raw)[1] * 100, 1))
    curve = pd.read_csv(out / "efficiency.csv")
    assert list(curve["share"]) == [0.25, 0.5, 1.0] and curve["ci_low"].notna().all()
    assert (out / "plots" / "efficiency_genre.png").exists()
    cka = pd.read_csv(out / "similarity.csv")
    written = pd.read_csv(work / "similarity" / "handcrafted_genre_all" / "cka.csv", index_col=0)
    assert len(cka) == written.size
    assert cka["cka"].to_numpy() == pytest.approx(written.to_numpy().ravel())
    assert (out / "plots" / "cka_handcrafted_genre_all.png").exists()
    page = (out / "index.html").read_text()
    for title in ("Protocols: probe, k-NN, few-shot", "Data efficiency", "Layer similarity"):
        assert title in page
    assert "tab:protocols" in (out / "leaderboard.tex").read_text()
    results = json.loads((out / "results.json").read_text())
    assert {"protocols", "efficiency", "similarity"} <= set(results)


def test_knn_records_do_not_stand_in_for_the_probe_in_the_leaderboard(work: Path,
                                                                        tmp_path: Path) -> None:
    """The k-NN run came after the probe run on the same task: its records are named apart
    (``genre/knn``), the published leaderboard shows the probe's score under the task's name,
    and k-NN, few-shot and data-efficiency records only in their own views."""
    out = tmp_path / "pub"
    assert main(["publish", "--work-dir", str(work), "--out", str(out), "--resamples", "200"]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    raws = raw_records(work)
    [probe] = [r for r in raws if r["task"]["name"] == "genre"]
    [knn] = [r for r in raws if r["task"]["name"] == "genre/knn"]
    assert kind(probe) == "ridge" and kind(knn) == "knn"
    row = board[board["task"] == "genre"]
    assert len(row) == 1 and row["score"].iloc[0] == pytest.approx(
        round(selected(probe)[1] * 100, 1))
    assert not any("/" in t for t in board["task"]), sorted(set(board["task"]))

"""The robustness protocol: extra test sets scored by the trained heads without touching the
ordinary result, deformed feature entries keyed by their deformation, and ``mirprobe run
robustness`` end to end on the synthetic suite (clean records identical to an ordinary run's,
stretched beat labels, tables, plot, publish)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mirprobe.features import FeatureEntry
from mirprobe.probes import ProbeConfig, SplitData, run_probe
from tests.test_probes import FAST, Classes, planted

HEADS = {"mlp": dict(heads=["linear", "mlp"], **FAST), "ridge": dict(heads=["ridge"]),
         "knn": dict(heads=["knn"]), "centroid": dict(heads=["centroid"], weighted_sum=False)}


def tracks_only(entry: FeatureEntry, tracks: SplitData, change=None):  # noqa: ANN001, ANN201
    """Another entry holding only ``tracks`` (in reverse order), their rows optionally changed."""
    x = np.asarray(entry.features, dtype=np.float32)
    order = list(reversed(range(len(tracks.items))))
    parts = [x[entry.rows(int(tracks.items[p]))] for p in order]
    rows = np.concatenate(parts)
    if change is not None:
        rows = change(rows)
    offsets = np.r_[0, np.cumsum([len(p) for p in parts])]
    other = FeatureEntry.from_arrays(rows.astype(np.float16), offsets, frame_rate=1.0)
    where = {p: k for k, p in enumerate(order)}
    return other, SplitData(np.asarray([where[p] for p in range(len(order))]), tracks.labels,
                            tracks.uids)


@pytest.mark.parametrize("kind", list(HEADS))
def test_extra_test_sets_change_nothing_and_score_like_the_test_split(kind) -> None:
    entry, splits = planted(n=300, windows=2)
    cfg = ProbeConfig(**HEADS[kind])
    plain = run_probe(Classes(), entry, splits, cfg, progress=False)
    same = tracks_only(entry, splits["test"])

    def blank(rows: np.ndarray) -> np.ndarray:  # the informative layers lose their signal
        rows[:, 1:3] = np.random.default_rng(1).normal(size=rows[:, 1:3].shape) * rows[:, 1:3].std()
        return rows

    noisy = tracks_only(entry, splits["test"], blank)
    both = run_probe(Classes(), entry, splits, cfg, progress=False,
                     extra_tests={"same": same, "noisy": noisy})
    assert both.per_layer == plain.per_layer and both.selection == plain.selection
    assert both.predictions.keys() == plain.predictions.keys()
    for layer, seeds in plain.predictions.items():
        assert all(np.array_equal(a, b) for a, b in zip(seeds, both.predictions[layer], strict=True))
    assert plain.extra == {} and set(both.extra) == {"same", "noisy"}
    for ours, theirs in zip(both.extra["same"].per_layer, plain.per_layer, strict=True):
        assert ours.layer == theirs.layer and ours.val == theirs.val
        assert ours.test == pytest.approx(theirs.test, abs=1e-9)
    test = {e.layer: e.test["accuracy"] for e in plain.per_layer}
    blanked = {e.layer: e.test["accuracy"] for e in both.extra["noisy"].per_layer}
    assert test["layer2"] > 0.8 and blanked["layer2"] < test["layer2"] - 0.3
    assert blanked["layer0"] == pytest.approx(test["layer0"])  # an untouched layer


def test_deformed_entry_keys_differ_from_the_clean_one_and_from_each_other(tmp_path) -> None:  # noqa: ANN001
    from mirprobe.deform import parse
    from mirprobe.features import entry_id, entry_identity
    from mirprobe.models.handcrafted import HandcraftedExtractor
    from tests.conftest import write_tone

    keys = [str(write_tone(tmp_path / f"{i}.wav", 1.0, seed=i)) for i in range(2)]
    clean = entry_identity(HandcraftedExtractor(), keys, "clip", 3.0)
    ids = {entry_id(clean)}
    for d in ({"name": "noise", "snr_db": 10}, {"name": "noise", "snr_db": 20},
              {"name": "noise", "snr_db": 10, "seed": 1}, {"name": "stretch", "rate": 1.1}):
        ids.add(entry_id({**clean, "deformation": parse(d, "k").identity()}))
    assert len(ids) == 5
    assert "deformation" not in clean  # clean entries keep their ids


TINY = ["models=[handcrafted]", "progress=false", "device=cpu", "probe.heads=[linear]",
        "probe.lr=[1e-2]", "probe.max_epochs=3", "probe.patience=2", "synthetic.size=tiny",
        "tasks=[key,beat]"]
DEFORM = "robustness.deformations=[{name: gain, db: 0}, {name: stretch, rate: 1.25}, " \
         "{name: noise, snr_db: 0}]"


def records(work: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (work / "records").glob("*.json")}


def test_robustness_run_end_to_end(tmp_path, capsys) -> None:  # noqa: ANN001
    from mirprobe.cli import main
    from mirprobe.record import Predictions

    work, saved = tmp_path / "work", tmp_path / "robust-records"
    assert main(["run", "robustness", *TINY, DEFORM, f"work_dir={work}"]) == 0
    out = capsys.readouterr().out
    assert "Robustness" in out and "stretch(rate=1.25)" in out
    robust = records(work)
    shutil.copytree(work / "records", saved)
    for rid, rec in robust.items():  # the clean records go; an ordinary run makes them again
        if "deformation" not in rec["config"]:
            (work / "records" / f"{rid}.json").unlink()
            (work / "records" / rec["predictions"]).unlink()
    assert main(["run", "robustness", *TINY, "robustness.deformations=[]", f"work_dir={work}"]) == 0
    plain = {rid: r for rid, r in records(work).items() if "deformation" not in r["config"]}

    # the clean records are the ordinary run's: same ids, same numbers, same predictions
    assert len(plain) == 2 and set(plain) < set(robust) and len(robust) == 2 + 2 * 3
    for rid, rec in plain.items():
        for key in ("per_layer", "selection", "chance", "counts", "feature_entry", "config"):
            assert robust[rid][key] == rec[key], key
        a = Predictions.read(work / "records" / rec["predictions"])
        b = Predictions.read(saved / rec["predictions"])
        assert a.labels == b.labels and all(
            np.array_equal(x, y) for k in a.layers for x, y in zip(a.layers[k], b.layers[k], strict=True))
    deformed = {rid: r for rid, r in robust.items() if rid not in plain}
    entries = {r["feature_entry"] for r in robust.values()}
    assert len(entries) == 2 + 2 * 3  # every deformation × task has an entry of its own
    for r in deformed.values():
        clean = plain[r["config"]["clean_record"]]
        name = r["config"]["deformation"]["name"]
        assert r["task"]["name"] == f"{clean['task']['name']}@" + {
            "gain": "gain(db=0)", "stretch": "stretch(rate=1.25)",
            "noise": "noise(color=white,seed=0,snr_db=0)"}[name]
        assert [e["val"] for e in r["per_layer"]] == [e["val"] for e in clean["per_layer"]]
        if name == "gain":  # 0 dB: the same audio, the same features, the same scores
            assert [e["test"] for e in r["per_layer"]] == [e["test"] for e in clean["per_layer"]]
        if name == "stretch" and clean["task"]["name"] == "beat":
            a = Predictions.read(work / "records" / clean["predictions"])
            b = Predictions.read(work / "records" / r["predictions"])
            assert a.uids == b.uids
            for x, y in zip(a.labels, b.labels, strict=True):
                np.testing.assert_allclose(y["beat"], np.asarray(x["beat"]) / 1.25)
                assert y["tempo"] == pytest.approx(x["tempo"] * 1.25)
    table = (work / "runs" / "robustness" / "robustness.csv").read_text()
    assert table.count("stretch(rate=1.25)") == 2 * 6  # two tasks × (five layers + weighted sum)
    assert (work / "runs" / "robustness" / "plots" / "robustness_drop.png").exists()

    assert main(["cache", "--work-dir", str(work)]) == 0  # deformed entries say so
    assert capsys.readouterr().out.count("deformed: stretch(rate=1.25)") == 2

    # a second run finds everything: no extraction, no new record
    assert main(["run", "robustness", *TINY, DEFORM, f"work_dir={work}"]) == 0
    assert "extract" not in capsys.readouterr().out.rsplit("time per stage", 1)[1]
    assert records(work).keys() == robust.keys()

    # deformed records are a protocol of their own: never the probe of a protocol table (a
    # k-NN run's table sets the work folder's probe records beside its own)
    from mirprobe.report.protocols import DEFORMED, PROBE, protocol_of, protocol_table
    from mirprobe.results import RecordStore

    stored = RecordStore(work / "records").all()
    assert sorted(protocol_of(r)[0] for r in stored) == [DEFORMED] * 6 + [PROBE] * 2
    assert set(protocol_table(stored)["probe_record"]) == set(plain)

    # publish: the leaderboard holds the clean records, robustness its own section
    assert main(["publish", "--out", str(tmp_path / "pub"), "--work-dir", str(work),
                 "--resamples", "200"]) == 0
    pub, run = tmp_path / "pub", work / "runs" / "robustness"
    md = (pub / "leaderboard.md").read_text()
    assert "## Robustness" in md and "| handcrafted | " in md
    assert "@stretch" not in md.split("## Layers")[0]
    # the robustness view in every format: the run's per-layer table (no interval in it) and
    # rows as the run wrote them (intervals apart: 200 resamples here, 1000 in the run)
    written_md = (run / "robustness.md").read_text()
    per_layer = written_md[written_md.index("| model × task · layer"):]
    assert per_layer.count("@") == 0 and per_layer.count("\n| handcrafted × ") == 2 * 6
    assert per_layer in md.split("## Robustness")[1]
    assert "![Drop at the selected layer](plots/robustness_drop.png)" in md
    tex = (pub / "leaderboard.tex").read_text()
    assert "tab:robustness}" in tex and "tab:robustness-layers}" in tex
    page = (pub / "index.html").read_text().split("<h2>Robustness</h2>")[1].split("</section>")[0]
    assert 'id="robustness"' in page and 'id="robustness-layers"' in page and "<figure>" in page
    published, written = pd.read_csv(pub / "robustness.csv"), pd.read_csv(run / "robustness.csv")
    apart = ["drop_low", "drop_high"]
    pd.testing.assert_frame_equal(published.drop(columns=apart), written.drop(columns=apart))
    assert published["drop_low"].notna().sum() == written["drop_low"].notna().sum() > 0
    rows = json.loads((pub / "results.json").read_text())["robustness"]
    assert [r["record"] for r in rows] == list(published["record"])
    assert (pub / "plots" / "robustness_drop.png").exists()


def test_bad_deformations_stop_the_run_before_any_work(tmp_path, capsys) -> None:  # noqa: ANN001
    from mirprobe.cli import main

    bad = "robustness.deformations=[{name: stretch, rate: -1}]"
    assert main(["run", "robustness", *TINY, bad, f"work_dir={tmp_path}"]) == 2
    assert "'robustness.deformations[0].rate': -1 is out of range" in capsys.readouterr().err
    bad = "robustness.deformations=[{name: echo}]"
    assert main(["run", "robustness", *TINY, bad, f"work_dir={tmp_path}"]) == 2
    assert "'robustness.deformations[0].name': unknown deformation 'echo'" in capsys.readouterr().err
    bad = "robustness.deformations=[{name: pitch, semitones: 0.5}]"
    assert main(["run", "robustness", *TINY, bad, f"work_dir={tmp_path}"]) == 2
    assert "task 'key' cannot take pitch(semitones=0.5)" in capsys.readouterr().err
    assert not (tmp_path / "features").exists()

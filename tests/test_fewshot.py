"""Few-shot nearest-centroid draws against scikit-learn's NearestCentroid draw by draw; nested,
stratified train shares; one job per shot count or share through ``mirprobe run``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mirprobe.config import load_run_config
from mirprobe.errors import UserError
from mirprobe.probes import ProbeConfig, SplitData, run_probe
from mirprobe.probes.fewshot import draw_tracks, train_subset, variants
from tests.test_centroid import track_means
from tests.test_probes import Classes, planted


def test_fewshot_draws_equal_sklearn_nearest_centroid_per_draw() -> None:
    from sklearn.neighbors import NearestCentroid

    entry, splits = planted(n=200, dim=8, strength=0.5, windows=2, seed=6)
    cfg = ProbeConfig(heads=["centroid"], shots=[3], draws=5, layers=[1, 2])
    res = run_probe(Classes(), entry, splits, cfg, seed=11, progress=False)
    y = {s: np.array([int(lab[1:]) for lab in splits[s].labels]) for s in splits}
    x = {s: track_means(entry, splits[s].items) for s in splits}
    masks = draw_tracks(y["train"], ["c0", "c1", "c2", "c3"], 3, 5, 11)
    assert (masks.sum(1) == 12).all() and len({m.tobytes() for m in masks}) == 5
    for p in res.per_layer:
        assert p.chosen == {"head": "centroid", "shots": 3}
        assert [s.seed for s in p.seeds] == [0, 1, 2, 3, 4]
        for s, mask in zip(p.seeds, masks, strict=True):
            pick = mask > 0
            ref = NearestCentroid().fit(x["train"][pick, p.index], y["train"][pick])
            assert s.test["accuracy"] == pytest.approx(ref.score(x["test"][:, p.index],
                                                                 y["test"])), p.layer
        assert p.test["accuracy"] == pytest.approx(np.mean([s.test["accuracy"] for s in p.seeds]))
    assert len(res.predictions["layer2"]) == 5  # every draw's test predictions


def test_fewshot_bad_input_names_the_key() -> None:
    entry, splits = planted(n=40, seed=1)
    with pytest.raises(UserError, match=r"'probe.shots': 30 examples per class but class 'c\d' "
                                        r"has \d+ training tracks"):
        run_probe(Classes(), entry, splits, ProbeConfig(heads=["centroid"], shots=[30]),
                  progress=False)
    from mirprobe.probes.fewshot import draw_tracks

    # a class of the task with no training track at all (scores-key's 'D minor' in the quick size)
    with pytest.raises(UserError, match=r"'probe.shots': class 'c' has no training tracks, so "
                                        r"no 1-shot draw exists"):
        draw_tracks(np.array([0, 0, 1]), ["a", "b", "c"], 1, 2, 0)
    with pytest.raises(UserError, match="'probe.shots' needs probe.heads=\\[centroid\\]"):
        ProbeConfig(heads=["ridge"], shots=[5])
    with pytest.raises(UserError, match="'probe.train_fraction'"):
        ProbeConfig(train_fraction=[0.0])
    with pytest.raises(UserError, match="'probe.draws'"):
        ProbeConfig(heads=["centroid"], shots=[1], draws=0)


def test_train_shares_are_stratified_and_nested() -> None:
    rng = np.random.default_rng(0)
    labels = [f"c{k}" for k in rng.choice(3, 400, p=[0.6, 0.3, 0.1])]
    split = SplitData(np.arange(400), labels, [str(i) for i in range(400)])
    shares = {f: train_subset(Classes(), split, f, seed=2) for f in (0.01, 0.1, 0.25, 1.0)}
    sets = [set(shares[f].items.tolist()) for f in (0.01, 0.1, 0.25, 1.0)]
    assert all(a < b for a, b in zip(sets, sets[1:], strict=False))  # nested
    assert sets[-1] == set(range(400))
    for f in (0.1, 0.25):
        got = {c: shares[f].labels.count(c) for c in ("c0", "c1", "c2")}
        want = {c: round(f * labels.count(c)) for c in ("c0", "c1", "c2")}
        assert got == want  # stratified
    assert {shares[0.01].labels.count(c) >= 1 for c in ("c0", "c1", "c2")} == {True}


def test_train_fraction_trains_on_the_share_only() -> None:
    entry, splits = planted(n=300, seed=2)
    cfg = dict(heads=["ridge"], alpha=[1.0])
    cut = run_probe(Classes(), entry, splits, ProbeConfig(train_fraction=[0.25], **cfg), seed=4,
                    progress=False)
    manual = {**splits, "train": train_subset(Classes(), splits["train"], 0.25, seed=4)}
    ref = run_probe(Classes(), entry, manual, ProbeConfig(**cfg), seed=4, progress=False)
    full = run_probe(Classes(), entry, splits, ProbeConfig(**cfg), seed=4, progress=False)
    assert [p.test for p in cut.per_layer] == [p.test for p in ref.per_layer]
    assert [p.test for p in cut.per_layer] != [p.test for p in full.per_layer]


def test_varied_keys_make_one_config_per_value() -> None:
    cfg = ProbeConfig(heads=["centroid"], shots=[1, 5], train_fraction=[0.1, 1.0])
    got = [(c.shots, c.train_fraction) for c in variants(cfg)]
    assert got == [([1], [0.1]), ([1], [1.0]), ([5], [0.1]), ([5], [1.0])]


def test_fewshot_run_config_makes_one_record_per_shot_count(tmp_path, capsys) -> None:  # noqa: ANN001
    from mirprobe.cli import main
    from mirprobe.record import Record

    cfg = load_run_config("fewshot")
    assert list(cfg.probe.shots) == [1, 5, 10] and cfg.probe.heads == ["centroid"]
    args = ["models=[handcrafted]", "progress=false", "device=cpu", "extract.num_workers=0",
            "tasks=[genre]", "probe.shots=[1,2]", "probe.draws=4", f"work_dir={tmp_path}"]
    assert main(["run", "fewshot", *args]) == 0
    out = capsys.readouterr().out
    assert "Few-shot draws" in out
    draws = pd.read_csv(tmp_path / "runs" / "fewshot" / "fewshot.csv")
    records = [Record.read(p) for p in (tmp_path / "records").glob("*.json")]
    assert sorted(r.best.chosen["shots"] for r in records) == [1, 2]
    assert sorted(r.task for r in records) == ["genre/1-shot", "genre/2-shot"]  # table rows
    assert all(len(r.best.seeds) == 4 for r in records)
    for r in records:  # the table's mean and range are the draws' own
        row = draws[draws["task"] == r.task].iloc[0]
        scores = [s.test[r.selection.metric] for s in r.best.seeds]
        assert row["mean"] == pytest.approx(np.mean(scores))
        assert row["draw_lo"] >= min(scores) and row["draw_hi"] <= max(scores)
        assert row["lo"] <= row["mean"] <= row["hi"]
    assert main(["run", "fewshot", *args[:-2], "probe.shots=[500]", f"work_dir={tmp_path}"]) == 2
    assert "config key 'probe.shots': 500 examples per class" in capsys.readouterr().err
    # from the labels, before any extraction: a fresh work folder gets no features
    fresh = tmp_path / "fresh"
    assert main(["run", "fewshot", *args[:-2], "probe.shots=[1,500]", f"work_dir={fresh}"]) == 2
    assert "config key 'probe.shots': 500 examples per class" in capsys.readouterr().err
    assert not any((fresh / "features").glob("*")) and not any((fresh / "records").glob("*"))

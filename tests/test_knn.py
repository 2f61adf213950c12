"""k-NN probes against scikit-learn's KNeighborsClassifier / KNeighborsRegressor on the same
standardised window rows and the same k, resident and streamed; frame tasks and bad keys refused."""

from __future__ import annotations

import numpy as np
import pytest

from mirprobe.config import load_run_config
from mirprobe.errors import UserError
from mirprobe.probes import ProbeConfig, SplitData, run_probe
from tests.test_probes import Classes, FrameOnsets, Values, _onset_job, planted


def row_inputs(entry, splits, index: int, weighted: bool) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Each split's window rows of one layer (or the mean of layers) as the engine standardises
    them, with scikit-learn's StandardScaler fitted on the train rows."""
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(entry.features, dtype=np.float64)
    rows = {s: np.concatenate([np.arange(entry.rows(int(i)).start, entry.rows(int(i)).stop)
                               for i in d.items]) for s, d in splits.items()}
    flat = {s: x[r].reshape(len(r), -1) for s, r in rows.items()}
    z = StandardScaler().fit(flat["train"])
    layers = {s: z.transform(v).reshape(-1, x.shape[1], x.shape[2]) for s, v in flat.items()}
    if not weighted:
        return {s: v[:, index] for s, v in layers.items()}
    mean = {s: v.mean(1) for s, v in layers.items()}
    again = StandardScaler().fit(mean["train"])
    return {s: again.transform(v) for s, v in mean.items()}


def track_mean(values: np.ndarray, windows: int) -> np.ndarray:
    return values.reshape(-1, windows, *values.shape[1:]).mean(1)


@pytest.mark.parametrize(("windows", "budget"), [(1, None), (3, None), (3, 1e-5)])
def test_knn_heads_equal_sklearn_kneighbors_classifier(windows, budget) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    entry, splits = planted(n=240, dim=10, strength=0.6, windows=windows, seed=3)
    ks = [1, 4, 9]
    res = run_probe(Classes(), entry, splits,
                    ProbeConfig(heads=["knn"], k=ks, memory_budget_gb=budget), progress=False)
    assert res.layers == ["layer0", "layer1", "layer2", "layer3", "weighted"]
    assert res.num_heads == 5 * 2 * 3
    y = {s: np.repeat([int(lab[1:]) for lab in d.labels], windows) for s, d in splits.items()}
    for p in res.per_layer:
        xs = row_inputs(entry, splits, p.index, p.weighted)
        val, test = {}, {}
        for metric in ("cosine", "euclidean"):
            for k in ks:
                ref = KNeighborsClassifier(n_neighbors=k, metric=metric,
                                           algorithm="brute").fit(xs["train"], y["train"])
                for split, into in (("val", val), ("test", test)):
                    votes = np.rint(ref.predict_proba(xs[split]) * k)  # whole votes: exact ties
                    proba = track_mean(votes, windows)
                    truth = y[split][::windows]
                    into[metric, k] = float((proba.argmax(1) == truth).mean())
        chosen = (p.chosen["metric"], p.chosen["k"])
        assert p.chosen["head"] == "knn"
        assert p.val["accuracy"] == pytest.approx(val[chosen]), p.layer
        assert p.val["accuracy"] == pytest.approx(max(val.values())), p.layer  # chosen on val
        assert p.test["accuracy"] == pytest.approx(test[chosen]), p.layer
    assert res.best.index in (2, 4)  # the informative layer or the mean of layers


def test_knn_regression_equals_sklearn_kneighbors_regressor() -> None:
    from sklearn.metrics import r2_score
    from sklearn.neighbors import KNeighborsRegressor

    entry, splits = planted(n=300, dim=8, seed=4)
    rng = np.random.default_rng(0)
    x2 = np.asarray(entry.features[:, 2], dtype=np.float64)
    target = np.stack([x2[:, :3].sum(1), x2[:, 3] - x2[:, 4]], 1) + rng.normal(size=(300, 2))
    splits = {s: SplitData(d.items, target[d.items].tolist(), d.uids) for s, d in splits.items()}
    res = run_probe(Values(), entry, splits,
                    ProbeConfig(heads=["knn"], k=[2, 7], metric=["euclidean"],
                                weighted_sum=False), progress=False)
    for p in res.per_layer:
        xs = row_inputs(entry, splits, p.index, False)
        ref = KNeighborsRegressor(n_neighbors=p.chosen["k"], metric="euclidean",
                                  algorithm="brute").fit(xs["train"], target[splits["train"].items])
        expect = r2_score(target[splits["test"].items], ref.predict(xs["test"]))
        assert p.test["r2"] == pytest.approx(expect, abs=1e-5), p.layer
    assert res.best.index == 2


def test_knn_refuses_frame_tasks_and_bad_keys() -> None:
    entry, splits = _onset_job()
    with pytest.raises(UserError, match=r"probe.heads=\[knn\] needs a clip task.*frame view"):
        run_probe(FrameOnsets(), entry, splits, ProbeConfig(heads=["knn"]), progress=False)
    entry, splits = planted(n=50)
    with pytest.raises(UserError, match="'probe.k': 40 neighbours but the train split has 30"):
        run_probe(Classes(), entry, splits, ProbeConfig(heads=["knn"], k=[1, 40]), progress=False)
    with pytest.raises(UserError, match="'probe.metric'"):
        ProbeConfig(heads=["knn"], metric=["manhattan"])
    with pytest.raises(UserError, match="'probe.k'"):
        ProbeConfig(heads=["knn"], k=[0])
    with pytest.raises(UserError, match="knn heads run alone"):
        load_run_config("quickstart", ["probe.heads=[knn,mlp]"])


def test_unset_optional_keys_leave_job_identities_unchanged() -> None:
    from dataclasses import asdict

    from mirprobe.probes import probe_identity

    plain = ProbeConfig()
    added = ("k", "metric", "shots", "draws", "train_fraction")  # keys newer than the records
    old = {k: v for k, v in asdict(plain).items() if k not in added}
    assert probe_identity(plain) == old
    assert probe_identity(ProbeConfig(heads=["knn"], k=[3]))["k"] == [3]
    shots = probe_identity(ProbeConfig(heads=["centroid"], shots=[5]))
    assert shots["shots"] == [5] and shots["draws"] == 100


def test_knn_run_config_end_to_end(tmp_path, capsys) -> None:  # noqa: ANN001
    """``mirprobe run knn`` on the synthetic suite: clip tasks only, one record each, the chosen
    distance and k recorded."""
    from mirprobe.cli import main
    from mirprobe.record import Record
    from tests.test_datasets_run import TINY

    args = [a for a in TINY if not a.startswith("probe.")]
    args.append("synthetic.size=quick")  # the config's own suite is the scores suite
    assert main(["run", "knn", *args, "tasks=[key,genre]", f"work_dir={tmp_path}"]) == 0
    capsys.readouterr()
    records = [Record.read(p) for p in (tmp_path / "records").glob("*.json")]
    assert records and all(r.best.chosen["head"] == "knn" for r in records)
    assert all(set(r.best.chosen) == {"head", "metric", "k"} for r in records)
    # a frame task is refused before any extraction, with the reason
    assert main(["run", "knn", *args, "tasks=[beat]", f"work_dir={tmp_path / 'beat'}"]) == 2
    assert "task 'beat' is beat (frame view)" in capsys.readouterr().err
    assert not (tmp_path / "beat" / "features").exists()

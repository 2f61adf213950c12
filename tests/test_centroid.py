"""Nearest-centroid probes (MARBLE v2's few-shot protocol) against scikit-learn's NearestCentroid
on the tracks' mean features, resident and streamed."""

from __future__ import annotations

import numpy as np
import pytest

from mirprobe.config import load_run_config
from mirprobe.errors import UserError
from mirprobe.probes import ProbeConfig, run_probe
from tests.test_probes import Classes, Values, planted


def track_means(entry, items) -> np.ndarray:  # noqa: ANN001
    x = np.asarray(entry.features, dtype=np.float64)
    return np.stack([x[entry.rows(int(i))].mean(0) for i in items])  # [T, L, D]


@pytest.mark.parametrize("budget", [None, 1e-5])  # resident, then streamed in small chunks
def test_centroid_heads_equal_sklearn_nearest_centroid(budget) -> None:
    from sklearn.neighbors import NearestCentroid

    entry, splits = planted(n=300, dim=12, strength=0.5, windows=3, seed=5)
    res = run_probe(Classes(), entry, splits,
                    ProbeConfig(heads=["centroid"], memory_budget_gb=budget), progress=False)
    assert res.layers == ["layer0", "layer1", "layer2", "layer3"]  # no weighted sum
    y = {s: np.array([int(lab[1:]) for lab in splits[s].labels]) for s in splits}
    x = {s: track_means(entry, splits[s].items) for s in splits}
    for p in res.per_layer:
        assert p.chosen == {"head": "centroid"}
        ref = NearestCentroid().fit(x["train"][:, p.index], y["train"])
        for split in ("val", "test"):
            assert getattr(p, split)["accuracy"] == pytest.approx(
                ref.score(x[split][:, p.index], y[split])), (p.layer, split)
    assert res.best.index == 2  # the informative layer, chosen on validation


def test_centroid_needs_a_multiclass_task_and_runs_alone() -> None:
    entry, splits = planted(n=60)
    values = {s: d.__class__(d.items, [[float(i)] for i in range(len(d.items))], d.uids)
              for s, d in splits.items()}
    with pytest.raises(UserError, match="multiclass clip task"):
        run_probe(Values(), entry, values, ProbeConfig(heads=["centroid"]), progress=False)
    with pytest.raises(UserError, match="centroid heads run alone"):
        load_run_config("quickstart", ["probe.heads=[centroid,mlp]"])


def test_marble_v2_fewshot_config_end_to_end(tmp_path, capsys) -> None:  # noqa: ANN001
    """``mirprobe run marble-v2-fewshot`` on a GTZAN fixture: one 30.2 s window per track,
    centroid heads on every layer, one record."""
    from mirprobe.cli import main
    from mirprobe.datasets import prepare
    from tests.test_datasets_prepare import make_gtzan
    from tests.test_datasets_run import TINY, write_lists

    labels = make_gtzan(tmp_path / "raw", per_genre=3, seconds=1.0,
                        genres=("blues", "metal", "pop"))
    lists = write_lists(tmp_path / "lists", {s: ("train", "val", "test")[int(s[-1])]
                                             for s in labels})
    prepare("gtzan", tmp_path / "raw", tmp_path / "out", splits=lists)
    args = [a for a in TINY if not a.startswith("probe.")]
    assert main(["run", "marble-v2-fewshot", *args, f"data_root={tmp_path / 'out'}",
                 f"work_dir={tmp_path / 'work'}"]) == 0
    out = capsys.readouterr().out
    assert "gtzan-genre-fewshot" in out
    from mirprobe.record import Record

    [record] = [Record.read(p) for p in (tmp_path / "work" / "records").glob("*.json")]
    assert record.best.chosen == {"head": "centroid"}
    assert record.task.build().window_s == 30.2
    assert record.counts == {"train": 3, "val": 3, "test": 3}

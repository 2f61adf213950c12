"""The batched probe engine against independent references: a plain one-config-at-a-time
PyTorch loop, scikit-learn's LogisticRegression, torch.optim.Adam, naive numpy merges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mirprobe.features import FeatureEntry
from mirprobe.probes import ProbeConfig, SplitData, run_probe
from mirprobe.probes.aggregate import merge_units
from mirprobe.probes.heads import HeadBank, HeadSpec, dropout_gate
from mirprobe.probes.plain import run_plain
from mirprobe.tasks.base import Task

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one thread is fastest and immune to a busy machine's oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Classes(Task):
    """A minimal multiclass task, independent of the task plugins."""

    name: ClassVar[str] = "classes"
    kind: ClassVar[str] = "multiclass"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)

    def fit(self, train_labels):
        self.classes = self.classes or sorted(set(train_labels))

    @property
    def output_dim(self) -> int:
        return len(self.classes)

    def encode(self, label):
        if label not in self.classes:
            raise ValueError(f"unknown class {label!r}")
        return np.int64(self.classes.index(label))

    def loss(self, logits, targets):
        h = logits.shape[0]
        per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.repeat(h),
                              reduction="none")
        return per.view(h, -1).mean(1)

    def score(self, outputs, targets):
        return (outputs.argmax(-1) == targets).float().mean(1)

    def evaluate(self, predictions, labels):
        truth = np.array([self.classes.index(lab) for lab in labels])
        return {"accuracy": float((np.asarray(predictions).argmax(1) == truth).mean())}

    def chance(self, train_labels, test_labels):
        return {"accuracy": 0.0}


class SongClasses(Classes):
    group_by_uid: ClassVar[bool] = True


class FrameOnsets(Task):
    """Frame view: one binary target per frame; scored by frame accuracy."""

    name: ClassVar[str] = "onsets"
    kind: ClassVar[str] = "beat"
    view: ClassVar[str] = "frame"
    metrics: ClassVar[tuple[str, ...]] = ("frame_accuracy",)
    output_dim = 1

    def encode(self, label):
        raise NotImplementedError

    def encode_frames(self, label, num_frames, frame_rate):
        target = np.zeros((num_frames, 1), dtype=np.float32)
        target[[f for f in label if f < num_frames]] = 1.0
        return target

    def loss(self, logits, targets):
        return F.binary_cross_entropy_with_logits(
            logits, targets.expand_as(logits), reduction="none").flatten(1).mean(1)

    def score(self, outputs, targets):
        return ((outputs > 0).float() == targets).float().flatten(1).mean(1)

    def predictions(self, outputs, *, frame_rate=None):
        return [np.flatnonzero(o[:, 0] > 0).tolist() for o in outputs]

    def evaluate(self, predictions, labels):
        hits = [len(set(p) & set(lab)) / max(1, len(set(p) | set(lab)))
                for p, lab in zip(predictions, labels, strict=True)]
        return {"frame_accuracy": float(np.mean(hits))}

    def chance(self, train_labels, test_labels):
        return {"frame_accuracy": 0.0}


def planted(n=600, layers=4, dim=16, classes=4, informative=2, strength=1.0, windows=1,
            seed=0, split=(0.6, 0.2)):
    """Random features where one layer carries a linear class signal."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n * windows, layers, dim)).astype(np.float32)
    proto = rng.normal(size=(classes, dim))
    x[:, informative] += strength * proto[np.repeat(y, windows)]
    x[:, informative - 1] += 0.3 * strength * proto[np.repeat(y, windows)]
    # Layers of very different scales, like a transformer's.
    x *= np.logspace(0, 2, layers, dtype=np.float32)[None, :, None]
    entry = FeatureEntry.from_arrays(x.astype(np.float16), np.arange(0, n * windows + 1, windows),
                                     frame_rate=1.0)
    labels = [f"c{k}" for k in y]
    a, b = int(split[0] * n), int((split[0] + split[1]) * n)
    cuts = {"train": np.arange(a), "val": np.arange(a, b), "test": np.arange(b, n)}
    splits = {s: SplitData(idx, [labels[i] for i in idx], [f"t{i}" for i in idx])
              for s, idx in cuts.items()}
    return entry, splits


FAST = dict(hidden=32, lr=[1e-3, 1e-2], max_epochs=15, patience=4, lr_patience=2)


def test_informative_layer_is_chosen():
    entry, splits = planted()
    res = run_probe(Classes(), entry, splits, ProbeConfig(heads=["linear", "mlp"], **FAST),
                    progress=False)
    assert res.layers == ["layer0", "layer1", "layer2", "layer3", "weighted"]
    assert res.num_heads == 5 * 2 * 2
    assert res.best.index in (2, 4)  # the informative layer, or the sum that can pick it
    by_layer = {p.layer: p for p in res.per_layer}
    assert by_layer["layer2"].test["accuracy"] > 0.9
    assert by_layer["layer0"].test["accuracy"] < 0.5
    assert by_layer["layer2"].chosen["head"] in ("linear", "mlp")
    assert [p.shape for p in res.predictions["layer2"]] == [(len(splits["test"].items), 4)]


def test_batched_matches_plain_loop():
    entry, splits = planted(n=400, strength=0.5, windows=2)
    cfg = ProbeConfig(**FAST)
    batched = run_probe(Classes(), entry, splits, cfg, progress=False)
    plain = run_plain(Classes(), entry, splits, cfg)
    for p in batched.per_layer:
        ref = plain["per_layer"][-1 if p.weighted else p.index]
        assert abs(p.val["accuracy"] - ref["val"]["accuracy"]) <= 0.02, p.layer
        assert abs(p.test["accuracy"] - ref["test"]["accuracy"]) <= 0.02, p.layer
    best_plain = max(plain["per_layer"].items(), key=lambda kv: kv[1]["val"]["accuracy"])[0]
    assert batched.best.index in (2, 4) and best_plain in (2, -1)


def test_linear_heads_match_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    entry, splits = planted(n=1000, dim=12, strength=0.35, seed=3, split=(0.5, 0.2))
    cfg = ProbeConfig(heads=["linear"], lr=[1e-3, 1e-2], weighted_sum=False, max_epochs=40,
                      patience=8, lr_patience=3)
    res = run_probe(Classes(), entry, splits, cfg, progress=False)
    x = np.asarray(entry.features, dtype=np.float64)
    y = {s: np.array([int(lab[1:]) for lab in splits[s].labels]) for s in splits}
    diffs = []
    for p in res.per_layer:
        k = p.index
        scaler = StandardScaler().fit(x[splits["train"].items, k])
        xs = {s: scaler.transform(x[splits[s].items, k]) for s in splits}
        fits = [LogisticRegression(C=c, max_iter=2000).fit(xs["train"], y["train"])
                for c in (0.001, 0.01, 0.1, 1.0, 10.0)]
        best = max(fits, key=lambda m: m.score(xs["val"], y["val"]))
        diffs.append(p.test["accuracy"] - best.score(xs["test"], y["test"]))
    diffs = np.array(diffs)
    assert np.abs(diffs).mean() <= 0.02, diffs
    assert diffs.min() >= -0.04, diffs


def test_test_labels_never_select():
    entry, splits = planted(n=400, strength=0.4)
    cfg = ProbeConfig(heads=["linear", "mlp"], **FAST)
    a = run_probe(Classes(classes=["c0", "c1", "c2", "c3"]), entry, splits, cfg, progress=False)
    rng = np.random.default_rng(1)
    shuffled = dict(splits)
    shuffled["test"] = SplitData(splits["test"].items,
                                 [f"c{k}" for k in rng.integers(0, 4, len(splits["test"].items))],
                                 splits["test"].uids)
    b = run_probe(Classes(classes=["c0", "c1", "c2", "c3"]), entry, shuffled, cfg, progress=False)
    assert [p.chosen for p in a.per_layer] == [p.chosen for p in b.per_layer]
    assert [p.val for p in a.per_layer] == [p.val for p in b.per_layer]
    assert a.best.layer == b.best.layer and a.best.chosen == b.best.chosen
    # The change did reach the test scores (the test is not vacuous).
    assert [p.test for p in a.per_layer] != [p.test for p in b.per_layer]


def test_same_seed_same_result_and_seeds_recorded():
    entry, splits = planted(n=300)
    cfg = ProbeConfig(seeds=2, **FAST)
    a = run_probe(Classes(), entry, splits, cfg, seed=7, progress=False)
    b = run_probe(Classes(), entry, splits, cfg, seed=7, progress=False)
    c = run_probe(Classes(), entry, splits, cfg, seed=8, progress=False)
    assert json.dumps([asdict(p) for p in a.per_layer]) == json.dumps([asdict(p) for p in b.per_layer])
    for k in a.predictions:
        assert np.stack(a.predictions[k]).shape == (2, len(splits["test"].items), 4)
        np.testing.assert_array_equal(a.predictions[k], b.predictions[k])
    assert any(not np.array_equal(a.predictions[k], c.predictions[k]) for k in a.predictions)
    assert all([s.seed for s in p.seeds] == [0, 1] for p in a.per_layer)


@pytest.mark.parametrize("widths", [None, [3, 5]])
@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_bank_steps_match_autograd_and_torch_adam(kind, widths):
    """Hand-written gradients and the stacked Adam (per-head lr and weight decay, heads of one
    layer in one product, chunked) against autograd and torch.optim.Adam head by head; with
    ``widths``, layer 0 is zero-padded beyond column 3 and its heads' products leave it out."""
    from mirprobe.probes.adam import HeadAdam
    from mirprobe.probes.heads import chunks
    from mirprobe.probes.train import Group, train_chunk

    torch.manual_seed(0)
    specs = [HeadSpec(layer, kind, lr, 0.0, wd, 0)
             for layer, lr, wd in [(0, 1e-3, 0.0), (0, 1e-2, 1e-2), (1, 5e-3, 0.0), (-1, 5e-3, 0.0),
                                   (-1, 1e-2, 1e-3)]]
    bank = HeadBank.create(specs, 0, num_layers=2, dim=5, out=3, hidden=7,
                           device=torch.device("cpu"), widths=widths)
    opt = HeadAdam(bank, torch.tensor([s.lr for s in specs]),
                      torch.tensor([s.weight_decay for s in specs]))
    group = Group(specs, np.arange(5), bank, opt, (bank.big, bank.small), *[None] * 6,
                  chunk_bytes=16 * (bank.big[0].numel() + bank.small.shape[1]
                                    + 4 * (3 + 7 * (kind == "mlp"))) * 2, batch_rows=4)
    group.plan()
    assert group.ranges == [(0, 2), (2, 3), (3, 5)]  # the weighted heads share one product
    refs = [{k: v[h].detach().clone().requires_grad_(True) for k, v in bank.params.items()}
            for h in range(5)]
    ref_opts = [torch.optim.Adam(r.values(), lr=s.lr, weight_decay=s.weight_decay)
                for r, s in zip(refs, specs, strict=True)]
    task = Classes(classes=["a", "b", "c"])
    for step in range(6):
        x = torch.randn(4, 2, 5)
        if widths:
            x[:, 0, widths[0]:] = 0
        y = torch.randint(0, 3, (4,))
        for a, b in group.ranges:
            train_chunk(task, group, a, b, x, y, step)
        for h, (r, o) in enumerate(zip(refs, ref_opts, strict=True)):
            xin = x[:, specs[h].layer] if specs[h].layer >= 0 else torch.einsum(
                "l,bld->bd", torch.softmax(r["alpha"], 0), x)
            if kind == "mlp":
                xin = torch.relu(xin @ r["w1"].T + r["b1"])
            out = xin @ r["w2"] + r["b2"]
            o.zero_grad()
            F.cross_entropy(out, y).backward()
            o.step()
    for h, r in enumerate(refs):
        for k, v in r.items():
            torch.testing.assert_close(bank.params[k][h], v, rtol=1e-5, atol=1e-6)
    assert chunks(bank, None) == [(0, 5)]


@pytest.mark.parametrize("how", ["mean", "max", "vote", "geomean"])
def test_song_ensembles_match_naive(how):
    rng = np.random.default_rng(0)
    tracks = rng.normal(size=(2, 7, 3)).astype(np.float32)
    unit = np.array([0, 0, 1, 2, 2, 2, 1])
    got = merge_units(torch.from_numpy(tracks), torch.from_numpy(unit), 3, how).numpy()
    for h in range(2):
        for u in range(3):
            t = tracks[h, unit == u]
            p = np.exp(t) / np.exp(t).sum(1, keepdims=True)
            expect = {"mean": t.mean(0), "max": np.log(p.max(0)),
                      "geomean": np.log(p).mean(0),
                      "vote": np.log(np.eye(3)[p.argmax(1)].mean(0) + 1e-3 * p.mean(0))}[how]
            np.testing.assert_allclose(got[h, u], expect, rtol=1e-4, atol=1e-5)


def test_songs_merged_and_ensemble_chosen():
    entry, splits = planted(n=400, strength=0.5)
    # Pairs of tracks form a song; labels agree within a song.
    for s, sd in splits.items():
        uids = [f"{s}{i // 2}" for i in range(len(sd.items))]
        labels = [sd.labels[2 * (i // 2)] for i in range(len(sd.items))]
        splits[s] = SplitData(sd.items, labels, uids)
    res = run_probe(SongClasses(), entry, splits, ProbeConfig(**FAST), progress=False)
    n_songs = (len(splits["test"].items) + 1) // 2
    assert len(res.test_uids) == n_songs == len(set(res.test_uids)) == len(res.test_labels)
    assert [p.shape for p in res.predictions["layer2"]] == [(n_songs, 4)]
    assert all(p.chosen["aggregate"] in ("mean", "max", "vote", "geomean") for p in res.per_layer)


def _onset_job():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 40, 60)
    offsets = np.r_[0, np.cumsum(lengths)]
    x = rng.normal(size=(offsets[-1], 3, 8)).astype(np.float32)
    labels = []
    for i in range(60):
        on = sorted(rng.choice(lengths[i], 5, replace=False).tolist())
        x[offsets[i] + np.array(on), 1, 0] += 6.0  # layer 1 shows the onsets
        labels.append(on)
    entry = FeatureEntry.from_arrays(x.astype(np.float16), offsets, frame_rate=10.0, view="frame")
    cuts = {"train": np.arange(40), "val": np.arange(40, 50), "test": np.arange(50, 60)}
    splits = {s: SplitData(i, [labels[k] for k in i], [str(k) for k in i]) for s, i in cuts.items()}
    return entry, splits


@pytest.mark.parametrize("heads", [["linear"], ["ridge"]])
def test_frame_view_trains_per_frame(heads):
    entry, splits = _onset_job()
    res = run_probe(FrameOnsets(), entry, splits, ProbeConfig(heads=heads, lr=[1e-2],
                                                              max_epochs=30), progress=False)
    by_layer = {p.layer: p for p in res.per_layer}
    assert by_layer["layer1"].test["frame_accuracy"] > 0.8
    assert by_layer["layer0"].test["frame_accuracy"] < 0.3
    [pred] = res.predictions["layer1"]
    assert len(pred) == 10 and isinstance(pred[0], list)


def test_streamed_features_train_like_resident(tmp_path):
    entry, splits = planted(n=400, windows=3)
    np.save(tmp_path / "features.npy", entry.features)
    disk = FeatureEntry(np.load(tmp_path / "features.npy", mmap_mode="r"), entry.offsets,
                        entry.meta)
    cfg = dict(heads=["linear"], lr=[1e-2], max_epochs=10)
    resident = run_probe(Classes(), disk, splits, ProbeConfig(**cfg), progress=False)
    budget = entry.features.nbytes / 10 / 2**30
    streamed = run_probe(Classes(), disk, splits, ProbeConfig(memory_budget_gb=budget, **cfg),
                         progress=False)
    assert resident.timings["resident"] == 1.0 and streamed.timings["resident"] == 0.0
    assert streamed.best.index == resident.best.index
    for a, b in zip(resident.per_layer, streamed.per_layer, strict=True):
        assert abs(a.test["accuracy"] - b.test["accuracy"]) <= 0.06


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_streaming_peak_memory_stays_in_budget(tmp_path):
    """A 64 MB feature file, a 16 MB budget: the process peak grows by less than the budget
    plus a fixed margin (and far less than the file)."""
    script = textwrap.dedent(f"""
        import json, numpy as np, torch
        torch.set_num_threads(1)
        from mirprobe.features import FeatureEntry
        from mirprobe.probes import ProbeConfig, SplitData, run_probe
        from tests.test_probes import Classes
        rows, layers, dim = 16_000, 8, 256
        f = np.lib.format.open_memmap({str(tmp_path / "f.npy")!r}, mode="w+", dtype=np.float16,
                                      shape=(rows, layers, dim))
        rng = np.random.default_rng(0)
        y = rng.integers(0, 2, rows)
        for a in range(0, rows, 4000):
            block = rng.normal(size=(4000, layers, dim)).astype(np.float16)
            block[:, 3, 0] += 2 * y[a:a + 4000]
            f[a:a + 4000] = block
        f.flush(); del f, block
        x = np.load({str(tmp_path / "f.npy")!r}, mmap_mode="r")
        entry = FeatureEntry(x, np.arange(rows + 1), {{"view": "clip", "frame_rate": 1.0,
                             "layer_names": [f"l{{i}}" for i in range(layers)], "id": "m"}})
        labels = [f"c{{k}}" for k in y]
        cut = {{"train": np.arange(0, 13000), "val": np.arange(13000, 14500),
               "test": np.arange(14500, rows)}}
        splits = {{s: SplitData(i, [labels[k] for k in i], [str(k) for k in i]) for s, i in cut.items()}}
        cfg = ProbeConfig(heads=["linear"], lr=[1e-2], max_epochs=2, batch_size=256,
                          weighted_sum=False, layers=[2, 3], memory_budget_gb=16 / 1024)
        def rss(field):
            for line in open("/proc/self/status"):
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        run_probe(Classes(), entry, splits, cfg, progress=False)  # warm-up: imports, allocator
        base = rss("VmRSS:")
        open("/proc/self/clear_refs", "w").write("5")
        res = run_probe(Classes(), entry, splits, cfg, progress=False)
        print(json.dumps({{"peak": rss("VmHWM:") - base, "resident": res.timings["resident"],
                          "acc": res.per_layer[1].test["accuracy"]}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["resident"] == 0.0
    assert got["acc"] > 0.8
    assert got["peak"] < (16 + 16) * 2**20, got


def test_frame_view_batches_hold_whole_windows() -> None:
    from mirprobe.probes.engine import batch_rows

    cfg = ProbeConfig(batch_size=8)
    clip = FeatureEntry.from_arrays(np.zeros((4, 2, 3), np.float16), [0, 4], frame_rate=50.0)
    frame = FeatureEntry.from_arrays(np.zeros((4, 2, 3), np.float16), [0, 4], frame_rate=50.0,
                                     view="frame")
    assert batch_rows(cfg, clip, frame=False) == 8
    assert batch_rows(cfg, frame, frame=True) == 8  # no window recorded: rows are the unit
    frame.meta["window_s"] = 5.0
    assert batch_rows(cfg, frame, frame=True) == 8 * 250  # 8 windows of 250 frames


class Values(Task):
    """A minimal regression task (standardised targets), independent of the task plugins."""

    name: ClassVar[str] = "values"
    kind: ClassVar[str] = "regression"
    metrics: ClassVar[tuple[str, ...]] = ("r2",)
    output_dim = 2

    def fit(self, train_labels):
        v = np.asarray(train_labels, dtype=np.float64)
        self.mean, self.std = v.mean(0), v.std(0)

    def encode(self, label):
        return ((np.asarray(label) - self.mean) / self.std).astype(np.float32)

    def loss(self, logits, targets):
        return (logits - targets).square().flatten(1).mean(1)

    def score(self, outputs, targets):
        return -(outputs - targets).square().flatten(1).mean(1)

    def predictions(self, outputs, *, frame_rate=None):
        return np.asarray(outputs) * self.std + self.mean

    def evaluate(self, predictions, labels):
        from sklearn.metrics import r2_score

        return {"r2": float(r2_score(np.asarray(labels), predictions))}

    def chance(self, train_labels, test_labels):
        return {"r2": 0.0}


def _standardised(entry, splits, layer):
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(entry.features, dtype=np.float64)
    if layer == -1:  # the mean of the standardised layers, standardised again
        z = StandardScaler().fit(x[splits["train"].items].reshape(len(splits["train"].items), -1))
        xs = {s: z.transform(x[splits[s].items].reshape(len(splits[s].items), -1)).reshape(
            -1, x.shape[1], x.shape[2]).mean(1) for s in splits}
    else:
        xs = {s: x[splits[s].items, layer] for s in splits}
    scaler = StandardScaler().fit(xs["train"])
    return {s: scaler.transform(v) for s, v in xs.items()}


@pytest.mark.parametrize("alpha", [1e-2, 1.0])
def test_ridge_layers_match_sklearn_ridge_classifier(alpha):
    from sklearn.linear_model import RidgeClassifier

    entry, splits = planted(n=600, dim=24, strength=0.4, seed=2)
    res = run_probe(Classes(), entry, splits, ProbeConfig(heads=["ridge"], alpha=[alpha]),
                    progress=False)
    assert res.layers == ["layer0", "layer1", "layer2", "layer3", "weighted"]
    assert res.num_heads == 5
    y = {s: np.array([int(lab[1:]) for lab in splits[s].labels]) for s in splits}
    n = len(splits["train"].items)
    for p in res.per_layer:
        assert p.chosen == {"head": "ridge", "alpha": alpha}
        xs = _standardised(entry, splits, -1 if p.weighted else p.index)
        ref = RidgeClassifier(alpha=alpha * n).fit(xs["train"], y["train"])
        assert abs(p.test["accuracy"] - ref.score(xs["test"], y["test"])) <= 0.01, p.layer
        assert abs(p.val["accuracy"] - ref.score(xs["val"], y["val"])) <= 0.01, p.layer
    assert res.best.index in (2, 4)


def test_ridge_regression_matches_sklearn_ridge_and_selects_on_validation():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    entry, splits = planted(n=500, dim=40, seed=4)
    rng = np.random.default_rng(0)
    x2 = np.asarray(entry.features[:, 2], dtype=np.float64)
    target = np.stack([x2[:, :3].sum(1), x2[:, 3] - x2[:, 4]], 1) + rng.normal(size=(500, 2))
    splits = {s: SplitData(d.items, target[d.items].tolist(), d.uids) for s, d in splits.items()}
    alphas = [1e-3, 1e-1, 10.0, 1e3]
    res = run_probe(Values(), entry, splits, ProbeConfig(heads=["ridge"], alpha=alphas,
                                                         weighted_sum=False), progress=False)
    n = len(splits["train"].items)
    for p in res.per_layer:
        xs = _standardised(entry, splits, p.index)
        fits = {a: Ridge(alpha=a * n).fit(xs["train"], target[splits["train"].items])
                for a in alphas}
        r2 = {a: {s: r2_score(target[splits[s].items], m.predict(xs[s])) for s in ("val", "test")}
              for a, m in fits.items()}
        best = max(alphas, key=lambda a: r2[a]["val"])
        assert p.chosen["alpha"] == best
        assert abs(p.test["r2"] - r2[best]["test"]) <= 0.01, p.layer
    assert res.best.index == 2


def test_ridge_streamed_features_give_the_same_heads(tmp_path):
    entry, splits = planted(n=400, windows=3, dim=32)
    np.save(tmp_path / "features.npy", entry.features)
    disk = FeatureEntry(np.load(tmp_path / "features.npy", mmap_mode="r"), entry.offsets,
                        entry.meta)
    cfg = dict(heads=["ridge"], alpha=[1e-2, 1.0, 100.0])
    resident = run_probe(Classes(), disk, splits, ProbeConfig(**cfg), progress=False)
    budget = entry.features.nbytes / 10 / 2**30
    streamed = run_probe(Classes(), disk, splits, ProbeConfig(memory_budget_gb=budget, **cfg),
                         progress=False)
    assert resident.timings["resident"] == 1.0 and streamed.timings["resident"] == 0.0
    assert [p.chosen for p in resident.per_layer] == [p.chosen for p in streamed.per_layer]
    for k, v in resident.predictions.items():
        np.testing.assert_allclose(streamed.predictions[k], v, rtol=1e-4, atol=1e-5)


def test_dropout_gate_matches_a_python_reference() -> None:
    """The int32 mask hash and its float comparison against the same in Python integers (mod
    2**32), so a platform whose int32 products do not wrap fails here; and the masks keep the
    stated share of units, independently across heads and steps."""
    m32, mul = 0xFFFFFFFF, 0x45D9F3B

    def mix(x: int) -> int:
        x ^= x >> 16
        x = (x * mul) & m32
        x ^= x >> 16
        x = (x * mul) & m32
        return x ^ (x >> 16)

    seeds = [3, 0xFFFFFFF0, 123456789]
    keep = [0.8, 0.5, 1.0]
    hidden, rows = 16, 12
    for step in (0, 7, 2**33 + 5):
        gate = dropout_gate(torch.tensor(seeds), step, torch.tensor(keep), hidden, rows)
        for h, (seed, k) in enumerate(zip(seeds, keep, strict=True)):
            key = mix(seed ^ mix(step & m32))
            for j in range(hidden):
                for b in range(rows):
                    u = ((mix(b * hidden + j) ^ key) * mul) & m32
                    r = u ^ 0x80000000  # the signed product + 2**31
                    kept = r >> 8 < int(np.floor(k * 2.0**24))
                    assert gate[h, j, b].item() == pytest.approx(1 / k if kept else 0.0), (h, j, b)
    big = dropout_gate(torch.arange(64), 0, torch.full((64,), 0.8), 512, 64) > 0
    assert abs(big.float().mean().item() - 0.8) < 0.003
    nxt = dropout_gate(torch.arange(64), 1, torch.full((64,), 0.8), 512, 64) > 0
    both = (big & nxt).float().mean().item()  # independent masks: 0.8 · 0.8
    assert abs(both - 0.64) < 0.004
    assert abs((big[0] & big[1]).float().mean().item() - 0.64) < 0.02


@pytest.fixture(params=[True, False], ids=["onednn", "mkl"])
def route(request, monkeypatch) -> bool:  # noqa: ANN001
    """Both product routes on any CPU: oneDNN convolutions (AMD CPUs) and torch.mm/bmm."""
    from mirprobe.probes import gemm

    monkeypatch.setattr(gemm, "amd_cpu", lambda: request.param)
    return request.param


def test_onednn_products_match_float64_matmul(route: bool) -> None:
    """The heads' products as 1×1 convolutions (oneDNN on AMD CPUs) or torch.mm against a float64
    matmul, with dense and padded (non-dense) left factors and a strided output, as the bank
    uses them."""
    from mirprobe.probes.gemm import mm_into, onednn_products

    gen = torch.Generator().manual_seed(0)
    for p, k, r in [(96, 40, 8), (32, 8, 40), (7, 3, 5)]:
        a = torch.randn(p, k + 4, generator=gen)[:, :k]  # rows of a padded layer
        b = torch.randn(r, k, generator=gen).T  # a transposed view, as x.T in the forward pass
        out = torch.zeros(p, r + 2)[:, :r]
        mm_into(out, a, b)
        ref = a.double() @ b.double()
        assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
        mm_into(out, a.contiguous(), b.contiguous())
        assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert onednn_products(a) == (route and torch.backends.mkldnn.is_available())
    assert not onednn_products(a.to(torch.bfloat16))


def test_grouped_products_match_float64_bmm(route: bool) -> None:
    """The weighted-sum heads' grouped products (oneDNN on CPUs) against float64 bmm, with the
    strided operands the bank passes."""
    from mirprobe.probes.gemm import grouped_mm, grouped_tmm

    gen = torch.Generator().manual_seed(1)
    for n, p, k, r in [(3, 8, 20, 12), (1, 5, 7, 9)]:
        a = torch.randn(n, p, k, generator=gen).transpose(0, 1)  # [P, n, K], strided
        bt = torch.randn(n, k, r, generator=gen).transpose(1, 2)  # [n, R, K], strided
        ref = torch.bmm(a.double().transpose(0, 1), bt.double().transpose(1, 2)).transpose(0, 1)
        out = grouped_mm(a, bt)
        assert out.shape == (p, n, r)
        assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
        at = torch.randn(n, k, p, generator=gen)
        b = torch.randn(n, r, k, generator=gen).transpose(1, 2)  # [n, K, R], strided
        ref = torch.bmm(at.double().transpose(1, 2), b.double())
        out = grouped_tmm(at, b)
        assert out.shape == (n, p, r)
        assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())

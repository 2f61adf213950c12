"""Batched probe grid against MARBLE's one-configuration-at-a-time loop, on the same features.

    python perf/probe.py                      # 1,000 tracks, 13 × 768, MLP
    python perf/probe.py --tasks genre,tagging,emotion --max-epochs 30
    python perf/probe.py --entry ~/.cache/mirprobe/features/<id> \\
        --task genre --jsonl data/GTZAN/GTZAN      # real features: <jsonl>.{train,val,test}.jsonl
    python perf/probe.py --vs-sklearn --entry ... --task key --jsonl ...
    python perf/probe.py --fresh --rounds 3   # each method of each round in a new process

Features are random with a planted linear signal of the stated size (stronger in the middle
layers), or a real feature entry. Both methods train the same grid (every layer + the weighted
sum × the learning rates, MLP heads by default) with the same hyper-parameters, initial weights
and batch order; the script prints both wall times, their ratio, and the validation-selected
test score of each layer side by side.

``--vs-sklearn`` checks linear probes instead (multiclass tasks): batched linear heads against
scikit-learn's LogisticRegression on the same standardised features, C tuned on validation, per
layer; track probabilities are averaged per song for tasks that group clips by ``ori_uid``.

``--fresh`` runs every method of every round in a new Python process: in one process the plain
loop's speed depends on the allocator state the other runs leave behind (``perf/README.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.optim.adam import adam

from mirprobe.features import FeatureEntry
from mirprobe.plugins import get_task
from mirprobe.probes import ProbeConfig, SplitData, run_probe
from mirprobe.probes.gemm import mm_into
from mirprobe.probes.plain import run_plain
from mirprobe.record import LayerResult

TAGS = [f"tag{i}" for i in range(8)]


def planted(kind: str, tracks: int, layers: int, dim: int, windows: int, seed: int):  # noqa: ANN201
    """Features ``[tracks × windows, layers, dim]`` and labels of one clip task kind."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(tracks, 8))
    strength = 0.6 * np.exp(-0.5 * ((np.arange(layers) - layers * 0.6) / (layers / 4)) ** 2)
    x = rng.normal(size=(tracks * windows, layers, dim)).astype(np.float32)
    mix = rng.normal(size=(layers, 8, dim)) / np.sqrt(8)
    for k in range(layers):
        x[:, k] += (strength[k] * np.repeat(latent, windows, axis=0) @ mix[k]).astype(np.float32)
    if kind == "genre":
        labels = [f"g{k}" for k in (latent[:, :4] @ rng.normal(size=(4, 10))).argmax(1)]
    elif kind == "tagging":
        scores = latent @ rng.normal(size=(8, len(TAGS)))
        labels = [[t for t, s in zip(TAGS, row, strict=True) if s > 0.8] for row in scores]
    else:  # emotion: arousal, valence
        labels = (latent[:, :2] + 0.3 * rng.normal(size=(tracks, 2))).round(4).tolist()
    return x.astype(np.float16), labels


def planted_job(kind: str, args: argparse.Namespace):  # noqa: ANN201
    x, labels = planted(kind, args.tracks, args.layers, args.dim, args.windows, args.seed)
    entry = FeatureEntry.from_arrays(x, np.arange(0, len(x) + 1, args.windows), frame_rate=1.0)
    order = np.random.default_rng(args.seed).permutation(args.tracks)
    a, b = int(0.7 * args.tracks), int(0.85 * args.tracks)
    cuts = {"train": order[:a], "val": order[a:b], "test": order[b:]}
    splits = {s: SplitData(np.sort(i), [labels[k] for k in np.sort(i)],
                           [f"t{k}" for k in np.sort(i)]) for s, i in cuts.items()}
    return get_task(kind), entry, splits


def real_job(args: argparse.Namespace):  # noqa: ANN201
    entry = FeatureEntry.open(Path(args.entry).expanduser())
    # Entry items are resolved audio paths; JSONL rows are matched by file name.
    by_name = {Path(key).name: i for key, i in entry.index().items()}
    splits = {}
    for s in ("train", "val", "test"):
        lines = Path(f"{args.jsonl}.{s}.jsonl").read_text().splitlines()
        rows = [r for r in map(json.loads, filter(str.strip, lines))
                if Path(r["audio_path"]).name in by_name]
        splits[s] = SplitData(np.array([by_name[Path(r["audio_path"]).name] for r in rows]),
                              [r["label"] for r in rows],
                              [str(r.get("ori_uid", r["audio_path"])) for r in rows])
    return get_task(args.task), entry, splits


def run_method(method: str, task, entry, splits, cfg: ProbeConfig):  # noqa: ANN001, ANN201
    """(result, seconds) of one method: the batched engine (float32 or bf16) or the plain loop."""
    if method == "plain":
        plain = run_plain(task, entry, splits, cfg)
        return plain, plain["seconds"]
    if method == "bf16":
        cfg = dataclasses.replace(cfg, dtype="bfloat16")
    t = time.perf_counter()
    result = run_probe(task, entry, splits, cfg, progress=False)
    return result, time.perf_counter() - t


def fresh_run(method: str, argv: list[str]):  # noqa: ANN201
    """``run_method`` in a new interpreter (no allocator or cache state from other runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "out.json"
        subprocess.run([sys.executable, __file__, *argv, "--only", method, "--dump", str(dump)],
                       check=True)
        data = json.loads(dump.read_text())
    result = data["result"]
    if method == "plain":
        result["per_layer"] = {int(k): v for k, v in result["per_layer"].items()}
    else:
        layers = [LayerResult(**{**d, "seeds": []}) for d in result["per_layer"]]
        best = next(p for p in layers if p.layer == result["best"])
        result = SimpleNamespace(per_layer=layers, best=best, num_heads=result["num_heads"])
    return result, data["seconds"]


def dump_method(method: str, path: str, task, entry, splits, cfg: ProbeConfig) -> None:  # noqa: ANN001
    import sklearn.metrics  # noqa: F401 - imported before timing, as in compare()

    result, seconds = run_method(method, task, entry, splits, cfg)
    if method != "plain":
        result = {"per_layer": [dataclasses.asdict(p) for p in result.per_layer], "best": result.best.layer,
                  "num_heads": result.num_heads}
    Path(path).write_text(json.dumps({"seconds": seconds, "result": result}, default=float))


def compare(name: str, task, entry, splits, cfg: ProbeConfig, rounds: int = 1,  # noqa: ANN001
            bf16: bool = False, fresh: list[str] | None = None) -> dict:
    import sklearn.metrics  # noqa: F401 - imported before timing (both methods score with it)

    batched_s, plain_s, bf16_s = [], [], []
    methods = ["batched", "plain", *(["bf16"] if bf16 else [])]
    for _ in range(rounds):  # alternate, so that changes in machine load hit all
        out = {m: (fresh_run(m, fresh) if fresh else run_method(m, task, entry, splits, cfg))
               for m in methods}
        (batched, t_b), (plain, _) = out["batched"], out["plain"]
        batched_s.append(t_b)
        plain_s.append(plain["seconds"])
        if bf16:
            low, t_low = out["bf16"]
            bf16_s.append(t_low)
    t_batched, t_plain = min(batched_s), min(plain_s)
    metric = task.selection_metric
    print(f"\n== {name}: {batched.num_heads} heads, {len(splits['train'].items)} train tracks, "
          f"{entry.num_layers} layers x {entry.dim} dims ==")
    print(f"{'layer':>10} {'batched test':>13} {'plain test':>11} {'diff':>7}   lr (batched/plain)"
          + ("   bf16 test  diff" if bf16 else ""))
    diffs, low_diffs = [], []
    for n, p in enumerate(batched.per_layer):
        ref = plain["per_layer"][-1 if p.weighted else p.index]
        d = 100 * (p.test[metric] - ref["test"][metric])
        diffs.append(d)
        line = (f"{p.layer:>10} {100 * p.test[metric]:13.2f} {100 * ref['test'][metric]:11.2f} "
                f"{d:+7.2f}   {p.chosen['lr']:g}/{ref['config'][1]:g}")
        if bf16:
            q = low.per_layer[n]
            low_diffs.append(100 * (q.test[metric] - p.test[metric]))
            line += f"   {100 * q.test[metric]:9.2f} {low_diffs[-1]:+5.2f}"
        print(line)
    best_plain = max(plain["per_layer"].values(), key=lambda r: r["val"][metric])
    row = {"task": name, "batched_s": t_batched, "plain_s": t_plain,
           "ratio": t_plain / t_batched, "rounds": rounds,
           "batched_rounds": batched_s, "plain_rounds": plain_s,
           "best_batched": 100 * batched.best.test[metric],
           "best_plain": 100 * best_plain["test"][metric],
           "max_layer_diff": float(np.max(np.abs(diffs)))}
    print(f"selected ({metric}, test): batched {row['best_batched']:.2f} "
          f"[{batched.best.layer}] vs plain {row['best_plain']:.2f}")
    print(f"wall time: batched {t_batched:.1f} s, plain {t_plain:.1f} s, ratio {row['ratio']:.2f}x "
          f"(best of {rounds}; rounds batched {', '.join(f'{t:.1f}' for t in batched_s)}, "
          f"plain {', '.join(f'{t:.1f}' for t in plain_s)}; ratio range "
          f"{min(plain_s) / max(batched_s):.2f}-{max(plain_s) / min(batched_s):.2f}x)")
    if bf16:
        row.update(bf16_s=min(bf16_s), bf16_ratio=t_plain / min(bf16_s),
                   best_bf16=100 * low.best.test[metric],
                   bf16_max_layer_dev=float(np.max(np.abs(low_diffs))))
        print(f"bfloat16 head products: {min(bf16_s):.1f} s ({row['bf16_ratio']:.2f}x the plain "
              f"loop); selected {row['best_bf16']:.2f} [{low.best.layer}]; largest per-layer "
              f"test deviation from float32 {row['bf16_max_layer_dev']:.2f} points")
    if "mlp" in cfg.heads:
        row.update(ceiling(plain, t_batched, cfg, entry.dim))
    return row


def ceiling(plain: dict, batched_s: float, cfg: ProbeConfig, dim: int) -> dict:
    """The most any engine could gain over the plain loop on this machine, with the same steps.

    Every head-step of an MLP head needs at least the two large products of its first layer:
    the forward ``W1 x`` and the weight gradient ``dH x`` (``[hidden, dim] x [dim, batch]`` and
    ``[hidden, batch] x [batch, dim]``), and one Adam update of that weight (a pass reading the
    weight, its gradient and both moments and writing three of them back). Timed here for the
    heads of one layer in one product (``[n·hidden, dim]``: as batched as they can be), both
    with bare ``torch.mm`` (MKL on CPUs) and as the engine runs them (``mirprobe.probes.gemm``:
    oneDNN on AMD CPUs), and for their weights in one fused Adam call: the faster products plus
    the update, per head, is a floor no engine can go under with these steps; the plain loop's
    time per head-step over that floor bounds the achievable ratio."""
    n = len(cfg.lr) * len(cfg.dropout) * len(cfg.weight_decay) * cfg.seeds
    x = torch.randn(cfg.batch_size, dim)
    w = torch.randn(n * cfg.hidden, dim)
    g = torch.randn(n * cfg.hidden, cfg.batch_size)
    z, dw = torch.empty(n * cfg.hidden, cfg.batch_size), torch.empty(n * cfg.hidden, dim)

    def bare() -> None:
        torch.mm(w, x.T, out=z)
        torch.mm(g, x, out=dw)

    def engine() -> None:
        mm_into(z, w, x.T)
        mm_into(dw, g, x)

    # Weights, gradients, first and second moments (non-negative: Adam keeps them so).
    state = [[torch.randn(cfg.hidden, dim).abs_() for _ in range(n)] for _ in range(4)]
    steps = [torch.zeros(()) for _ in range(n)]

    def update() -> None:
        adam(*state, [], steps, fused=True, amsgrad=False, beta1=0.9, beta2=0.999, lr=1e-3,
             weight_decay=0.0, eps=1e-8, maximize=False)

    times = {}
    for name, work in (("torch.mm", bare), ("engine", engine), ("adam", update)):
        for _ in range(20):
            work()
        reps = 100
        t = time.perf_counter()
        for _ in range(reps):
            work()
        times[name] = 1000 * (time.perf_counter() - t) / reps / n
    floor_ms = min(times["torch.mm"], times["engine"]) + times["adam"]
    gflops = {k: 2 * 2 * cfg.batch_size * dim * cfg.hidden / v / 1e6 for k, v in times.items()}
    plain_ms = 1000 * plain["seconds"] / max(1, plain["steps"])
    batched_ms = 1000 * batched_s / max(1, plain["steps"])  # both train the same steps
    print(f"head-steps {plain['steps']}: plain {plain_ms:.2f} ms each, batched {batched_ms:.2f} ms; "
          f"per head, the first layer's two products ({n} heads in one product) take {times['torch.mm']:.2f} ms with torch.mm "
          f"({gflops['torch.mm']:.0f} GFLOP/s), {times['engine']:.2f} ms as the engine runs them "
          f"({gflops['engine']:.0f} GFLOP/s), and its Adam update {times['adam']:.2f} ms, so no "
          f"engine can beat the plain loop by more than {plain_ms / floor_ms:.1f}x here with the "
          "same steps")
    return {"head_steps": plain["steps"], "plain_ms_per_head_step": plain_ms,
            "floor_ms_per_head_step": floor_ms, "mm_ms_per_head_step": times["torch.mm"],
            "engine_products_ms_per_head_step": times["engine"],
            "adam_ms_per_head_step": times["adam"], "ceiling": plain_ms / floor_ms}


def vs_sklearn(name: str, task, entry, splits, cfg: ProbeConfig) -> dict:  # noqa: ANN001
    """Per layer: batched linear probe vs LogisticRegression (C on validation), test metric."""
    lin = dataclasses.replace(cfg, heads=["linear"], weighted_sum=False)
    res = run_probe(task, entry, splits, lin, progress=False)
    metric = task.selection_metric
    print(f"\n== {name}: linear probes vs LogisticRegression ({metric}, test) ==")
    diffs = []
    for p in res.per_layer:
        best = sklearn_layer(task, entry, splits, p.index)
        d = 100 * (p.test[metric] - best["test"][metric])
        diffs.append(d)
        print(f"{p.layer:>10} batched {100 * p.test[metric]:6.2f}  "
              f"sklearn {100 * best['test'][metric]:6.2f}  diff {d:+6.2f}")
    row = {"task": name, "mean_abs_diff": float(np.mean(np.abs(diffs))),
           "worst": float(np.min(diffs))}
    print(f"mean |diff| {row['mean_abs_diff']:.2f} points; worst layer {row['worst']:+.2f}")
    return row


def sklearn_layer(task, entry, splits, layer: int,  # noqa: ANN001
                  cs: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)) -> dict:
    """LogisticRegression on one layer's standardised windows, C chosen on validation:
    ``{"C", "val": metrics, "test": metrics}``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    metric = task.selection_metric
    data = {s: _tracks(task, entry, splits[s], layer) for s in splits}
    scaler = StandardScaler().fit(data["train"][0])
    scored = []
    for c in cs:
        model = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(data["train"][0]),
                                                           data["train"][1])
        scored.append({"C": c, **{s: _sk_eval(task, model, scaler, data[s], splits[s])
                                  for s in ("val", "test")}})
    return max(scored, key=lambda d: d["val"][metric])


def _tracks(task, entry, split: SplitData, layer: int):  # noqa: ANN001, ANN202
    """Window rows of one layer with their tracks' targets, and each row's track."""
    rows, track = [], []
    for t, i in enumerate(split.items):
        sl = entry.rows(int(i))
        rows.append(np.arange(sl.start, sl.stop))
        track += [t] * (sl.stop - sl.start)
    rows = np.concatenate(rows)
    y = np.array([int(task.encode(lab)) for lab in split.labels])
    return np.asarray(entry.features[rows, layer], dtype=np.float64), y[track], np.array(track)


def _sk_eval(task, model, scaler, data, split: SplitData) -> dict:  # noqa: ANN001
    """Mean log-probability per track, then per song (``ori_uid``) when the task groups."""
    x, _, track = data
    logp = np.full((len(x), task.output_dim), -30.0)
    logp[:, model.classes_] = model.predict_log_proba(scaler.transform(x))
    units = [str(u) for u in split.uids] if task.group_by_uid else list(range(len(split.items)))
    index = {u: n for n, u in enumerate(dict.fromkeys(units))}
    unit_of_row = np.array([index[units[t]] for t in track])
    out = np.zeros((len(index), task.output_dim))
    np.add.at(out, unit_of_row, logp)
    out /= np.bincount(unit_of_row)[:, None]
    first = {}
    for t, u in enumerate(units):
        first.setdefault(index[u], t)
    labels = [split.labels[first[n]] for n in range(len(index))]
    return task.evaluate(task.predictions(out), labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", default="genre", help="planted clip tasks: genre,tagging,emotion")
    ap.add_argument("--tracks", type=int, default=1000)
    ap.add_argument("--layers", type=int, default=13)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--windows", type=int, default=1, help="windows (rows) per track")
    ap.add_argument("--heads", default="mlp")
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--patience", type=int, default=10, help="early-stopping patience (epochs)")
    ap.add_argument("--weight-decay", default="0",
                    help="L2 grid, comma-separated (with --vs-sklearn: as C is tuned for sklearn)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (both methods)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1, help="timed runs of each method (best of)")
    ap.add_argument("--bf16", action="store_true",
                    help="also run the batched grid with probe.dtype=bfloat16; its deviation")
    ap.add_argument("--fresh", action="store_true",
                    help="run each method of each round in a new Python process")
    ap.add_argument("--only", choices=["batched", "plain", "bf16"], help=argparse.SUPPRESS)
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    ap.add_argument("--vs-sklearn", action="store_true",
                    help="linear probes against LogisticRegression instead of the plain loop")
    ap.add_argument("--entry", help="a feature entry folder (real features)")
    ap.add_argument("--task", help="task plugin for --entry")
    ap.add_argument("--jsonl", help="JSONL prefix for --entry: <prefix>.{train,val,test}.jsonl")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ProbeConfig(heads=args.heads.split(","), max_epochs=args.max_epochs,
                      patience=args.patience, lr_patience=max(1, args.patience // 2),
                      weight_decay=[float(w) for w in args.weight_decay.split(",")])
    jobs = ([(args.task, *real_job(args))] if args.entry else
            [(k, *planted_job(k, args)) for k in args.tasks.split(",")])
    if args.only:  # a worker of --fresh: one method on the first job, written to --dump
        dump_method(args.only, args.dump, *jobs[0][1:], cfg)
        return
    if args.vs_sklearn:
        rows = [vs_sklearn(*job, cfg) for job in jobs]
    else:
        rows = []
        for job in jobs:
            # Workers get this command line with the one task of the job.
            argv = [a for a in sys.argv[1:] if a not in ("--fresh", "--bf16")]
            fresh = ([*argv, "--tasks", job[0], "--rounds", "1"] if args.fresh else None)
            rows.append(compare(*job, cfg, rounds=args.rounds, bf16=args.bf16, fresh=fresh))
    print("\n" + "\n".join(json.dumps(r) for r in rows))


if __name__ == "__main__":
    main()

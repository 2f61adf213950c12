"""Ridge probes (``probe.heads=[ridge]``) against linear SGD heads and scikit-learn, same features.

    python perf/ridge.py                                  # large synthetic suite, handcrafted, genre + key
    python perf/ridge.py --size quick --tasks genre,key,tagging,emotion --rounds 3
    python perf/ridge.py --model random --threads 1

For each task, on one feature entry (extracted once into $MIRPROBE_HOME, or ~/.cache/mirprobe):
- the probe stage with ridge heads (every layer + the mean of layers × the penalty grid), best
  of ``--rounds`` runs, against linear SGD heads over MARBLE's six learning rates (every layer
  + the learned weighted sum, Adam, early stopping), best of ``--rounds`` runs, rounds
  alternating; the ratio of the two and the spread of each;
- the validation-selected test score of ridge, of the linear SGD heads, and of scikit-learn's
  LogisticRegression with C tuned on validation (multiclass tasks), each selecting its layer
  on validation among the single layers.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from probe import sklearn_layer  # perf/probe.py

from mirprobe.config import load_run_config
from mirprobe.models import load_model
from mirprobe.pipeline import Runner
from mirprobe.probes import ProbeConfig, run_probe
from mirprobe.probing import usable_splits
from mirprobe.specs import model_specs, task_specs

MARBLE_LR = [5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2]


def feature_jobs(model: str, tasks: list[str], size: str, seed: int):  # noqa: ANN201
    """``(name, task, entry, splits)`` per task, features extracted once through the pipeline."""
    cfg = load_run_config("fast", [f"models=[{model}]", f"tasks=[{','.join(tasks)}]",
                                   f"synthetic.size={size}", f"synthetic.seed={seed}",
                                   "progress=false"])
    runner = Runner(cfg)
    name, options = model_specs(cfg)[0]
    extractor = load_model(name, **options)
    jobs = []
    for spec in task_specs(cfg):
        entry = runner.entry(extractor, spec)
        task = spec.make()
        splits, _ = usable_splits(spec, task, entry, runner.datasets.dataset(spec))
        jobs.append((spec.name, task, entry, splits))
    return jobs


def timed(task, entry, splits, cfg: ProbeConfig):  # noqa: ANN001, ANN201
    t = time.perf_counter()
    res = run_probe(task, entry, splits, cfg, progress=False)
    return time.perf_counter() - t, res


def selected(res, metric: str, sign: float) -> dict:  # noqa: ANN001
    """The single layer chosen on validation: ``{"layer", "val", "test"}`` (×100)."""
    single = [p for p in res.per_layer if not p.weighted]
    p = max(single, key=lambda q: sign * q.val[metric])
    return {"layer": p.layer, "val": 100 * p.val[metric], "test": 100 * p.test[metric],
            "chosen": p.chosen}


def compare(name: str, task, entry, splits, rounds: int, sklearn: bool) -> dict:  # noqa: ANN001
    ridge_cfg = ProbeConfig(heads=["ridge"])
    sgd_cfg = ProbeConfig(heads=["linear"], lr=MARBLE_LR)
    ridge_s, sgd_s = [], []
    for _ in range(rounds):  # alternate, so that load changes hit both
        t, ridge = timed(task, entry, splits, ridge_cfg)
        ridge_s.append(t)
        t, sgd = timed(task, entry, splits, sgd_cfg)
        sgd_s.append(t)
    metric, sign = task.selection_metric, 1.0 if task.higher_is_better else -1.0
    print(f"\n== {name}: {len(splits['train'].items)}/{len(splits['val'].items)}/"
          f"{len(splits['test'].items)} tracks, {entry.num_layers} layers × {entry.dim} dims, "
          f"{entry.rows(len(entry.offsets) - 2).stop} rows ==")
    print(f"probe stage: ridge {min(ridge_s):.2f} s (rounds {', '.join(f'{t:.2f}' for t in ridge_s)}; "
          f"{ridge.num_heads} heads), linear SGD × 6 lr {min(sgd_s):.1f} s "
          f"(rounds {', '.join(f'{t:.1f}' for t in sgd_s)}; {sgd.num_heads} heads); "
          f"ratio {min(sgd_s) / min(ridge_s):.1f}x (best of {rounds}; worst/worst "
          f"{max(sgd_s) / max(ridge_s):.1f}x)")
    row = {"task": name, "ridge_s": min(ridge_s), "sgd_s": min(sgd_s),
           "ratio": min(sgd_s) / min(ridge_s),
           "ridge": selected(ridge, metric, sign), "sgd": selected(sgd, metric, sign)}
    print(f"{'layer':>10} {'ridge test':>11} {'SGD test':>9}" + ("  sklearn LR test (C)" if sklearn else ""))
    sk = []
    for p, q in zip(ridge.per_layer, sgd.per_layer, strict=True):
        line = f"{p.layer:>10} {100 * p.test[metric]:11.2f} {100 * q.test[metric]:9.2f}"
        if sklearn and not p.weighted:
            ref = sklearn_layer(task, entry, splits, p.index)
            sk.append((p.layer, 100 * ref["val"][metric], 100 * ref["test"][metric]))
            line += f"  {100 * ref['test'][metric]:8.2f} ({ref['C']:g})"
        print(line)
    if sk:
        layer, _, test = max(sk, key=lambda r: sign * r[1])
        row["sklearn"] = {"layer": layer, "test": test}
        row["ridge_minus_sklearn"] = row["ridge"]["test"] - test
    r, s = row["ridge"], row["sgd"]
    print(f"selected on validation ({metric}, test): ridge {r['test']:.2f} [{r['layer']}, "
          f"alpha {r['chosen']['alpha']:g}], linear SGD {s['test']:.2f} [{s['layer']}, lr "
          f"{s['chosen']['lr']:g}]" + (f", sklearn LogisticRegression {row['sklearn']['test']:.2f} "
                                       f"[{row['sklearn']['layer']}]; ridge − sklearn "
                                       f"{row['ridge_minus_sklearn']:+.2f} points" if sk else ""))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="handcrafted")
    ap.add_argument("--tasks", default="genre,key", help="tasks of the synthetic suite")
    ap.add_argument("--size", default="large", help="synthetic suite size: tiny, quick, large")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="timed runs of each method (best of)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name, task, entry, splits in feature_jobs(args.model, args.tasks.split(","), args.size,
                                                  args.seed):
        rows.append(compare(name, task, entry, splits, args.rounds, task.kind == "multiclass"))
    print("\n" + "\n".join(json.dumps(r, default=float) for r in rows))
    ratios = ", ".join(f"{r['task']} {r['ratio']:.0f}x" for r in rows)
    print(f"ridge speed-up: {ratios}; min {np.min([r['ratio'] for r in rows]):.0f}x")


if __name__ == "__main__":
    main()

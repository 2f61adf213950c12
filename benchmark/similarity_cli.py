"""``mirprobe similarity MODEL [MODEL2]``: linear CKA between layers, as a CSV matrix and a heatmap.

The features are the run config's feature entries for one task (extracted into the cache when
missing, found there otherwise), so the items are the task's own; two models are compared on
the items both have features for.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mirprobe.errors import UserError

DESCRIPTION = """\
Linear CKA (unbiased HSIC) between every pair of layers of MODEL, or between the layers of MODEL
and MODEL2, on the items of one task of a run config. Each item is the mean of its feature rows.
Writes cka.csv, info.json and a heatmap (PNG, SVG) to <work folder>/similarity/<name>/
(`mirprobe publish` shows them). Overrides are
key=value (work_dir, device, extract.*, tasks …), e.g.
  mirprobe similarity musicnn-mtt --task genre
  mirprobe similarity handcrafted random --task key --split test work_dir=/tmp/mp"""
SPLITS = ("all", "train", "val", "test")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mirprobe similarity`` to the ``mirprobe`` parser."""
    p = subparsers.add_parser("similarity", help="linear CKA between the layers of one or two models",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="MODEL [MODEL2] [KEY=VALUE]")
    _options(p)
    p.set_defaults(func=cmd_similarity)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="run config giving tasks and options "
                   "(default: quickstart)")
    p.add_argument("--task", default=None, help="task of the run config (default: its first)")
    p.add_argument("--split", default="all", help="items of one split: all (default), train, "
                   "val or test")
    p.add_argument("--memory-gb", type=float, default=0.25,
                   help="memory for the layer cross products (more passes over the items when "
                        "smaller; default 0.25)")


def cmd_similarity(ns: argparse.Namespace) -> int:
    # options may also come after the models: read them from the remainder
    again = argparse.ArgumentParser(prog="mirprobe similarity", add_help=False)
    _options(again)
    again.set_defaults(**{k: v for k, v in vars(ns).items() if k != "args"})
    ns, ns.args = again.parse_known_args(ns.args)
    bad = [a for a in ns.args if a.startswith("--")]
    if bad:
        raise UserError(f"unknown option {bad[0]!r}; see mirprobe similarity --help")
    models = [a for a in ns.args if "=" not in a]
    overrides = [a for a in ns.args if "=" in a]
    if not 1 <= len(models) <= 2:
        raise UserError(f"give one or two models (got {models!r}), then key=value overrides")
    if ns.split not in SPLITS:
        raise UserError(f"--split {ns.split!r} is not allowed; use one of: {', '.join(SPLITS)}")
    matrix, info = similarity(models, overrides, ns.config, ns.task, ns.split,
                              int(ns.memory_gb * 2**30))
    with pd.option_context("display.width", 200, "display.max_columns", 60):
        print(matrix.round(3).to_string())
    for key in info["left_out"]:
        print(f"  left out (no features in both entries): {key}")
    print(f"CKA on {info['items']} items of {info['task']} ({ns.split}) written to {info['out']}")
    return 0


def similarity(models: list[str], overrides: list[str], config: str | None, task: str | None,
               split: str, budget: int) -> tuple[pd.DataFrame, dict]:
    """The CKA matrix of ``models`` (rows: the first model's layers) and what it was made of."""
    from mirprobe.config import load_run_config
    from mirprobe.models import load_model
    from mirprobe.pipeline import Runner
    from mirprobe.similarity import item_chunks, linear_cka, shared_items
    from mirprobe.specs import model_specs, task_specs

    cfg = load_run_config(config, [*overrides, f"models=[{','.join(models)}]"])
    specs = {s.name: s for s in task_specs(cfg)}
    name = task or next(iter(specs))
    if name not in specs:
        raise UserError(f"--task {name!r} is not a task of the run config; use one of: "
                        f"{', '.join(specs)}")
    runner = Runner(cfg)
    dataset = runner.datasets.dataset(specs[name])
    items = dataset.all_items() if split == "all" else dataset.splits[split]
    entries = []
    for model, options in model_specs(cfg):
        entries.append(runner.entry(load_model(model, **options), specs[name]))
    first, second = entries[0], entries[-1]
    pairs, left_out = shared_items(first, second, [it.key for it in items])
    cka = linear_cka(item_chunks(first, second, pairs), len(entries) == 1, budget)
    matrix = pd.DataFrame(cka, index=first.layer_names, columns=second.layer_names)
    stem = "_vs_".join(Path(m).name for m in models) + f"_{name}_{split}"
    out = runner.work.root / "similarity" / stem
    write(matrix, out, models, name, {"split": split, "items": len(pairs),
                                      "left_out": left_out})
    return matrix, {"items": len(pairs), "left_out": left_out, "task": name, "out": out}


def write(matrix: pd.DataFrame, out: Path, models: list[str], task: str,
          info: dict | None = None) -> list[Path]:
    """``cka.csv``, ``info.json`` (models, task, split, items: what ``mirprobe publish`` shows
    with the heatmap) and the heatmap ``cka.png``/``.svg``."""
    from mirprobe.report.protocol_plots import cka_heatmap
    from mirprobe.workfolder import atomic_write_bytes, atomic_write_json

    atomic_write_bytes(out / "cka.csv", matrix.to_csv(float_format="%.6g").encode())
    atomic_write_json(out / "info.json", {"models": models, "task": task, **(info or {})})
    return [out / "cka.csv", out / "info.json",
            *cka_heatmap(matrix, out, "cka", rows=models[0], cols=models[-1],
                         title=f"linear CKA (unbiased) · {task}")]

"""``mirprobe series FOLDER [CONFIG] [key=value ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from mirprobe.errors import UserError

DESCRIPTION = """\
Run the benchmark on every checkpoint of a pre-training run and tabulate each task's score
against the training step (the layer selected on validation, with its 95% interval) and per
step × layer, in the terminal, Markdown, CSV and plots (<work_dir>/series/<name>/).

FOLDER holds one sub-folder per checkpoint with the step in its name (checkpoint-12000/,
step_12000/, 12000/), each a folder mirprobe loads (config.json and weights); or FOLDER is a
YAML file listing them (checkpoints: [{step: 12000, path: ckpt/a}, ...]). Checkpoint × task
pairs already done are reused, so a re-run evaluates only new checkpoints.

CONFIG is a run config (its tasks and protocol; default: the fast ridge protocol when
installed, else quickstart with linear heads), then key=value overrides. Compare two steps
with `mirprobe compare NAME@step=12000 NAME@step=24000`."""


def _split(args: list[str]) -> tuple[str | None, list[str]]:
    configs = [a for a in args if "=" not in a]
    if len(configs) > 1:
        raise UserError(f"unexpected arguments {configs[1:]}: give FOLDER, one config, then key=value")
    return (configs[0] if configs else None), [a for a in args if "=" in a]


def cmd_series(ns: argparse.Namespace) -> int:
    from mirprobe.distributed import launch_from_config
    from mirprobe.series.runner import Series, series_config, watch

    ns = _intermixed(ns)
    if ns.resamples < 100:
        raise UserError(f"--resamples {ns.resamples} is too few for a 95% interval; use 1000 or more")
    if ns.watch is not None and ns.watch <= 0:
        raise UserError(f"--watch {ns.watch}: give the polling interval in seconds, e.g. --watch 600")
    cfg, protocol = series_config(*_split(ns.args))
    series = Series(Path(ns.folder), cfg, protocol, name=ns.name, dist=launch_from_config(cfg),
                    ci=not ns.no_ci, n_boot=ns.resamples, seed=ns.seed)
    if ns.watch:
        watch(series, ns.watch)  # until interrupted
    else:
        series.round()
    return 1 if series.failed else 0  # the others are evaluated; the status flags the failure


def _options(p: argparse.ArgumentParser) -> None:
    from mirprobe.report.stats import N_BOOT, SEED

    p.add_argument("--name", help="series name (default: the folder's name); models are NAME@step=N")
    p.add_argument("--watch", type=float, metavar="SECONDS",
                   help="poll FOLDER for new checkpoints every SECONDS until interrupted")
    p.add_argument("--no-ci", action="store_true", help="skip the bootstrap intervals")
    p.add_argument("--resamples", type=int, default=N_BOOT,
                   help=f"bootstrap resamples (default {N_BOOT})")
    p.add_argument("--seed", type=int, default=SEED, help=f"bootstrap seed (default {SEED})")


def _intermixed(ns: argparse.Namespace) -> argparse.Namespace:
    """Options may also follow CONFIG and the overrides (argparse alone stops at the first)."""
    p = argparse.ArgumentParser(prog="mirprobe series", add_help=False)
    p.add_argument("args", nargs="*")
    _options(p)
    return p.parse_intermixed_args(ns.args, namespace=ns)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mirprobe series`` to the ``mirprobe`` parser."""
    p = subparsers.add_parser("series", help="every checkpoint of a pre-training run: score by step",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="FOLDER", help="checkpoint folder, or a YAML listing")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="CONFIG|KEY=VALUE",
                   help="run config (name or YAML path), then overrides")
    _options(p)
    p.set_defaults(func=cmd_series)

"""The ``mirprobe`` command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from mirprobe.errors import UserError

# Areas that add their own subcommands through a ``register(subparsers)`` function.
COMMAND_MODULES = ("mirprobe.models.cli", "mirprobe.report.cli", "mirprobe.datasets.cli",
                   "mirprobe.cache", "mirprobe.series.cli", "mirprobe.similarity_cli")

RUN_HELP = """\
CONFIG is a run config name under configs/runs/ (default: quickstart) or a YAML path.
Overrides are key=value (omegaconf dotlist), e.g.
  mirprobe run quickstart tasks=[key,genre] probe.lr=[1e-3] work_dir=/tmp/mp"""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="CONFIG|KEY=VALUE",
                   help="run config (name or YAML path), then overrides")


def _split(args: Sequence[str]) -> tuple[str | None, list[str]]:
    config = None
    overrides = []
    for a in args:
        if "=" in a:
            overrides.append(a)
        elif config is None:
            config = a
        else:
            raise UserError(f"unexpected argument {a!r}: give one config, then key=value overrides")
    return config, overrides


def cmd_run(ns: argparse.Namespace, stages: tuple[str, ...]) -> int:
    from mirprobe.config import load_run_config
    from mirprobe.distributed import launch_from_config
    from mirprobe.pipeline import run

    cfg = load_run_config(*_split(ns.args))
    # one process, or several (launch.devices, torchrun, srun): every rank runs the pipeline
    run(cfg, stages=stages, dist=launch_from_config(cfg))
    return 0


def cmd_config(ns: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from mirprobe.config import load_run_config

    print(OmegaConf.to_yaml(load_run_config(*_split(ns.args))), end="")
    return 0


def cmd_synth(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from mirprobe.scores.suite import generate_scores_suite
    from mirprobe.synth import generate_suite

    make, what = ((generate_scores_suite, "scores suite") if ns.command == "scores"
                  else (generate_suite, "synthetic suite"))
    path = make(Path(ns.out), size=ns.size, seed=ns.seed, progress=True)
    print(f"{what} ({ns.size}, seed {ns.seed}) in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mirprobe", description="Layer-by-layer probing of music audio representations on MIR tasks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, stages, text in (
        ("run", ("extract", "probe", "report"), "the whole benchmark: features, probes, leaderboard"),
        ("extract", ("extract",), "feature extraction only (fills the cache)"),
        ("probe", ("probe", "report"), "probing only, on features already extracted"),
    ):
        p = sub.add_parser(name, help=text, description=f"{text}.\n\n{RUN_HELP}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _config_args(p)
        p.set_defaults(func=lambda ns, st=stages: cmd_run(ns, st))
    p = sub.add_parser("config", help="print the resolved run config",
                       description=f"Print the resolved run config.\n\n{RUN_HELP}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_args(p)
    p.set_defaults(func=cmd_config)
    for name, what in (("synth", "synthetic suite"), ("scores", "scores suite (real tunes)")):
        p = sub.add_parser(name, help=f"write the built-in {what} to a folder")
        p.add_argument("--out", required=True, help="folder to write (reused when already complete)")
        p.add_argument("--size", default="quick", help="tiny | quick | large (default: quick)")
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=cmd_synth)
    for module in COMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if not e.name or not module.startswith(e.name):
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    try:
        return int(ns.func(ns) or 0)
    except UserError as e:
        print(f"mirprobe: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mirprobe: interrupted; finished work is kept and a re-run resumes", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

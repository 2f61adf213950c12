"""Subcommands ``leaderboard``, ``layers``, ``compare`` and ``publish`` of ``mirprobe``."""

from __future__ import annotations

import argparse
from pathlib import Path

from mirprobe.errors import UserError
from mirprobe.record import Record
from mirprobe.report.stats import N_BOOT, SEED
from mirprobe.workfolder import WorkFolder


def _common(p: argparse.ArgumentParser, *, ci: bool = True) -> None:
    p.add_argument("--work-dir", type=Path, default=None,
                   help="mirprobe work folder holding records/ (default: $MIRPROBE_HOME, "
                        "else ~/.cache/mirprobe)")
    p.add_argument("--tasks", nargs="+", metavar="TASK", help="only these tasks")
    p.add_argument("--models", nargs="+", metavar="MODEL", help="only these models")
    p.add_argument("--metric", help="another metric than each task's primary one")
    if ci:
        p.add_argument("--resamples", type=int, default=N_BOOT,
                       help=f"bootstrap resamples (default {N_BOOT})")
        p.add_argument("--seed", type=int, default=SEED, help=f"bootstrap seed (default {SEED})")


def _records(ns: argparse.Namespace) -> tuple[list[Record], Path]:
    from mirprobe.results import RecordStore

    root = WorkFolder.at(ns.work_dir).records
    records = RecordStore(root).all()
    if not records:
        raise UserError(f"no run records in {root}; run `mirprobe run` first or pass --work-dir")
    if getattr(ns, "tasks", None):
        records = [r for r in records if r.task in ns.tasks]
    if getattr(ns, "models", None):
        records = [r for r in records if r.model in ns.models]
    if not records:
        raise UserError(f"no run records in {root} match the --tasks/--models given")
    return records, root


def _check_resamples(ns: argparse.Namespace) -> None:
    if getattr(ns, "resamples", N_BOOT) < 100:
        raise UserError(f"--resamples {ns.resamples} is too few for a 95% interval; use 1000 or more")


def cmd_leaderboard(ns: argparse.Namespace) -> int:
    from mirprobe.report.render import leaderboard_caption, leaderboard_display, text_table
    from mirprobe.report.tables import leaderboard

    _check_resamples(ns)
    records, root = _records(ns)
    ci = not ns.no_ci
    board = leaderboard(records, ci=ci, records_dir=root, metric=ns.metric,
                        all_metrics=ns.all_metrics, n_boot=ns.resamples, seed=ns.seed)
    print(text_table(leaderboard_display(board)))
    print(leaderboard_caption(records, ci=ci, n_boot=ns.resamples, seed=ns.seed))
    return 0


def cmd_layers(ns: argparse.Namespace) -> int:
    from mirprobe.report.render import LAYERS_CAPTION, layers_display, text_table
    from mirprobe.report.tables import layer_table

    records, _ = _records(ns)
    print(text_table(layers_display(layer_table(records, ns.model, metric=ns.metric))))
    print(LAYERS_CAPTION)
    return 0


def cmd_compare(ns: argparse.Namespace) -> int:
    from mirprobe.report.compare import compare, parse_spec
    from mirprobe.report.render import COMPARE_CAPTION, compare_display, text_table

    _check_resamples(ns)
    ns.models = None  # both sides are named by A and B
    records, root = _records(ns)
    parse_spec(ns.a), parse_spec(ns.b)
    table = compare(records, ns.a, ns.b, metric=ns.metric, records_dir=root,
                    n_boot=ns.resamples, seed=ns.seed)
    print(text_table(compare_display(table)))
    print(COMPARE_CAPTION.format(n_boot=ns.resamples, seed=ns.seed))
    return 0


def cmd_publish(ns: argparse.Namespace) -> int:
    from mirprobe.report.publish import publish

    _check_resamples(ns)
    records, root = _records(ns)
    paths = publish(records, ns.out, records_dir=root, ci=not ns.no_ci, all_metrics=ns.all_metrics,
                    n_boot=ns.resamples, seed=ns.seed, title=ns.title)
    print(f"published {len(records)} run records to {ns.out}:")
    for path in paths.values():
        print(f"  {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the report subcommands to the ``mirprobe`` parser."""
    p = subparsers.add_parser(
        "leaderboard", help="model × task table: validation-selected layer, test score, 95%% CI",
        description="Model × task table of the validation-selected layer's test score with a "
                    "95% bootstrap interval over test tracks, the chance level and an aggregate.")
    _common(p)
    p.add_argument("--all-metrics", action="store_true", help="every metric, not only the primary")
    p.add_argument("--no-ci", action="store_true", help="skip the bootstrap intervals")
    p.set_defaults(func=cmd_leaderboard)

    p = subparsers.add_parser("layers", help="per-layer validation and test scores of one model",
                              description="Per-layer table of MODEL for each task (validation "
                                          "and test); * marks the layer selected on validation.")
    p.add_argument("model", metavar="MODEL")
    _common(p, ci=False)
    p.set_defaults(func=cmd_layers)

    p = subparsers.add_parser(
        "compare", help="paired bootstrap of A − B per task on the same test tracks",
        description="Paired bootstrap of the difference A − B per task over the same test "
                    "tracks: difference, 95% interval, P(A better). A and B are MODEL (its "
                    "validation-selected layer) or MODEL@LAYER (e.g. MERT-v1-95M@7, @weighted); a "
                    "checkpoint of a series is SERIES@step=N (SERIES@step=N@7 for a layer).")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    _common(p)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser(
        "publish", help="Markdown, LaTeX, CSV, JSON, plots and an HTML page",
        description="Write the leaderboard, layer tables and plots in every format into --out.")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results/)")
    p.add_argument("--title", default="mirprobe results", help="title of the HTML page")
    _common(p)
    p.add_argument("--all-metrics", action="store_true", help="every metric, not only the primary")
    p.add_argument("--no-ci", action="store_true", help="skip the bootstrap intervals")
    p.set_defaults(func=cmd_publish)

"""``mirprobe models list`` and ``mirprobe models verify NAME_OR_PATH``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mirprobe.errors import UserError

WEIGHTED_KINDS = ("mert", "hf")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` command and its ``list`` / ``verify`` subcommands."""
    from mirprobe.models.verify import DEFAULT_LENGTHS

    p = subparsers.add_parser("models", help="list model configs; load and validate a model",
                              description="List model configs, or load a model and validate it.")
    sub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    ls = sub.add_parser("list", help="model configs and whether their weights are found offline")
    ls.set_defaults(func=cmd_list)
    v = sub.add_parser(
        "verify", help="load a model, describe it and run the validator (exit 1 on any failure)",
        description="Load NAME_OR_PATH (a config name under configs/models/, a checkpoint folder or "
                    "a hub name found offline), print what it is and check its output on awkward "
                    "clip lengths: shapes, dtype, finite values, frame count against duration.")
    v.add_argument("model", metavar="NAME_OR_PATH")
    v.add_argument("--kind", help="model kind of a folder, file or hub name (default: from its "
                                  "config.json, config.gin or file name)")
    v.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, … (default: cpu)")
    v.add_argument("--lengths", type=float, nargs="+", default=list(DEFAULT_LENGTHS), metavar="S",
                   help=f"clip lengths in seconds (default: {' '.join(map(str, DEFAULT_LENGTHS))})")
    v.set_defaults(func=cmd_verify)


def _weights_status(options: dict[str, Any]) -> str:
    from mirprobe.models.hub import resolve_checkpoint, weight_files

    if options.get("kind") == "musicnn":
        from mirprobe.models.musicnn import weights_status

        return weights_status(options.get("checkpoint", "MTT_musicnn"))
    preflight = _preflight(options.get("kind"))
    if preflight is not None:
        try:
            preflight(**{k: v for k, v in options.items() if k != "kind"})
        except UserError:
            return "not found"
        return "found"
    if options.get("kind") not in WEIGHTED_KINDS:
        return "no weights needed"
    try:
        folder = resolve_checkpoint(str(options.get("checkpoint", "")))
        weight_files(folder)
    except UserError:
        return "not found"
    return f"found: {folder}"


def _preflight(kind: Any) -> Any:
    """The checks a kind with its own checkpoint layout (muq, musicfm, …) offers, else None."""
    from mirprobe.plugins import available_kinds, load

    kinds = available_kinds()
    if kind in WEIGHTED_KINDS or kind == "musicnn" or kind not in kinds:
        return None
    return getattr(load(kinds[kind]), "preflight", None)


def _row(name: str, options: dict[str, Any]) -> list[str]:
    what = options.get("checkpoint") or options.get("architecture") or options.get("module") or "-"
    fields = ("sample_rate", "frame_rate", "num_layers", "dim", "context_s")
    return [name, str(options.get("kind", "?")), str(what),
            *(str(options[k]) if k in options else "-" for k in fields), _weights_status(options)]


def cmd_list(ns: argparse.Namespace) -> int:
    from mirprobe.config import available
    from mirprobe.models import model_options
    from mirprobe.models.random import architectures

    header = ["name", "kind", "checkpoint/architecture", "rate", "fps", "layers", "dim", "window",
              "weights"]
    rows = [header] + [_row(name, model_options(name)) for name in available("models")]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    names = architectures()
    print(f"\nrandom-init architectures (kind: random, architecture: …): {', '.join(names)}")
    print("weights are looked up offline: $MIRPROBE_MODELS, then the Hugging Face cache")
    return 0


def _load(ns: argparse.Namespace) -> Any:
    from mirprobe.config import available
    from mirprobe.models import detect_kind, load_model
    from mirprobe.models.hf import read_json
    from mirprobe.models.hub import resolve_checkpoint
    from mirprobe.models.mert import DATA2VEC_TYPES, HUBERT_TYPES

    if ns.model in available("models"):
        return load_model(ns.model)
    kind = ns.kind
    source = {"module": ns.model} if kind == "hear" else {"checkpoint": ns.model}
    if kind is None:
        detected = detect_kind(ns.model)
        if detected["kind"] != "mert":
            return load_model(ns.model, **detected, **source)
        folder = resolve_checkpoint(ns.model)
        model_type = read_json(folder / "config.json").get("model_type")
        kind = "mert" if model_type in HUBERT_TYPES + DATA2VEC_TYPES else "hf"
    return load_model(ns.model, kind=kind, **source)


def cmd_verify(ns: argparse.Namespace) -> int:
    from mirprobe.models.verify import describe, verify

    extractor = _load(ns).to(ns.device)
    info = describe(extractor)
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key.ljust(width)}  {value}")
    print()
    checks = verify(extractor, tuple(ns.lengths))
    for c in checks:
        print(f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"mirprobe: {len(failed)} of {len(checks)} checks failed for {extractor.name}",
              file=sys.stderr)
        return 1
    print(f"\nall {len(checks)} checks passed")
    return 0

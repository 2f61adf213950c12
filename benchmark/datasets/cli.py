"""``mirprobe datasets``: ``list``, ``prepare NAME --raw DIR --out DIR``, ``verify TARGET…``."""

from __future__ import annotations

import argparse
from pathlib import Path

PREPARE_HELP = """\
Reads a raw download and writes MARBLE v2 JSONL under OUT/data/<DATASET>/, where MARBLE keeps
its files: run the benchmark on it with `mirprobe run marble data_root=OUT`.
Datasets:
{datasets}"""

VERIFY_HELP = """\
TARGET: a JSONL file (its train/val/test siblings are checked with it), a folder of JSONL
files, a path prefix (data/GTZAN/GTZANGenre), a dataset name (mtt, gtzan, …) or a task config
name (gtzan-genre); names read configs/tasks/<name>.yaml, relative to --data-root.
Reads headers only (fast); --decode also decodes every file. Exit status 1 when a problem is
found (warnings alone exit 0)."""


def _dataset_lines() -> str:
    from mirprobe.datasets import DATASETS

    return "\n".join(f"  {s.name:<19} {s.summary}" for s in DATASETS.values())


def cmd_list(ns: argparse.Namespace) -> int:
    from mirprobe.datasets import DATASETS

    for s in DATASETS.values():
        print(f"{s.name:<19} {s.folder}/{s.prefix}.{{train,val,test}}.jsonl  task config: {s.task}")
        print(f"{'':<19} {s.summary}")
    return 0


def cmd_prepare(ns: argparse.Namespace) -> int:
    from mirprobe.datasets import get_spec, prepare

    spec = get_spec(ns.name)
    options = {k: getattr(ns, k) for k in ("splits", "annotations", "audio", "seed", "workers")
               if getattr(ns, k) is not None}
    options.update({k: True for k in ("drop_untagged", "keep_corrupt") if getattr(ns, k)})
    if ns.clip_seconds is not None:
        options["clip_s"] = ns.clip_seconds
    result = prepare(spec.name, Path(ns.raw), Path(ns.out), **options)
    print(result.summary())
    print(f"next: mirprobe datasets verify {result.files['train']}\n"
          f"      mirprobe run marble tasks=[{spec.task}] data_root={Path(ns.out).expanduser()}")
    return 0


def cmd_verify(ns: argparse.Namespace) -> int:
    from mirprobe.datasets.verify import verify

    reports = []
    for target in ns.targets:
        for report in verify(target, data_root=Path(ns.data_root).expanduser() if ns.data_root else None,
                             audio_root=Path(ns.audio_root).expanduser() if ns.audio_root else None,
                             plugin=ns.task, window_s=ns.window_s, decode=ns.decode):
            print(report.render(limit=ns.limit))
            reports.append(report)
    if ns.json:
        from mirprobe.workfolder import atomic_write_json

        atomic_write_json(Path(ns.json), [r.to_dict() for r in reports])
    bad = sum(not r.ok for r in reports)
    if bad:
        print(f"{bad} of {len(reports)} dataset(s) have problems")
        return 1
    print(f"all {len(reports)} dataset(s) OK")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mirprobe datasets …`` to the CLI."""
    top = subparsers.add_parser("datasets", help="prepare and verify real datasets (MARBLE format)")
    sub = top.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="the datasets `prepare` knows")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("prepare", help="raw download → MARBLE v2 JSONL",
                       description=PREPARE_HELP.format(datasets=_dataset_lines()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help="a dataset of `mirprobe datasets list`")
    p.add_argument("--raw", required=True, metavar="DIR", help="the unpacked raw download")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="root to write data/<DATASET>/ under (e.g. a MARBLE checkout)")
    p.add_argument("--splits", metavar="DIR", type=Path,
                   help="gtzan, gtzan-rhythm: folder with train_filtered.txt, valid_filtered.txt, "
                        "test_filtered.txt; chords-lab: train.txt, valid.txt, test.txt "
                        "(else a seeded split, not comparable)")
    p.add_argument("--annotations", metavar="DIR", type=Path,
                   help="gtzan-rhythm: folder of GTZAN-Rhythm *.wav.jams; mtg-*: a clone of "
                        "MTG/mtg-jamendo-dataset (split files); chords-lab: the .lab files; "
                        "default: --raw")
    p.add_argument("--audio", metavar="DIR", type=Path,
                   help="giantsteps: folder of <ID>.LOFI.mp3 (default: --raw)")
    p.add_argument("--seed", type=int,
                   help="gtzan, gtzan-rhythm, chords-lab: seed of the fallback split; "
                        "vocalset-*: seed of the recording split")
    p.add_argument("--workers", type=int, help="giantsteps: decoding processes")
    p.add_argument("--clip-seconds", type=float, help="giantsteps: clip length (default 30)")
    p.add_argument("--drop-untagged", action="store_true",
                   help="mtt: leave out clips without a top-50 tag (MARBLE keeps them)")
    p.add_argument("--keep-corrupt", action="store_true",
                   help="mtt: keep the three clips with known corrupt MP3s")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("verify", help="check every file, duration, rate, split and label",
                       description=VERIFY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--data-root", metavar="DIR", help="root of relative task-config data folders")
    p.add_argument("--audio-root", metavar="DIR", help="root of relative audio paths")
    p.add_argument("--task", metavar="PLUGIN",
                   help="task plugin to check labels with (default: the config's, else inferred)")
    p.add_argument("--window-s", type=float, default=5.0,
                   help="window length; shorter clips get a warning (default 5)")
    p.add_argument("--decode", action="store_true", help="also decode every file (slow)")
    p.add_argument("--limit", type=int, default=40, help="findings listed per kind (default 40)")
    p.add_argument("--json", metavar="FILE", help="also write the reports as JSON")
    p.set_defaults(func=cmd_verify)

"""``mirprobe cache``: what the work folder holds, and housekeeping on request.

Lists the feature entries (model, view, window, items, precision, size, age, the records using
each), unfinished ``.partial`` folders (in use by a running process, or left by a dead one) and
the run records. Removes only what a flag asks for, printing every removal:

- ``--remove-partial``: ``.partial`` folders no process holds (the lock of their entry or suite
  is free). Without this a later run that needs one resumes it from its finished chunks.
- ``--remove-unused``: complete feature entries that no run record names (``mirprobe extract``
  output not yet probed included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirprobe.deform import deformation_label
from mirprobe.locks import try_hold
from mirprobe.record import Record
from mirprobe.results import RecordStore
from mirprobe.workfolder import SUITES, WorkFolder


@dataclass
class Entry:
    """One folder of the work folder's features/ (or of a built-in suite's folder)."""

    path: Path
    target: Path  # what its lock protects (the entry's final path)
    partial: bool
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.target.name


def folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_age(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def feature_entries(work: WorkFolder) -> list[Entry]:
    """Complete and unfinished feature entries, by folder name."""
    root = work.features
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if not p.is_dir():
            continue
        partial = p.name.endswith(".partial")
        target = root / p.name.removesuffix(".partial")
        meta: dict[str, Any] = {}
        if not partial:
            try:
                meta = json.loads((p / "meta.json").read_text())
            except (OSError, ValueError):
                continue  # not an entry
        out.append(Entry(p, target, partial, meta))
    return out


def suite_partials(work: WorkFolder) -> list[Entry]:
    """Built-in suite folders a writer left unfinished (``<size>-seed<n>.partial-<pid>``)."""
    out = []
    for kind in SUITES:
        root = work.suites(kind)
        found = sorted(root.glob("*.partial-*")) if root.is_dir() else []
        out += [Entry(p, root / p.name.split(".partial-")[0], True, {}) for p in found if p.is_dir()]
    return out


def records(work: WorkFolder) -> list[Record]:
    """The run records this version reads (others are skipped with a one-line note)."""
    return sorted(RecordStore(work.records).all(), key=lambda r: r.id)


def describe_entry(e: Entry, used: int) -> str:
    m = e.meta
    precision = m.get("precision") or ""
    made = f"{m.get('model_name', '?')} {m.get('view', '?')} {m.get('window_s', '?')} s"
    made += f", {len(m.get('items', []))} items" + (f", {precision}" if precision else "")
    made += f", deformed: {deformation_label(m['deformation'])}" if m.get("deformation") else ""
    version = (m.get("versions") or {}).get("mirprobe")
    made += f", mirprobe {version}" if version else ""
    return (f"  {e.id}  {human_size(folder_size(e.path)):>9}  {human_age(_age(e.path / 'meta.json')):>6}"
            f"  {made}; used by {used} record(s)")


def describe_partial(e: Entry, in_use: bool) -> str:
    chunks = len(list(e.path.glob("chunk*.npz")))
    state = "in use by a running process" if in_use else "unfinished, no process holds it"
    what = (f"{chunks} chunk(s) done" if e.path.parent.name == "features"
            else f"{e.path.parent.name} suite")
    return (f"  {e.path.name}  {human_size(folder_size(e.path)):>9}  {human_age(_age(e.path)):>6}"
            f"  {what}; {state}")


def cache(work: WorkFolder, *, remove_partial: bool = False, remove_unused: bool = False) -> None:
    """Print the work folder's contents; remove what the flags ask for (see module docstring)."""
    recs = records(work)
    users: dict[str, int] = {}
    for r in recs:
        users[r.feature_entry] = users.get(r.feature_entry, 0) + 1
    entries = feature_entries(work)
    complete = [e for e in entries if not e.partial]
    partials = [e for e in entries if e.partial] + suite_partials(work)
    print(f"work folder {work.root}")
    print(f"feature entries ({len(complete)}, {human_size(sum(folder_size(e.path) for e in complete))}):")
    for e in complete:
        print(describe_entry(e, users.get(e.id, 0)))
    if partials:
        print(f"unfinished ({len(partials)}):")
    for e in partials:
        with try_hold(e.target) as free:
            print(describe_partial(e, in_use=not free))
            if free and remove_partial:
                shutil.rmtree(e.path)
                print(f"  removed {e.path}")
    print(f"run records ({len(recs)}):")
    store = RecordStore(work.records)
    for r in recs:
        p = store.path(r.id)
        size = sum(q.stat().st_size for q in (p, store.predictions_path(r)) if q.exists())
        present = "" if (work.features / r.feature_entry).is_dir() else " (its features are gone)"
        print(f"  {r.id}  {human_size(size):>9}  {human_age(_age(p)):>6}  "
              f"{r.model} × {r.task}, features {r.feature_entry}{present}, "
              f"mirprobe {r.versions.get('mirprobe', '?')}")
    if remove_unused:
        for e in complete:
            if users.get(e.id):
                continue
            with try_hold(e.target) as free:
                if free:
                    shutil.rmtree(e.path)
                    print(f"removed unused feature entry {e.path}")
                else:
                    print(f"kept {e.path}: a process holds it")
    elif not remove_partial:
        unused = sum(1 for e in complete if not users.get(e.id))
        if unused or partials:
            print(f"{unused} entry(ies) no record uses, {len(partials)} unfinished folder(s); "
                  "remove with --remove-unused / --remove-partial")


def cmd_cache(ns: argparse.Namespace) -> int:
    cache(WorkFolder.at(ns.work_dir), remove_partial=ns.remove_partial, remove_unused=ns.remove_unused)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mirprobe cache`` to the ``mirprobe`` parser."""
    p = subparsers.add_parser("cache", help="list feature entries and records; remove on request",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=None,
                   help="work folder (default: $MIRPROBE_HOME, else ~/.cache/mirprobe)")
    p.add_argument("--remove-partial", action="store_true",
                   help="remove unfinished .partial folders that no running process holds")
    p.add_argument("--remove-unused", action="store_true",
                   help="remove complete feature entries that no run record uses")
    p.set_defaults(func=cmd_cache)


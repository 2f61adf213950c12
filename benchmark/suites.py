"""What the built-in suites (``mirprobe.synth``, ``mirprobe.scores``) share.

A suite is made once per work folder: one process writes it under ``<out_dir>.partial-<pid>``
while holding ``<out_dir>.lock`` and renames it into place when complete; others wait, then
reuse it. A folder whose ``suite.json`` matches the wanted definition is reused as is. Labels
are dealt in shuffled rounds so every split holds each class as evenly as its length allows.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mirprobe.errors import UserError
from mirprobe.locks import hold
from mirprobe.progress import progress_bar

SPLITS = ("train", "val", "test")
T = TypeVar("T")


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The folder's ``suite.json``, or None when it is missing or unreadable."""
    try:
        meta = json.loads((Path(folder) / "suite.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def make_once(out_dir: Path, matches: Callable[[Path], bool], write: Callable[[Path], None],
              what: str) -> Path:
    """Reuse ``out_dir`` if ``matches`` it, else ``write`` it once under the lock; returns it.

    ``what`` names the suite in messages (``"synthetic suite"``)."""
    out_dir = Path(out_dir).expanduser()
    if matches(out_dir):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "suite.json").exists():
        raise UserError(f"{out_dir} exists and is not a {what}; "
                        f"give a new or empty folder for the {what}")
    with hold(out_dir, f"the {what} {out_dir}"):
        if matches(out_dir):  # made by another process while this one waited
            return out_dir
        for stale in out_dir.parent.glob(f"{out_dir.name}.partial-*"):  # writers killed mid-way
            shutil.rmtree(stale, ignore_errors=True)
        partial = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")
        try:
            write(partial)
            _publish(partial, out_dir)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return out_dir


def _publish(partial: Path, out_dir: Path) -> None:
    """Move the finished suite into place; an older suite there is replaced."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    old = out_dir.with_name(f"{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        out_dir.rename(old)
    partial.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` by ``fractions`` (val and test rounded, train takes the rest)."""
    rest = [int(round(n * f)) for f in fractions[1:]]
    return [n - sum(rest), *rest]


def deal(labels: Sequence[T], n: int, rng: np.random.Generator) -> list[T]:
    """``n`` labels in shuffled rounds of the whole list (each occurs ⌊n/len⌋ or ⌈n/len⌉ times)."""
    rounds = -(-n // len(labels))
    dealt = np.concatenate([rng.permutation(len(labels)) for _ in range(rounds)])[:n]
    return [labels[i] for i in rng.permutation(dealt)]


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """Spawned worker processes (safe next to an initialised torch), or None for ``workers <= 1``."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def map_jobs(fn: Callable[[Any], T], jobs: list[Any], pool: ProcessPoolExecutor | None,
             desc: str, unit: str, progress: bool, chunksize: int = 8) -> list[T]:
    """``[fn(job) for job in jobs]``, in order, in ``pool`` (or here), with a progress bar.
    The result does not depend on the number of workers."""
    bar = progress_bar(total=len(jobs), desc=desc, unit=unit, enabled=progress)
    out: list[T] = []
    with bar:
        results: Iterable[T] = map(fn, jobs) if pool is None else pool.map(fn, jobs, chunksize=chunksize)
        for r in results:
            out.append(r)
            bar.update(1)
    return out


def default_workers(jobs: int, threshold: int = 100) -> int:
    """One process per CPU (at most 8) for more than ``threshold`` jobs, else one."""
    return min(os.cpu_count() or 1, 8) if jobs > threshold else 1


def write_jsonl(folder: Path, lines: dict[str, list[dict[str, Any]]]) -> None:
    """Write ``<name>.jsonl`` for every ``name -> rows`` (one JSON object a line)."""
    for name, rows in lines.items():
        (Path(folder) / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

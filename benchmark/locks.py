"""Inter-process locks on the work folder, so any number of mirprobe processes can share it.

Each product (the synthetic suite, a feature entry, a run record) has one lock file next to it,
``<name>.lock``, taken around its production; whoever takes it checks again whether the product
appeared meanwhile, so each is made once and the others wait for it.

``filelock.FileLock`` uses ``flock`` on POSIX: the kernel drops the lock when its process dies
(killed, out of memory, a node lost on NFSv4 once its lease expires), so a stale lock never
blocks. Where the file system has no ``flock`` (some NFSv3 or Lustre mounts without ``-o flock``)
filelock falls back to a marker file recording the holder's pid and host; a marker of a dead
process on the same host is reclaimed, one of another host is not — hence the timeout
(``$MIRPROBE_LOCK_TIMEOUT`` seconds, default 24 h) and its message naming the lock file.
Lock files are empty and are left in place (removing one under a waiter would break the lock).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from mirprobe.errors import UserError

DEFAULT_TIMEOUT_S = 24 * 3600.0
LOCK_SUFFIX = ".lock"


def lock_path(target: Path) -> Path:
    """The lock file of ``target`` (a file or folder): ``<target>.lock`` beside it."""
    return target.with_name(target.name + LOCK_SUFFIX)


def timeout_s() -> float:
    value = os.environ.get("MIRPROBE_LOCK_TIMEOUT", "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UserError(f"MIRPROBE_LOCK_TIMEOUT={value!r} is not a number of seconds") from None


def _file_lock(target: Path) -> tuple[Path, FileLock]:
    """``target``'s lock file (its folder made) and a lock on it."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, FileLock(str(path))


@contextmanager
def hold(target: Path, what: str) -> Iterator[None]:
    """Hold the lock of ``target`` while producing it; ``what`` names it in messages.

    Waits (saying so once on stderr) while another process holds it."""
    path, lock = _file_lock(target)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"mirprobe: waiting for another process making {what} (lock {path})",
              file=sys.stderr, flush=True)
        limit = timeout_s()
        try:
            lock.acquire(timeout=limit, poll_interval=0.5)
        except Timeout:
            raise UserError(
                f"{path}: still locked after {limit:.0f} s by another process making {what}; if no "
                f"mirprobe process is running on this work folder, delete {path} and run again "
                "(MIRPROBE_LOCK_TIMEOUT sets the wait)") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def try_hold(target: Path) -> Iterator[bool]:
    """Hold ``target``'s lock if it is free now: yields whether it was taken (never waits)."""
    _, lock = _file_lock(target)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()

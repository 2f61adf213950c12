"""numba's on-disk cache, written by one process at a time.

numba writes a cached function's index and code files without a lock. Two processes that
compile the same function at once (two ranks decoding beats on a fresh install, two test
workers) can leave an index that points at the other's code, and every later process that
loads it dies of a segmentation fault until the ``__pycache__`` files are deleted. mirprobe
runs the first call of each numba-backed function of a process (librosa's beat tracker, the
beat DBN kernel) under a file lock, so the cache is written once and only read afterwards.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

T = TypeVar("T")
_first: set[str] = set()
_guard = threading.Lock()


def lock_path() -> Path:
    """One lock per numba cache: in ``NUMBA_CACHE_DIR`` when set, else beside this package's
    own ``__pycache__`` (the installation whose in-tree caches numba writes), else in the
    temporary folder keyed by the installation."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        folder = Path(os.environ["NUMBA_CACHE_DIR"])
    else:
        folder = Path(__file__).resolve().parent / "__pycache__"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / ".numba-compile.lock"
        path.touch(exist_ok=True)
        return path
    except OSError:  # a read-only installation: numba caches in the user's folder then
        key = hashlib.sha1(str(folder).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"mirprobe-numba-{key}.lock"


def first_call(name: str, fn: Callable[[], T]) -> T:
    """``fn()``; the first time ``name`` runs in this process, under the compile lock (other
    threads wait for it: numba compiles each function once per process)."""
    if name in _first:
        return fn()
    with _guard:
        if name in _first:
            return fn()
        with FileLock(str(lock_path())):
            out = fn()
        _first.add(name)
        return out

"""Chunks of heads trained side by side on a CPU: one thread per core, one core per chunk.

Within an epoch the heads are independent, so the chunks of a window can be trained
concurrently. On a CPU, ``n`` threads each running whole chunks on one core beat one chunk at a
time with every core splitting each product: a step is some 60 small operations, and at two
cores each of them waited for the slower thread (``perf/README.md``: 0.79 ms per head-step
with the cores sharing each operation, 0.60 with a core per chunk). Products then always run
on one thread, so a head's arithmetic, and the probe's scores, no longer depend on the number
of cores.

PyTorch releases the interpreter lock inside its operations; each thread has its own
``Scratch`` (gradient buffers and temporaries), so threads share only the banks' rows of heads
they do not touch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, TypeVar

import torch

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


class Workers(Generic[S]):
    """``n`` threads, each with its own scratch object made by ``make``; ``map`` runs
    ``fn(item, scratch)`` over items (in the calling thread when ``n == 1``)."""

    def __init__(self, n: int, make: Callable[[], S]) -> None:
        self.n, self._make = n, make
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="mirprobe-heads") if n > 1 else None

    def scratch(self) -> S:
        """This thread's scratch."""
        s = getattr(self._local, "scratch", None)
        if s is None:
            s = self._local.scratch = self._make()
        return s

    def map(self, fn: Callable[[T, S], R], items: Iterable[T]) -> list[R]:
        """``fn(item, scratch)`` for every item, each on one thread; PyTorch's intra-op count
        is one meanwhile (a thread takes it at its first operation and keeps it), and back to
        what it was for the calling thread's own work in between."""
        if self._pool is None:
            return [fn(item, self.scratch()) for item in items]
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return list(self._pool.map(lambda item: fn(item, self.scratch()), items))
        finally:
            torch.set_num_threads(before)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def cpu_workers(device: torch.device) -> int:
    """Threads that train chunks side by side: PyTorch's intra-op thread count on a CPU, one
    on other devices (one chunk holds every head there)."""
    return torch.get_num_threads() if device.type == "cpu" else 1


@contextmanager
def workers(n: int, make: Callable[[], S]) -> Iterator[Workers[S]]:
    """``n`` chunk trainers, shut down on exit."""
    pool = Workers(n, make)
    try:
        yield pool
    finally:
        pool.close()

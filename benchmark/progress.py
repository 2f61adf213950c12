"""Progress of long stages: a tqdm bar on a terminal, plain lines in a log.

When stderr is not a terminal (SLURM, nohup, CI) a bar's every refresh would land in the log as a
``\\r`` update; there a stage prints a line at each 10% step, at most one per ``MIN_GAP_S``
(30 s), at least one per ``EVERY_S`` (5 min) while it runs, and one when it ends — the same
counts, rate, time left and postfix a bar shows. A stage shorter than 30 s prints one line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TextIO

MIN_GAP_S = 30.0  # at most one 10%-step line per this many seconds
EVERY_S = 300.0  # a line after this many seconds without one, 10% step or not


class Progress(Protocol):
    """What stages use of a progress bar (tqdm's names)."""

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, **kwargs: Any) -> Any: ...

    def close(self) -> Any: ...


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", enabled: bool = True, leave: bool = True,
                 stream: TextIO | None = None) -> Any:
    """A tqdm bar on a terminal, :class:`PlainProgress` lines elsewhere; nothing when disabled."""
    from tqdm.auto import tqdm

    stream = stream or sys.stderr
    if not enabled or _isatty(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, leave=leave,
                    dynamic_ncols=True, file=stream)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, stream=stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class PlainProgress:
    """Progress as occasional whole lines (see the module docstring)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None,
                 desc: str = "", unit: str = "it", stream: TextIO | None = None,
                 clock: Any = time.monotonic) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream = stream or sys.stderr
        self.clock = clock
        self.n, self.postfix, self.closed = 0, "", False
        self.start = self.last = clock()
        self.step = 0  # the last 10% step printed

    def __iter__(self) -> Iterator[Any]:
        for x in self.iterable or ():
            yield x
            self.update(1)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        step = int(10 * self.n / self.total) if self.total else 0
        if self.total and self.n >= self.total:
            return  # the closing line says it
        if (step > self.step and now - self.last >= MIN_GAP_S) or now - self.last >= EVERY_S:
            self._print(now)
            self.step = step

    def set_postfix(self, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._print(self.clock(), final=True)

    def line(self, now: float, final: bool = False) -> str:
        elapsed = now - self.start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / elapsed:.3g} {self.unit}/s" if elapsed > 0 and self.n else ""
        extra = f", {self.postfix}" if self.postfix else ""
        if final:
            return f"{self.desc}: {count} {self.unit}{pct} in {elapsed:.1f} s{rate}{extra}"
        left = (f", ~{elapsed * (self.total - self.n) / self.n:.0f} s left"
                if self.total and self.n else "")
        return f"{self.desc}: {count} {self.unit}{pct}, {elapsed:.0f} s{rate}{left}{extra}"

    def _print(self, now: float, final: bool = False) -> None:
        self.last = now
        print(self.line(now, final), file=self.stream, flush=True)

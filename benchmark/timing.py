"""Wall time per stage of a run, for its closing summary."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Timer:
    """Wall time per stage, for the closing summary."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def summary(self) -> str:
        parts = [f"{k} {v:.1f}s" for k, v in self.seconds.items() if v >= 0.05]
        return "time per stage: " + (", ".join(parts) or "nothing to do")

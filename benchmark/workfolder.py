"""The work folder: where each product of a run lives, and how a file is written into it.

Layout of ``<work_dir>/`` (``work_dir``, else ``$MIRPROBE_HOME``, else ``~/.cache/mirprobe``)::

    features/<entry>/          feature entries (mirprobe.features)
    records/<id>.json, .npz    run records and their test predictions (mirprobe.record)
    runs/<name>/               the tables of ``mirprobe run``
    series/<name>/             a checkpoint series' manifest and tables
    synthetic/<size>-seed<n>/  a built-in suite (one folder per suite in :data:`SUITES`)

Every product is written whole or not at all: a file through :func:`atomic_file` (a temporary
file beside it, renamed over it), a folder under a ``.partial`` name renamed when complete.
Files get the mode a plain ``open`` gives (``0666`` less the umask), so a colleague sharing the
folder reads records and predictions alike.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

#: Built-in suites generated into the work folder, by the ``data`` value a task names them with.
SUITES = ("synthetic", "scores")


def default_root() -> Path:
    """``$MIRPROBE_HOME``, else ``~/.cache/mirprobe``."""
    env = os.environ.get("MIRPROBE_HOME")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "mirprobe"


@dataclass(frozen=True)
class WorkFolder:
    """The paths of one work folder (nothing here reads or writes)."""

    root: Path

    @classmethod
    def at(cls, path: str | Path | None = None) -> WorkFolder:
        """The work folder at ``path`` (None: :func:`default_root`)."""
        return cls(Path(path).expanduser().resolve() if path else default_root())

    @property
    def records(self) -> Path:
        return self.root / "records"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def series_root(self) -> Path:
        return self.root / "series"

    def run(self, name: str) -> Path:
        """Where ``mirprobe run`` writes the tables of run ``name``."""
        return self.root / "runs" / name

    def series(self, name: str) -> Path:
        """A checkpoint series' folder (its manifest and tables)."""
        return self.series_root / name

    def suites(self, kind: str) -> Path:
        """The folder holding every generated suite of ``kind`` (one of :data:`SUITES`)."""
        if kind not in SUITES:
            raise ValueError(f"unknown built-in suite {kind!r}; known: {', '.join(SUITES)}")
        return self.root / kind

    def suite(self, kind: str, size: str, seed: int) -> Path:
        """A built-in suite's folder: ``<kind>/<size>-seed<seed>`` (its lock is beside it)."""
        return self.suites(kind) / f"{size}-seed{int(seed)}"


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only once written whole (readers see the old file or
    the new one); its mode is a plain ``open``'s, ``0666`` less the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy values and paths as plain JSON) through
    :func:`atomic_file`."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=jsonable) + "\n").encode())


def jsonable(x: Any) -> Any:
    """``json.dumps`` hook: numpy scalars and arrays, paths."""
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")

"""Register test plugins the way an installed package does: through entry points.

:func:`install_entry_points` writes a minimal ``<dist>-<version>.dist-info`` folder (METADATA
and ``entry_points.txt``) into a temporary folder and puts that folder on ``sys.path``, where
``importlib.metadata`` finds it like any installed distribution. The monkeypatch undoes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest


def install_entry_points(monkeypatch: pytest.MonkeyPatch, folder: Path,
                         groups: Mapping[str, Mapping[str, str]], *,
                         dist: str = "mirprobe-test-plugins", version: str = "0.0.1") -> Path:
    """Make ``groups`` (group → {name: "module:attr"}) visible as the entry points of an
    installed distribution ``dist``; returns its dist-info folder."""
    info = Path(folder) / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    text = "".join(f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in eps.items())
                   + "\n" for group, eps in groups.items())
    (info / "entry_points.txt").write_text(text)
    monkeypatch.syspath_prepend(str(folder))
    return info

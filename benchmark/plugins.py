"""Plugin registries: built-in names plus those other packages add through entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any


def registry(group: str, builtin: dict[str, str]) -> dict[str, str]:
    """Name → ``module:attr`` for the built-ins and every entry point of ``group``."""
    found = dict(builtin)
    found.update({ep.name: ep.value for ep in entry_points(group=group)})
    return found


def load(spec: str) -> Any:
    """The object a ``module:attr`` spec names (imported on demand)."""
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)

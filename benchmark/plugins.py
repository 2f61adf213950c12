"""Plugin registries: task plugins and model kinds, registered only through entry points.

The built-in tasks and models are this package's own entry points (pyproject.toml, groups
``mirprobe.tasks`` and ``mirprobe.models``); another installed package adds its own the same
way. Two distributions that claim one name with different objects are an error, never a silent
choice.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from mirprobe.errors import UserError

if TYPE_CHECKING:  # for annotations only: the task plugins never import the engine back
    from mirprobe.tasks.base import Task

TASKS = "mirprobe.tasks"
MODELS = "mirprobe.models"


def registry(group: str) -> dict[str, str]:
    """Name → ``module:attr`` for every entry point of ``group``; a UserError when two
    distributions claim one name with different objects."""
    found: dict[str, str] = {}
    owners: dict[str, str] = {}
    for ep in entry_points(group=group):
        owner = ep.dist.name if ep.dist is not None else "?"
        if ep.name in found and found[ep.name] != ep.value:
            raise UserError(f"two installed packages register {ep.name!r} in {group}: "
                            f"{owners[ep.name]} ({found[ep.name]}) and {owner} ({ep.value}); "
                            "uninstall one of them or rename its entry point")
        found[ep.name] = ep.value
        owners[ep.name] = owner
    if not found:
        raise UserError(f"no plugins registered in {group}; mirprobe is not installed "
                        "(run `pip install -e .` in the checkout)")
    return found


def load(spec: str) -> Any:
    """The object a ``module:attr`` spec names (imported on demand)."""
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def available_tasks() -> dict[str, str]:
    """Plugin name → ``module:attr`` for every registered task."""
    return registry(TASKS)


def get_task(plugin: str, **options: Any) -> Task:
    """Instantiate the task plugin ``plugin`` (imported on demand)."""
    known = available_tasks()
    if plugin not in known:
        raise UserError(f"unknown task plugin {plugin!r}; available: {', '.join(sorted(known))}")
    try:
        return load(known[plugin])(**options)
    except (TypeError, ValueError) as err:
        raise UserError(f"task plugin {plugin!r}: {err}; fix the task's options in the run "
                        "config (configs/tasks/*.yaml list them)") from err


def available_kinds() -> dict[str, str]:
    """Model kind → ``module:attr`` of its extractor class or loader."""
    return registry(MODELS)

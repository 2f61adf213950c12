"""Task plugins. Built-in tasks register through the entry-point group ``mirprobe.tasks``;
another installed package can add its own the same way."""

from __future__ import annotations

from typing import Any

from mirprobe.errors import UserError
from mirprobe.plugins import load, registry
from mirprobe.tasks.base import Task

# Fallback when the package metadata is not installed (running from a source tree).
BUILTIN = {
    "tagging": "mirprobe.tasks.tagging:TaggingTask",
    "key": "mirprobe.tasks.key:KeyTask",
    "genre": "mirprobe.tasks.genre:GenreTask",
    "beat": "mirprobe.tasks.beat:BeatTask",
    "emotion": "mirprobe.tasks.emotion:EmotionTask",
    "multiclass": "mirprobe.tasks.generic:MulticlassTask",
    "multilabel": "mirprobe.tasks.generic:MultilabelTask",
    "regression": "mirprobe.tasks.generic:RegressionTask",
}


def available_tasks() -> dict[str, str]:
    """Plugin name → ``module:attr`` for every registered task."""
    return registry("mirprobe.tasks", BUILTIN)


def get_task(plugin: str, **options: Any) -> Task:
    """Instantiate the task plugin ``plugin`` (lazy import)."""
    known = available_tasks()
    if plugin not in known:
        raise UserError(f"unknown task plugin {plugin!r}; available: {', '.join(sorted(known))}")
    return load(known[plugin])(**options)


__all__ = ["Task", "available_tasks", "get_task"]

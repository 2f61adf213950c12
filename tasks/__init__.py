"""Task plugins. Each registers through the entry-point group ``mirprobe.tasks`` (the built-ins
are this package's own entry points, see pyproject.toml); another installed package adds its own
the same way. :func:`mirprobe.plugins.get_task` builds one by name.

The plugins never import the engine: the engine depends on them, not the other way round.
"""

from __future__ import annotations

from mirprobe.tasks.base import Task

__all__ = ["Task"]

"""Genre classification (GTZAN): one genre per track, accuracy (MARBLE's metric) and macro F1."""

from __future__ import annotations

from typing import ClassVar

from mirprobe.tasks.generic import MulticlassTask


class GenreTask(MulticlassTask):
    """Multiclass genre task; chance is the majority training genre, scored on test."""

    name: ClassVar[str] = "genre"


__all__ = ["GenreTask"]

"""Music auto-tagging (MagnaTagATune top-50): macro ROC-AUC and macro average precision.

A label is the list of the track's tags; an empty list is a track with no tag (a zero
target). Tags that have no positive or no negative track in the evaluated set have no
ROC-AUC: they are left out of both macro means, in ``score`` and ``evaluate`` alike.
"""

from __future__ import annotations

from typing import ClassVar

from mirprobe.tasks.generic import MultilabelTask


class TaggingTask(MultilabelTask):
    """Multilabel tagging; chance scores AUC 0.5 and AP equal to the test prevalence."""

    name: ClassVar[str] = "tagging"


__all__ = ["TaggingTask"]

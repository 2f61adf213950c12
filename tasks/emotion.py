"""Music emotion regression (Emomusic): a label is ``[arousal, valence]``; scored by R².

``r2`` is the mean of the arousal and valence R² (``sklearn.metrics.r2_score``).
"""

from __future__ import annotations

from typing import ClassVar

from mirprobe.tasks.generic import RegressionTask


class EmotionTask(RegressionTask):
    """Arousal/valence regression; chance predicts the training mean (R² ≈ 0 on test)."""

    name: ClassVar[str] = "emotion"
    default_dims: ClassVar[tuple[str, ...]] = ("arousal", "valence")


__all__ = ["EmotionTask"]

"""Key detection (GiantSteps): 24 keys in MARBLE v2's order, scored by mir_eval's weighted score.

Classes 0–11 are C, Db, D, Eb, E, F, Gb, G, Ab, A, Bb, B major; 12–23 the same tonics minor.
Labels such as ``"Eb minor"``, ``"D# minor"`` or ``"eb minor"`` are accepted (sharps and other
enharmonic spellings map to these flat names). Clips of one song (``ori_uid``) are merged
before scoring.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from mirprobe.tasks import metrics
from mirprobe.tasks.base import Metric
from mirprobe.tasks.generic import MulticlassTask, _check_predictions

TONICS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
KEYS = tuple(f"{tonic} {mode}" for mode in ("major", "minor") for tonic in TONICS)
_NATURALS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
_LABEL = re.compile(r"^\s*([a-g])([#♯b♭]?)\s*(major|minor|maj|min)\s*$", re.IGNORECASE)


def key_index(label: Any) -> int:
    """Class index of a key label such as ``"Eb minor"`` or ``"D# minor"``."""
    match = _LABEL.match(label) if isinstance(label, str) else None
    if match is None:
        raise ValueError(f"key label {label!r} is not '<tonic> major|minor' (e.g. 'Eb minor')")
    natural, accidental, mode = match.groups()
    pitch = (_NATURALS[natural.lower()] + _ACCIDENTALS[accidental.lower()]) % 12
    return pitch + (12 if mode.lower().startswith("min") else 0)


def weight_matrix() -> np.ndarray:
    """``[24, 24]`` mir_eval weighted score of estimate (column) for reference (row)."""
    from mir_eval.key import weighted_score

    return np.array([[weighted_score(ref, est) for est in KEYS] for ref in KEYS])


def head_weighted_score(task: KeyTask, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean weighted score of the argmax key per head, ``[H]``."""
    weights = torch.as_tensor(task.weights(), device=outputs.device)
    return weights[targets.long(), outputs.argmax(-1)].mean(-1)


class KeyTask(MulticlassTask):
    """Multiclass key task with a song-level merge; metrics: weighted score, accuracy."""

    name: ClassVar[str] = "key"
    metrics: ClassVar[tuple[str, ...]] = (
        Metric("weighted_score", resample="mean", device=head_weighted_score),
        Metric("accuracy", resample="mean", device=metrics.head_accuracy))
    group_by_uid: ClassVar[bool] = True

    def __init__(self, classes: Sequence[str] | None = None, window_s: float | None = None,
                 **options: Any) -> None:
        if classes is not None and [KEYS[key_index(c)] for c in classes] != list(KEYS):
            raise ValueError(f"task 'key' has fixed classes in MARBLE order ({', '.join(KEYS)}); "
                             "leave `classes` unset")
        super().__init__(classes=list(KEYS), window_s=window_s, **options)
        self._weights: np.ndarray | None = None

    def fit(self, train_labels: Sequence[Any]) -> None:
        """Classes are fixed; only check that the training labels parse."""
        for label in train_labels:
            key_index(label)

    def encode(self, label: Any) -> np.ndarray:
        return np.int64(key_index(label))

    def weights(self) -> np.ndarray:
        if self._weights is None:
            self._weights = weight_matrix()
        return self._weights

    def _key_metrics(self, predicted: np.ndarray, labels: Sequence[Any]) -> dict[str, float]:
        from mir_eval.key import weighted_score

        refs = [KEYS[key_index(label)] for label in labels]
        ests = [KEYS[int(i)] for i in predicted]
        return {"weighted_score": float(np.mean([weighted_score(r, e)
                                                 for r, e in zip(refs, ests, strict=True)])),
                "accuracy": float(np.mean([r == e for r, e in zip(refs, ests, strict=True)]))}

    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        """Mean over tracks of ``mir_eval.key.weighted_score`` of the argmax key, and accuracy."""
        scores = _check_predictions(predictions, labels, len(KEYS))
        return self._key_metrics(scores.argmax(1), labels)

    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """The constant key with the best expected weighted score on the training labels."""
        counts = np.bincount([key_index(label) for label in train_labels], minlength=len(KEYS))
        best = int((counts @ self.weights()).argmax())
        return self._key_metrics(np.full(len(test_labels), best), test_labels)


__all__ = ["KEYS", "KeyTask", "key_index", "weight_matrix"]

"""Frame-level chord recognition (MARBLE v2's Chords1217) from frame features.

A label is a list of ``{"start_time": s, "end_time": s, "chord_str": "E:maj"}`` segments in Harte
syntax (``N`` is no chord). Heads output 25 logits per frame: MARBLE's major/minor vocabulary,
C…B major (0–11), C…B minor (12–23) and no chord (24). A chord maps to it as MARBLE's
``chord_to_majmin`` does: ``N`` and ``X`` (no root) are 24; a chord holding a major triad and no
minor one is its root's major class, and the reverse minor; anything else (sus, dim, aug, ``5``
…) has no class: its frames are left out of the loss and of ``chord_accuracy``, as MARBLE ignores
index −1.

Frame targets come from the intervals: frame *i* (time *i* / frame rate) takes the chord of the
segment with ``start_time ≤ t < end_time``, no chord outside every segment (overlapping
segments are cut where the earlier one ends, empty ones dropped). (MARBLE builds them per 15 s clip and relabels a no-chord segment
in the middle of a clip with the chord before it; mirprobe keeps the annotation's ``N``.)

Metrics, each a ratio of sums over all test tracks:

- ``chord_accuracy`` (selection, MARBLE v2's ``acc``): frame accuracy over the frames that have a
  class, pooled over tracks;
- ``majmin``, ``root``, ``mirex``: ``mir_eval.chord``'s comparisons of the reference segments
  with the decoded ones (runs of equal argmax frames, named ``C:maj``, ``C#:min``, ``N`` …),
  weighted by duration as ``mir_eval.chord.evaluate`` does per track, with the durations summed
  over all tracks (MIREX's weighted chord symbol recall).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from mirprobe.tasks.base import Metric, Task

ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: MARBLE's 25 classes in index order.
CLASSES = (*(f"{r}:maj" for r in ROOTS), *(f"{r}:min" for r in ROOTS), "N")
NO_CHORD = 24
IGNORED = -1
MAJOR, MINOR = (0, 4, 7), (0, 3, 7)
COMPARISONS = ("majmin", "root", "mirex")
#: Frame grid of the chance baseline's decoded segments (MERT-v1's 75 Hz, MARBLE's label rate).
CHANCE_FRAME_RATE = 75.0


def majmin_class(chord: str) -> int:
    """MARBLE's class of a Harte chord (0–24), or −1 when it is neither major nor minor."""
    from mir_eval.chord import InvalidChordException, encode

    try:
        root, bitmap, _ = encode(chord)
    except InvalidChordException as e:
        raise ValueError(f"chord {chord!r} is not in Harte syntax ({e})") from None
    if root < 0:
        return NO_CHORD
    has_major = all(bitmap[i] for i in MAJOR)
    has_minor = all(bitmap[i] for i in MINOR)
    if has_major != has_minor:
        return int(root) + (0 if has_major else 12)
    return IGNORED


def segments(label: Any) -> tuple[np.ndarray, list[str]]:
    """``([n, 2] intervals, chord names)`` of a label, sorted by start time; a segment that
    overlaps the one before it starts where that one ends (MARBLE's files hold overlaps of a
    nanosecond), and empty segments are dropped."""
    if not isinstance(label, list | tuple):
        raise ValueError(f"chord label {str(label)[:80]!r} is not a list of segments")
    rows = []
    for seg in label:
        try:
            start, end, chord = float(seg["start_time"]), float(seg["end_time"]), seg["chord_str"]
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"chord segment {str(seg)[:80]!r} lacks start_time, end_time or "
                             "chord_str") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end) or \
                not isinstance(chord, str):
            raise ValueError(f"chord segment {str(seg)[:80]!r} is not 0 ≤ start_time ≤ end_time "
                             "with a chord_str")
        rows.append((start, end, chord))
    rows.sort(key=lambda r: r[0])
    kept, end = [], 0.0
    for start, stop, chord in rows:  # overlaps are cut, as mir_eval needs disjoint intervals
        start = max(start, end)
        if stop > start:
            kept.append((start, stop, chord))
            end = stop
    return np.array([r[:2] for r in kept], dtype=np.float64).reshape(-1, 2), [r[2] for r in kept]


def frame_classes(label: Any, num_frames: int, frame_rate: float) -> np.ndarray:
    """``int64 [num_frames]`` class of each frame (−1: no majmin class)."""
    intervals, chords = segments(label)
    classes = np.full(num_frames, NO_CHORD, dtype=np.int64)
    times = np.arange(num_frames) / float(frame_rate)
    for (start, end), chord in zip(intervals, chords, strict=True):
        classes[(times >= start) & (times < end)] = majmin_class(chord)
    return classes


def runs(frames: np.ndarray) -> list[list[int]]:
    """``[[first frame, end frame, class], …]`` of the runs of equal values."""
    if frames.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(frames)) + 1
    starts = np.r_[0, cuts]
    ends = np.r_[cuts, frames.size]
    return [[int(a), int(b), int(frames[a])] for a, b in zip(starts, ends, strict=True)]


def decoded_frames(prediction: dict[str, Any]) -> np.ndarray:
    """The per-frame classes of a stored prediction (its runs expanded)."""
    out = np.empty(prediction["runs"][-1][1] if prediction["runs"] else 0, dtype=np.int64)
    for start, end, cls in prediction["runs"]:
        out[start:end] = cls
    return out


def head_chord_accuracy(task: Task, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Frame accuracy per head over the frames with a class (one-hot targets; all-zero rows have
    none), ``[H]``."""
    valid = targets.sum(-1) > 0
    if not bool(valid.any()):
        return torch.full(outputs.shape[:1], float("nan"), dtype=torch.float64,
                          device=outputs.device)
    hit = outputs[:, valid].argmax(-1) == targets[valid].argmax(-1)
    return hit.to(torch.float64).mean(-1)


def _comparison_terms(prediction: dict[str, Any], label: Any) -> dict[str, tuple[float, float]]:
    """Per comparison: ``(Σ duration × score, Σ duration)`` over the valid comparisons of one
    track, as ``mir_eval.chord.evaluate`` weighs them."""
    import mir_eval.chord as chord
    from mir_eval import util

    ref_int, ref_lab = segments(label)
    if ref_int.size == 0 or ref_int.max() <= ref_int.min():
        return {name: (0.0, 0.0) for name in COMPARISONS}
    frame_rate = float(prediction["frame_rate"])
    est_int = np.array([[a / frame_rate, b / frame_rate] for a, b, _ in prediction["runs"]],
                       dtype=np.float64).reshape(-1, 2)
    est_lab = [CLASSES[c] for _, _, c in prediction["runs"]]
    est_int, est_lab = util.adjust_intervals(est_int, est_lab, ref_int.min(), ref_int.max(),
                                             chord.NO_CHORD, chord.NO_CHORD)
    intervals, ref_l, est_l = util.merge_labeled_intervals(ref_int, ref_lab, est_int, est_lab)
    durations = util.intervals_to_durations(intervals)
    out = {}
    for name in COMPARISONS:
        scores = np.asarray(getattr(chord, name)(ref_l, est_l), dtype=np.float64)
        valid = scores >= 0
        out[name] = (float(np.sum(durations[valid] * scores[valid])),
                     float(np.sum(durations[valid])))
    return out


class ChordTask(Task):
    """Frame-level major/minor chord recognition (see the module docstring)."""

    name: ClassVar[str] = "chord"
    kind: ClassVar[str] = "multiclass"
    view: ClassVar[str] = "frame"
    metrics: ClassVar[tuple[str, ...]] = (
        Metric("chord_accuracy", resample="ratio", device=head_chord_accuracy),
        *(Metric(name, resample="ratio") for name in COMPARISONS))

    def __init__(self, classes: Sequence[str] | None = None, window_s: float | None = None,
                 **options: Any) -> None:
        super().__init__(classes=None, window_s=window_s, **options)
        self.classes = list(CLASSES)

    @property
    def output_dim(self) -> int:
        return len(CLASSES)

    def encode(self, label: Any) -> np.ndarray:
        raise NotImplementedError("task 'chord' has frame targets only: use encode_frames()")

    def encode_frames(self, label: Any, num_frames: int, frame_rate: float) -> np.ndarray:
        """``float32 [num_frames, 25]`` one-hot frame targets; a frame without a class (a chord
        outside the major/minor vocabulary) is an all-zero row."""
        classes = frame_classes(label, num_frames, frame_rate)
        target = np.zeros((num_frames, len(CLASSES)), dtype=np.float32)
        keep = classes >= 0
        target[np.flatnonzero(keep), classes[keep]] = 1.0
        return target

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per head over the frames with a class (MARBLE's ``ignore_index``)."""
        targets = targets.to(logits.dtype)
        per_frame = -(targets * torch.log_softmax(logits, -1)).sum(-1)  # [H, B]
        counted = targets.sum(-1).sum().clamp_min(1.0)
        return per_frame.sum(-1) / counted

    def predictions(self, outputs: Any, *, frame_rate: float | None = None) -> list[dict]:
        """Per track ``{"frame_rate": fps, "runs": [[first, end, class], …]}``: the argmax class
        of every frame, as runs."""
        if frame_rate is None:
            raise ValueError("task 'chord' needs the feature frame rate")
        return [{"frame_rate": float(frame_rate),
                 "runs": runs(np.asarray(track).argmax(-1))} for track in outputs]

    def per_track(self, predictions: Any, labels: Sequence[Any]) -> dict[str, np.ndarray]:
        """``[2, N]`` numerator and denominator of every metric per track."""
        if len(predictions) != len(labels):
            raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
        terms = {name: np.zeros((2, len(labels))) for name in self.metrics}
        for i, (prediction, label) in enumerate(zip(predictions, labels, strict=True)):
            estimate = decoded_frames(prediction)
            truth = frame_classes(label, estimate.size, float(prediction["frame_rate"]))
            valid = truth >= 0
            terms["chord_accuracy"][:, i] = (np.sum(estimate[valid] == truth[valid]), valid.sum())
            for name, pair in _comparison_terms(prediction, label).items():
                terms[name][:, i] = pair
        return terms

    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        """Every metric: summed numerators over summed denominators (NaN when nothing counts)."""
        terms = self.per_track(predictions, labels)
        return {name: float(t[0].sum() / t[1].sum()) if t[1].sum() > 0 else math.nan
                for name, t in terms.items()}

    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """The class with the most training duration on every frame of every test track (up to
        its last annotation), on a 75 Hz grid."""
        totals = np.zeros(len(CLASSES))
        for label in train_labels:
            intervals, chords = segments(label)
            for (start, end), chord in zip(intervals, chords, strict=True):
                cls = majmin_class(chord)
                if cls >= 0:
                    totals[cls] += end - start
        best = int(totals.argmax())
        guesses = []
        for label in test_labels:
            intervals, _ = segments(label)
            end = int(math.ceil(intervals.max() * CHANCE_FRAME_RATE)) if intervals.size else 0
            guesses.append({"frame_rate": CHANCE_FRAME_RATE,
                            "runs": [[0, end, best]] if end else []})
        return self.evaluate(guesses, test_labels)


__all__ = ["CLASSES", "ChordTask", "frame_classes", "majmin_class"]

"""Beat and downbeat tracking (GTZAN-Rhythm) from frame features.

A label is ``{"beat": [s, …], "downbeat": [s, …], "tempo": bpm}``. Heads output two logits per
frame (beat, downbeat). Frame targets are 1 at the frame nearest each annotation and 0.5 at
its two neighbours (target widening, Böck et al.). Test activations are decoded into beat
times by librosa's dynamic-programming beat tracker, snapped to activation peaks; downbeats are the decoded beats of the
bar phase (meter 3 or 4) with the highest mean downbeat activation.

Evaluation uses ``mir_eval.beat.f_measure`` with a 70 ms window and **without** mir_eval's
usual trimming of the first 5 seconds (``mir_eval.beat.trim_beats``): the built-in synthetic
tracks are about 8 s long, and trimming would leave almost nothing to score.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from mirprobe.tasks import metrics
from mirprobe.tasks.base import Metric, Task

WINDOW_S = 0.07  # F-measure tolerance, mir_eval's default and MARBLE's
CHANNELS = ("beat", "downbeat")
METERS = (3, 4)


def _times(label: Any, field: str) -> np.ndarray:
    """Sorted annotation times of ``field`` (empty when absent)."""
    if not isinstance(label, dict) or "beat" not in label:
        raise ValueError(f"beat label {str(label)[:80]!r} is not an object with a 'beat' list")
    try:
        times = np.asarray(label.get(field) or [], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"beat label field {field!r} is not a list of seconds") from None
    if times.ndim != 1 or not np.isfinite(times).all():
        raise ValueError(f"beat label field {field!r} is not a list of seconds")
    return np.sort(times)


def decode_beats(activation: np.ndarray, frame_rate: float) -> np.ndarray:
    """Beat times (s) from a beat activation in [0, 1].

    librosa's dynamic-programming tracker gives the beat grid (untrimmed); each beat is then
    moved to the activation peak within a quarter of the median beat period (as madmom's
    ``correct`` option does), and weak beats at either end (below half the median beat
    activation) are dropped. A flat activation has no beats.
    """
    import librosa

    if activation.size < 2 or np.ptp(activation) < 1e-6:
        return np.zeros(0)
    _, frames = librosa.beat.beat_track(onset_envelope=activation.astype(np.float64),
                                        sr=frame_rate, hop_length=1, trim=False)
    if frames.size == 0:
        return np.zeros(0)
    reach = max(1, int(np.median(np.diff(frames)) / 4)) if frames.size > 1 else 1
    frames = np.unique([lo + int(np.argmax(activation[lo:f + reach + 1]))
                        for f in frames for lo in [max(0, f - reach)]])
    strong = np.flatnonzero(activation[frames] >= 0.5 * np.median(activation[frames]))
    return frames[strong[0]:strong[-1] + 1] / frame_rate


def pick_downbeats(beats: np.ndarray, activation: np.ndarray, frame_rate: float) -> np.ndarray:
    """The decoded beats of the bar phase (meter 3 or 4) with the highest mean downbeat
    activation at the beat frames."""
    if beats.size == 0:
        return beats
    frames = np.clip(np.rint(beats * frame_rate).astype(int), 0, len(activation) - 1)
    at_beats = activation[frames]
    candidates = [(at_beats[phase::meter].mean(), meter, phase)
                  for meter in METERS for phase in range(min(meter, beats.size))]
    _, meter, phase = max(candidates, key=lambda c: c[0])
    return beats[phase::meter]


def metronome(end_s: float, bpm: float = 120.0, meter: int = 4) -> dict[str, list[float]]:
    """Beats from 0 s every ``60 / bpm`` s up to ``end_s``; every ``meter``-th is a downbeat."""
    beats = np.arange(0.0, end_s + 1e-9, 60.0 / bpm)
    return {"beat": beats.tolist(), "downbeat": beats[::meter].tolist()}


def head_beat_proxy(task: Task, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Proxy for the beat F-measure, cheap enough for every epoch: frame-level average
    precision of the beat channel, ``[H]``, over frames ``[H, F, 2]`` (all tracks
    concatenated), with the widened target frames (≥ 0.5) as positives. It is invariant
    to any monotonic rescaling of the activation, as the decoder's peak picking is."""
    return metrics.average_precision(outputs[..., 0], targets[..., 0] >= 0.5)


class BeatTask(Task):
    """Frame-level beat/downbeat task; metrics: beat F (mean over tracks), pooled beat F,
    downbeat F (mean over tracks that have downbeat annotations)."""

    name: ClassVar[str] = "beat"
    kind: ClassVar[str] = "beat"
    view: ClassVar[str] = "frame"
    metrics: ClassVar[tuple[str, ...]] = (
        Metric("beat_f_measure", resample="mean", device=head_beat_proxy),
        Metric("beat_f_measure_pooled", resample="ratio"),
        Metric("downbeat_f_measure", resample="mean"))

    def __init__(self, classes: Sequence[str] | None = None, window_s: float | None = None,
                 pos_weight: str | Sequence[float] | None = "auto", **options: Any) -> None:
        """``pos_weight``: ``"auto"`` weighs each channel's positives by the negative/positive
        target mass of the batch (capped at 100: beats are sparse), a pair of numbers fixes
        the weights, ``None`` leaves the loss unweighted."""
        super().__init__(classes=None, window_s=window_s, **options)
        if pos_weight not in ("auto", None):
            pos_weight = [float(w) for w in pos_weight]
            if len(pos_weight) != 2:
                raise ValueError("beat option pos_weight must be 'auto', null or [beat, downbeat]")
        self.pos_weight = pos_weight

    @property
    def output_dim(self) -> int:
        return len(CHANNELS)

    def encode(self, label: Any) -> np.ndarray:
        raise NotImplementedError("task 'beat' has frame targets only: use encode_frames()")

    def encode_frames(self, label: Any, num_frames: int, frame_rate: float) -> np.ndarray:
        """``float32 [num_frames, 2]``: 1 at the frame nearest each beat/downbeat, 0.5 at its
        neighbours, 0 elsewhere; annotations outside the frames are dropped."""
        target = np.zeros((num_frames, len(CHANNELS)), dtype=np.float32)
        for channel, field in enumerate(CHANNELS):
            frames = np.rint(_times(label, field) * frame_rate).astype(np.int64)
            frames = frames[(frames >= 0) & (frames < num_frames)]
            for offset in (-1, 1):
                near = frames + offset
                near = near[(near >= 0) & (near < num_frames)]
                target[near, channel] = np.maximum(target[near, channel], 0.5)
            target[frames, channel] = 1.0
        return target

    def positive_weight(self, targets: torch.Tensor) -> torch.Tensor | None:
        """The ``pos_weight`` option for the base class's binary cross-entropy."""
        if self.pos_weight is None:
            return None
        if self.pos_weight != "auto":
            return torch.tensor(self.pos_weight, dtype=targets.dtype, device=targets.device)
        flat = targets.reshape(-1, targets.shape[-1])
        positive = flat.sum(0)
        negative = (1 - flat).sum(0)
        return (negative / positive.clamp_min(1e-6)).clamp(1.0, 100.0)

    def predictions(self, outputs: Any, *, frame_rate: float | None = None) -> list[dict]:
        """Per track ``{"beat": [s…], "downbeat": [s…]}`` decoded from ``[frames, 2]`` logits."""
        if frame_rate is None:
            raise ValueError("task 'beat' needs the feature frame rate to decode beat times")
        decoded = []
        for logits in outputs:
            activation = 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))
            beats = decode_beats(activation[:, 0], frame_rate)
            downbeats = pick_downbeats(beats, activation[:, 1], frame_rate)
            decoded.append({"beat": beats.tolist(), "downbeat": downbeats.tolist()})
        return decoded

    def per_track(self, predictions: Any, labels: Sequence[Any]) -> dict[str, np.ndarray]:
        """Per track: ``mir_eval.beat.f_measure`` of the beats (70 ms, no trimming), the
        pooled F-measure's terms (2·hits, references + estimates) and the downbeat F-measure
        (NaN for a track whose label has no downbeats)."""
        from mir_eval.beat import f_measure
        from mir_eval.util import match_events

        if len(predictions) != len(labels):
            raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
        beat_f, downbeat_f, hits, events = [], [], [], []
        with warnings.catch_warnings():  # an empty estimate scores 0; no need to warn per track
            warnings.filterwarnings("ignore", message=".* beats are empty")
            for estimate, label in zip(predictions, labels, strict=True):
                ref = _times(label, "beat")
                est = np.sort(np.asarray(estimate["beat"], dtype=float))
                beat_f.append(f_measure(ref, est, WINDOW_S))
                hits.append(len(match_events(ref, est, WINDOW_S)) if ref.size and est.size else 0)
                events.append(ref.size + est.size)
                ref_down = _times(label, "downbeat")
                downbeat_f.append(f_measure(ref_down, np.sort(np.asarray(
                    estimate["downbeat"], dtype=float)), WINDOW_S) if ref_down.size else math.nan)
        return {"beat_f_measure": np.asarray(beat_f, dtype=float),
                "beat_f_measure_pooled": np.array([2 * np.asarray(hits, dtype=np.int64),
                                                   np.asarray(events, dtype=np.int64)]),
                "downbeat_f_measure": np.asarray(downbeat_f, dtype=float)}

    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        """``beat_f_measure``: mean over tracks of ``mir_eval.beat.f_measure`` (70 ms, no
        trimming); ``beat_f_measure_pooled``: 2·hits / (references + estimates) summed over
        all tracks (MARBLE's way); ``downbeat_f_measure``: mean over the tracks whose label has
        downbeats (NaN when none has)."""
        values = self.per_track(predictions, labels)
        beat_f, down = values["beat_f_measure"], values["downbeat_f_measure"]
        down = down[np.isfinite(down)]
        hits, events = (int(v) for v in values["beat_f_measure_pooled"].sum(1))
        return {"beat_f_measure": float(np.mean(beat_f)) if beat_f.size else math.nan,
                "beat_f_measure_pooled": hits / events if events else math.nan,
                "downbeat_f_measure": float(np.mean(down)) if down.size else math.nan}

    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """A 120 BPM metronome from 0 s (4/4, downbeat on the first beat) on every test track,
        up to its last annotated beat (the label does not carry the track's duration)."""
        guesses = []
        for label in test_labels:
            ends = [_times(label, field) for field in CHANNELS]
            guesses.append(metronome(max((t[-1] for t in ends if t.size), default=0.0)))
        return self.evaluate(guesses, test_labels)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pos_weight": self.pos_weight}


__all__ = ["BeatTask", "decode_beats", "metronome", "pick_downbeats"]

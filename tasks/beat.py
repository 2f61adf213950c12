"""Beat and downbeat tracking (GTZAN-Rhythm) from frame features.

A label is ``{"beat": [s, …], "downbeat": [s, …], "tempo": bpm}``. Heads output two logits per
frame (beat, downbeat). Frame targets are 1 at the frame nearest each annotation and
0.5**d at its neighbours up to ``target_neighbors`` frames away (target widening, Böck et al.;
MARBLE v1: ±1 at 0.5, the default; MARBLE v2 trains with ±2).

Decoding (``decoder``): ``"dbn"`` (default) is madmom's ``DBNBeatTrackingProcessor`` at the
feature frame rate, as MARBLE decodes (``mirprobe.tasks.beat_dbn``); ``"dp"`` is librosa's
dynamic-programming tracker snapped to activation peaks. Downbeats (``downbeat_decoder``):
``"dbn"`` (default, MARBLE v2) runs the beat DBN on the downbeat channel, ``"dp"`` the DP
tracker, ``"bar_phase"`` keeps the decoded beats of the bar phase (meter 3 or 4) with the
highest mean downbeat activation.

Metrics (70 ms window, each published number's protocol under its own name):

- ``beat_f_measure`` (selection): ``mir_eval.beat.f_measure`` per whole track, mean over tracks;
- ``beat_f_measure_marble``: MARBLE v2's clip micro F (``mirprobe.tasks.beat_marble``): 10 s
  clips decoded on their own, hits / estimates / references summed over all clips;
- ``beat_f_measure_pooled``: MARBLE v1's micro F, hits pooled over whole tracks;
- ``downbeat_f_measure`` and ``downbeat_f_measure_marble``: the same for downbeats, over the
  tracks whose label has downbeats;
- ``tempo_mae`` (BPM, lower is better), ``tempo_acc1`` and ``tempo_acc2``: MARBLE v2's tempo
  metrics (``mirprobe.tasks.tempo``) on a per-track tempo read off the decoded whole-track
  beats (60 / median inter-beat interval), against the label's ``tempo``.

The whole-track metrics do **not** trim the first 5 seconds by default (``mir_eval.beat.f_measure``
does not; mir_eval's ``evaluate`` does, via ``trim_beats``): ``trim_first_s: 5`` trims them, and
the task's description in each record says so. MARBLE's clip metric never trims.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import torch

from mirprobe.tasks import beat_marble, metrics, tempo
from mirprobe.tasks.base import Metric, Task
from mirprobe.tasks.numba_cache import first_call

WINDOW_S = 0.07  # F-measure tolerance, mir_eval's default and MARBLE's
CHANNELS = ("beat", "downbeat")
METERS = (3, 4)
DECODERS = ("dbn", "dp")
DOWNBEAT_DECODERS = ("dbn", "dp", "bar_phase")
#: Frame grid of the chance baseline's clip estimates (MERT-v1's 75 Hz, MARBLE's).
CHANCE_FRAME_RATE = 75.0


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


def decode_beats(activation: np.ndarray, frame_rate: float, method: str = "dbn",
                 **dbn: Any) -> np.ndarray:
    """Beat times (s) from a beat activation in [0, 1].

    ``method="dbn"``: madmom's DBN beat tracker (``dbn`` overrides its parameters, e.g.
    ``num_tempi=60``); ``method="dp"``: :func:`dp_beats`.
    """
    if method == "dbn":
        from mirprobe.tasks.beat_dbn import BeatDBN

        return BeatDBN(float(frame_rate), **dbn)(activation)
    if method == "dp":
        return dp_beats(activation, frame_rate)
    raise ValueError(f"unknown beat decoder {method!r}; use one of {', '.join(DECODERS)}")


def dp_beats(activation: np.ndarray, frame_rate: float) -> np.ndarray:
    """Beat times (s) by librosa's dynamic-programming tracker.

    librosa's tracker gives the beat grid (untrimmed); each beat is then moved to the
    activation peak within a quarter of the median beat period (as madmom's ``correct``
    option does), and weak beats at either end (below half the median beat activation) are
    dropped. A flat activation has no beats.
    """
    import librosa

    if activation.size < 2 or np.ptp(activation) < 1e-6:
        return np.zeros(0)
    # librosa.beat compiles its numba functions on import and on the first call.
    _, frames = first_call("librosa.beat", lambda: librosa.beat.beat_track(
        onset_envelope=activation.astype(np.float64), sr=frame_rate, hop_length=1, trim=False))
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


def decode_downbeats(activation: np.ndarray, beats: np.ndarray, frame_rate: float,
                     method: str = "dbn", **dbn: Any) -> np.ndarray:
    """Downbeat times (s) from the downbeat activation: a beat decoder run on it (``"dbn"``,
    MARBLE v2; ``"dp"``), or the bar phase of the decoded ``beats`` (``"bar_phase"``)."""
    if method == "bar_phase":
        return pick_downbeats(beats, activation, frame_rate)
    if method not in DOWNBEAT_DECODERS:
        raise ValueError(f"unknown downbeat decoder {method!r}; use one of "
                         f"{', '.join(DOWNBEAT_DECODERS)}")
    return decode_beats(activation, frame_rate, method, **dbn)


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


def _f_measure(ref: np.ndarray, est: np.ndarray, trim_s: float) -> tuple[float, int, int]:
    """``(mir_eval F, hits, events)`` of one track, both sides trimmed before ``trim_s``."""
    from mir_eval.beat import f_measure, trim_beats
    from mir_eval.util import match_events

    if trim_s > 0:
        ref, est = trim_beats(ref, trim_s), trim_beats(est, trim_s)
    hits = len(match_events(ref, est, WINDOW_S)) if ref.size and est.size else 0
    return f_measure(ref, est, WINDOW_S), hits, ref.size + est.size


class BeatTask(Task):
    """Frame-level beat/downbeat task (options and metrics: see the module docstring)."""

    name: ClassVar[str] = "beat"
    kind: ClassVar[str] = "beat"
    view: ClassVar[str] = "frame"
    # Whole-track F: a mean over tracks; the micro Fs are recomputed by evaluate() per resample.
    metrics: ClassVar[tuple[str, ...]] = (
        Metric("beat_f_measure", resample="mean", device=head_beat_proxy),
        Metric("beat_f_measure_marble"),
        Metric("beat_f_measure_pooled"),
        Metric("downbeat_f_measure", resample="mean"),
        Metric("downbeat_f_measure_marble"),
        Metric("tempo_mae", higher_is_better=False, scale=1, resample="mean"),
        Metric("tempo_acc1", resample="mean"),
        Metric("tempo_acc2", resample="mean"))

    def __init__(self, classes: Sequence[str] | None = None, window_s: float | None = None,
                 pos_weight: str | Sequence[float] | None = "auto", decoder: str = "dbn",
                 downbeat_decoder: str = "dbn", dbn: dict[str, Any] | None = None,
                 target_neighbors: int = 1, trim_first_s: float = 0.0,
                 clip_s: float = beat_marble.CLIP_S,
                 min_clip_ratio: float = beat_marble.MIN_CLIP_RATIO, **options: Any) -> None:
        """``pos_weight``: ``"auto"`` weighs each channel's positives by the negative/positive
        target mass of the batch (capped at 100: beats are sparse), a pair of numbers fixes
        the weights, ``None`` leaves the loss unweighted. ``dbn``: DBN parameters other than
        madmom's defaults (``min_bpm``, ``max_bpm``, ``num_tempi``, ``transition_lambda``,
        ``observation_lambda``, ``threshold``, ``correct``)."""
        super().__init__(classes=None, window_s=window_s, **options)
        if pos_weight not in ("auto", None):
            pos_weight = [float(w) for w in pos_weight]
            if len(pos_weight) != 2:
                raise ValueError("beat option pos_weight must be 'auto', null or [beat, downbeat]")
        self.pos_weight = pos_weight
        if decoder not in DECODERS:
            raise ValueError(f"beat option decoder: {decoder!r} is not one of {', '.join(DECODERS)}")
        if downbeat_decoder not in DOWNBEAT_DECODERS:
            raise ValueError(f"beat option downbeat_decoder: {downbeat_decoder!r} is not one of "
                            f"{', '.join(DOWNBEAT_DECODERS)}")
        self.decoder, self.downbeat_decoder = decoder, downbeat_decoder
        self.dbn = self._dbn_options(dbn)
        if int(target_neighbors) != target_neighbors or target_neighbors < 0:
            raise ValueError(f"beat option target_neighbors must be a whole number ≥ 0, "
                            f"got {target_neighbors!r}")
        self.target_neighbors = int(target_neighbors)
        if trim_first_s < 0 or clip_s <= 0 or not 0 < min_clip_ratio <= 1:
            raise ValueError("beat options: trim_first_s ≥ 0, clip_s > 0 and 0 < min_clip_ratio "
                            "≤ 1 are required")
        self.trim_first_s, self.clip_s = float(trim_first_s), float(clip_s)
        self.min_clip_ratio = float(min_clip_ratio)

    @staticmethod
    def _dbn_options(dbn: dict[str, Any] | None) -> dict[str, Any]:
        from dataclasses import fields

        from mirprobe.tasks.beat_dbn import BeatDBN

        allowed = {f.name for f in fields(BeatDBN)} - {"frame_rate"}
        unknown = sorted(set(dbn or {}) - allowed)
        if unknown:
            raise ValueError(f"beat option dbn: unknown key(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(allowed))}")
        return dict(dbn or {})

    @property
    def output_dim(self) -> int:
        return len(CHANNELS)

    def encode(self, label: Any) -> np.ndarray:
        raise NotImplementedError("task 'beat' has frame targets only: use encode_frames()")

    def encode_frames(self, label: Any, num_frames: int, frame_rate: float) -> np.ndarray:
        """``float32 [num_frames, 2]``: 1 at the frame nearest each beat/downbeat, 0.5**d at
        the frames d ≤ ``target_neighbors`` away (the largest where several reach), 0
        elsewhere; annotations outside the frames are dropped."""
        target = np.zeros((num_frames, len(CHANNELS)), dtype=np.float32)
        for channel, field in enumerate(CHANNELS):
            frames = np.rint(_times(label, field) * frame_rate).astype(np.int64)
            frames = frames[(frames >= 0) & (frames < num_frames)]
            for distance in range(1, self.target_neighbors + 1):
                for offset in (-distance, distance):
                    near = frames + offset
                    near = near[(near >= 0) & (near < num_frames)]
                    target[near, channel] = np.maximum(target[near, channel], 0.5 ** distance)
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

    def _decode(self, activation: np.ndarray, frame_rate: float) -> tuple[np.ndarray, ...]:
        """Beat and downbeat times (s) of a ``[frames, 2]`` activation in [0, 1]."""
        beats = decode_beats(activation[:, 0], frame_rate, self.decoder, **self.dbn)
        downbeats = decode_downbeats(activation[:, 1], beats, frame_rate, self.downbeat_decoder,
                                     **self.dbn)
        return beats, downbeats

    def predictions(self, outputs: Any, *, frame_rate: float | None = None) -> list[dict]:
        """Per track ``{"beat": [s…], "downbeat": [s…], "clips": {...}}`` decoded from
        ``[frames, 2]`` logits: the whole track, and each kept clip decoded on its own
        (``clips``: ``frame_rate``, ``clip_s`` and per clip the ``beat`` / ``downbeat`` frames
        of the clip's grid, for MARBLE's clip metric)."""
        if frame_rate is None:
            raise ValueError("task 'beat' needs the feature frame rate to decode beat times")
        frame_rate = float(frame_rate)
        # The DBN kernel releases the GIL: tracks decode in parallel on torch's CPU threads.
        workers = max(1, min(len(outputs), torch.get_num_threads()))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda logits: self._track(logits, frame_rate), outputs))

    def _track(self, logits: np.ndarray, frame_rate: float) -> dict[str, Any]:
        """One track's prediction (see :meth:`predictions`)."""
        activation = 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))
        beats, downbeats = self._decode(activation, frame_rate)
        clips: dict[str, Any] = {"frame_rate": frame_rate, "clip_s": self.clip_s,
                                 "beat": [], "downbeat": []}
        for start, stop in beat_marble.clip_spans(len(activation), frame_rate, self.clip_s,
                                                  self.min_clip_ratio):
            for field, times in zip(CHANNELS, self._decode(activation[start:stop], frame_rate),
                                    strict=True):
                clips[field].append(beat_marble.to_frames(times, frame_rate, stop - start))
        return {"beat": beats.tolist(), "downbeat": downbeats.tolist(), "clips": clips}

    def evaluate(self, predictions: Any, labels: Sequence[Any]) -> dict[str, float]:
        """Every metric of the module docstring. Downbeat metrics cover the tracks whose label
        has downbeats (NaN when none has); the clip metrics are NaN when the predictions carry
        no clip decodings (``clips``) or no track is long enough for a clip."""
        if len(predictions) != len(labels):
            raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
        per_track: dict[str, list[float]] = {field: [] for field in CHANNELS}
        clip_counts: dict[str, list[tuple[int, int, int]]] = {field: [] for field in CHANNELS}
        num_clips = dict.fromkeys(CHANNELS, 0)
        hits = events = 0
        with_clips = all("clips" in p for p in predictions)
        with warnings.catch_warnings():  # an empty estimate scores 0; no need to warn per track
            warnings.filterwarnings("ignore", message=".* beats are empty")
            for estimate, label in zip(predictions, labels, strict=True):
                for field in CHANNELS:
                    ref = _times(label, field)
                    if field == "downbeat" and not ref.size:
                        continue
                    est = np.sort(np.asarray(estimate[field], dtype=float))
                    f, h, e = _f_measure(ref, est, self.trim_first_s)
                    per_track[field].append(f)
                    if field == "beat":
                        hits, events = hits + h, events + e
                    if with_clips:
                        clip_counts[field].append(self._clip_counts(estimate["clips"], ref, field))
                        num_clips[field] += len(estimate["clips"][field])
        out = {f"{field}_f_measure": float(np.mean(v)) if v else math.nan
               for field, v in per_track.items()}
        for field, counts in clip_counts.items():
            out[f"{field}_f_measure_marble"] = (beat_marble.micro_f(counts) if num_clips[field]
                                                else math.nan)
        out["beat_f_measure_pooled"] = 2 * hits / events if events else math.nan
        out.update(tempo.scores([tempo.from_beats(p["beat"]) for p in predictions],
                                [tempo.reference(label) for label in labels]))
        return {str(name): out[name] for name in self.metrics}

    @staticmethod
    def _clip_counts(clips: dict[str, Any], ref: np.ndarray, field: str) -> tuple[int, int, int]:
        """One track's ``(hits, estimates, references)`` over its clips."""
        frame_rate, clip_s = float(clips["frame_rate"]), float(clips["clip_s"])
        estimates = clips[field]
        references = [beat_marble.reference_frames(ref, c, frame_rate, clip_s)
                      for c in range(len(estimates))]
        return beat_marble.clip_counts(estimates, references, frame_rate, WINDOW_S)

    def chance(self, train_labels: Sequence[Any], test_labels: Sequence[Any]) -> dict[str, float]:
        """A 120 BPM metronome from 0 s (4/4, downbeat on the first beat) on every test track,
        up to its last annotation (the label does not carry the track's duration); for the
        clip metrics it is cut into the clips of a track that ends one metronome beat (0.5 s)
        after its last annotation, on a 75 Hz frame grid."""
        guesses = []
        for label in test_labels:
            ends = [_times(label, field) for field in CHANNELS]
            end = max((t[-1] for t in ends if t.size), default=0.0)
            guess: dict[str, Any] = metronome(end)
            num_frames = int(math.floor((end + 0.5) * CHANCE_FRAME_RATE)) + 1
            guess["clips"] = {"frame_rate": CHANCE_FRAME_RATE, "clip_s": self.clip_s, **{
                field: beat_marble.cut_times(guess[field], CHANCE_FRAME_RATE, num_frames,
                                             self.clip_s, self.min_clip_ratio)
                for field in CHANNELS}}
            guesses.append(guess)
        return self.evaluate(guesses, test_labels)

    def describe(self) -> dict[str, Any]:
        """Options as set; ``scoring_note`` (shown in table captions) when trimming is on."""
        info = {**super().describe(), "pos_weight": self.pos_weight, "decoder": self.decoder,
                "downbeat_decoder": self.downbeat_decoder, "dbn": self.dbn,
                "target_neighbors": self.target_neighbors, "trim_first_s": self.trim_first_s,
                "clip_s": self.clip_s, "min_clip_ratio": self.min_clip_ratio}
        if self.scoring_note:
            info["scoring_note"] = self.scoring_note
        return info

    @property
    def scoring_note(self) -> str | None:
        """Said in table captions when trimming is on."""
        if not self.trim_first_s:
            return None
        return f"whole-track beat metrics ignore the first {self.trim_first_s:g} s (mir_eval's trim_beats)"


__all__ = ["BeatTask", "decode_beats", "decode_downbeats", "dp_beats", "metronome",
           "pick_downbeats"]

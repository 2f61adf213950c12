"""MARBLE v2's beat scoring (``TimeEventFMeasure`` over 10 s clips), from its published source.

A track is cut into clips of ``clip_s`` seconds from its start; the last, shorter clip is kept
when it is at least ``min_ratio`` of a clip long (MARBLE: 10 s, 0.8; judged on the frames,
within ``FRAME_SLACK_S``). Each clip's activation is
decoded on its own. Estimates sit on the clip's frame grid (decoded times are rounded to frames
and back); references are the annotations in ``[start, start + clip_s)`` rounded to the clip's
frames. Times are compared as MARBLE does: float32 ``frame / frame_rate`` within the clip,
matched by ``mir_eval.util.match_events`` at 70 ms. Hits, estimates and references are summed
over all clips of all tracks: F = 2·hits / (estimates + references), 1 when both are empty.

Where mirprobe differs: MARBLE pads the audio of a short last clip with silence and decodes the
padded clip; mirprobe has no activation past the track's end and decodes the frames it has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

CLIP_S = 10.0
MIN_CLIP_RATIO = 0.8
#: MARBLE keeps a clip by the audio's length; frame counts run a little short of it (a
#: convolutional front end drops a frame or two per window), so the 80 % mark is met within
#: this much (an 8.0 s track gives 7.96 s of frames with a wav2vec2-style encoder).
FRAME_SLACK_S = 0.1


def clip_spans(num_frames: int, frame_rate: float, clip_s: float = CLIP_S,
               min_ratio: float = MIN_CLIP_RATIO) -> list[tuple[int, int]]:
    """``(first frame, end frame)`` of each kept clip of a track of ``num_frames`` frames."""
    length = int(clip_s * frame_rate)  # MARBLE's label length: int(label_freq * clip_seconds)
    duration = num_frames / frame_rate
    full = int(math.floor(duration / clip_s + 1e-9))
    kept = full + (duration - full * clip_s >= min_ratio * clip_s - FRAME_SLACK_S)
    spans = []
    for c in range(kept):
        start = int(round(c * clip_s * frame_rate))
        spans.append((start, min(start + length, num_frames)))
    return [(a, b) for a, b in spans if b > a]


def to_frames(times: np.ndarray, frame_rate: float, length: int) -> list[int]:
    """Times (s, from the clip's start) → sorted distinct frames in ``[0, length)`` (MARBLE's
    ``times_to_mask``)."""
    frames = np.round(np.asarray(times, dtype=np.float64) * frame_rate).astype(np.int64)
    return np.unique(frames[(frames >= 0) & (frames < length)]).tolist()


def reference_frames(times: np.ndarray, clip: int, frame_rate: float,
                     clip_s: float = CLIP_S) -> list[int]:
    """The annotations of clip ``clip`` as frames of its grid."""
    start = clip * clip_s
    inside = times[(times >= start) & (times < start + clip_s)]
    return to_frames(inside - start, frame_rate, int(clip_s * frame_rate))


def cut_times(times: np.ndarray, frame_rate: float, num_frames: int, clip_s: float = CLIP_S,
              min_ratio: float = MIN_CLIP_RATIO) -> list[list[int]]:
    """Whole-track times cut into the kept clips, as frames of each clip (for estimates that
    were not decoded per clip, such as a metronome)."""
    times = np.asarray(times, dtype=np.float64)
    out = []
    for c, (start, stop) in enumerate(clip_spans(num_frames, frame_rate, clip_s, min_ratio)):
        inside = times[(times >= c * clip_s) & (times < (c + 1) * clip_s)]
        out.append(to_frames(inside - c * clip_s, frame_rate, stop - start))
    return out


def clip_counts(estimates: Sequence[Sequence[int]], references: Sequence[Sequence[int]],
                frame_rate: float, window_s: float = 0.07) -> tuple[int, int, int]:
    """``(hits, estimates, references)`` summed over clips of frame indices."""
    from mir_eval.util import match_events

    hits = n_est = n_ref = 0
    for est, ref in zip(estimates, references, strict=True):
        # MARBLE's mask_to_times: float32 frame indices divided by the frame rate.
        est_t = np.asarray(est, dtype=np.float32) / float(frame_rate)
        ref_t = np.asarray(ref, dtype=np.float32) / float(frame_rate)
        if est_t.size and ref_t.size:
            hits += len(match_events(ref_t, est_t, window_s))
        n_est += est_t.size
        n_ref += ref_t.size
    return hits, n_est, n_ref


def micro_f(counts: Iterable[tuple[int, int, int]]) -> float:
    """F of summed ``(hits, estimates, references)``; 1 when there is nothing on either side."""
    hits = n_est = n_ref = 0
    for h, e, r in counts:
        hits, n_est, n_ref = hits + h, n_est + e, n_ref + r
    return 1.0 if n_est + n_ref == 0 else 2.0 * hits / (n_est + n_ref)


__all__ = ["CLIP_S", "FRAME_SLACK_S", "MIN_CLIP_RATIO", "clip_counts", "clip_spans", "cut_times", "micro_f",
           "reference_frames", "to_frames"]

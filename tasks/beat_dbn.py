"""Offline beat decoding with the dynamic Bayesian network of madmom's
``DBNBeatTrackingProcessor`` (Böck, Krebs & Widmer, ISMIR 2014; the state space of Krebs,
Böck & Widmer, ISMIR 2015), the decoder MARBLE runs on probe activations.

The model, written from the published definition and checked beat for beat against madmom
0.17 on committed reference activations (``tests/fixtures/beat_dbn``):

- States: for every beat interval ``n`` (frames) one state per position ``0 … n−1`` in the
  beat. Intervals are the integers from ``round(60·fps/max_bpm)`` to ``round(60·fps/min_bpm)``
  (madmom's default, ``num_tempi=None``), or log-spaced down to ``num_tempi`` distinct integers.
- Transitions: the position advances by one frame; from the last position of interval ``i`` to
  the first of interval ``j`` with probability ∝ exp(−λ·|j/i − 1|), values ≤ machine epsilon
  cut to zero, normalised per ``i``.
- Observations: positions ``k/n < 1/observation_lambda`` are beat states (log a), the others
  log((1 − a)/(observation_lambda − 1)); a uniform initial distribution.
- Viterbi over the whole activation; ties go to the lower previous interval and, at the end,
  to the lowest state (as madmom's loops do). With ``correct`` each beat is the activation
  maximum within a run of beat states on the path, else the frame where the position is
  smallest (a local minimum, wrapping at the ends) while in a beat state.

Only interval-boundary states have more than one predecessor, so the kernel keeps back
pointers for those alone (frames × intervals instead of frames × states); it is compiled
with numba (cached on disk: the first call in a fresh environment compiles for a few
seconds, see ``perf/beat.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np

from mirprobe.tasks.numba_cache import first_call


class StateSpace(NamedTuple):
    intervals: np.ndarray  # int64 [I]: beat interval (frames) of each tempo
    first: np.ndarray  # int64 [I]: first state of each interval
    log_trans_in: np.ndarray  # float64 [I, I]: [j, i] log P(first state of j | last state of i)
    lo: np.ndarray  # int64 [I]: lowest i with a non-zero transition into j
    hi: np.ndarray  # int64 [I]: one past the highest such i
    state_interval: np.ndarray  # int64 [S]: interval index of each state
    beat_state: np.ndarray  # uint8 [S]: 1 for a beat state
    position: np.ndarray  # float64 [S]: position of each state in its beat, in [0, 1)


def beat_intervals(min_interval: float, max_interval: float,
                   num_tempi: int | None = None) -> np.ndarray:
    """The modelled beat intervals in frames (madmom's ``BeatStateSpace.intervals``)."""
    intervals = np.arange(np.round(min_interval), np.round(max_interval) + 1)
    if num_tempi is not None and num_tempi < len(intervals):
        # Log spacing quantised to integers loses duplicates: ask for more points until
        # ``num_tempi`` distinct intervals remain.
        count, intervals = num_tempi, np.zeros(0)
        while len(intervals) < num_tempi:
            intervals = np.unique(np.round(np.logspace(np.log2(min_interval),
                                                       np.log2(max_interval), count, base=2)))
            count += 1
    return intervals.astype(np.int64)


def tempo_transitions(intervals: np.ndarray, transition_lambda: float) -> np.ndarray:
    """``[from, to]`` probabilities of a tempo change at a beat boundary."""
    ratio = intervals.astype(float) / intervals.astype(float)[:, np.newaxis]
    prob = np.exp(-transition_lambda * abs(ratio - 1.0))
    prob[prob <= np.spacing(1)] = 0
    return prob / np.sum(prob, axis=1)[:, np.newaxis]


@lru_cache(maxsize=32)
def state_space(frame_rate: float, min_bpm: float = 55.0, max_bpm: float = 215.0,
                num_tempi: int | None = None, transition_lambda: float = 100.0,
                observation_lambda: float = 16) -> StateSpace:
    """The DBN's states and transitions at ``frame_rate`` (cached per parameter set)."""
    intervals = beat_intervals(60.0 * frame_rate / max_bpm, 60.0 * frame_rate / min_bpm,
                               num_tempi)
    first = np.concatenate([[0], np.cumsum(intervals)[:-1]]).astype(np.int64)
    position = np.concatenate([np.linspace(0, 1, n, endpoint=False) for n in intervals])
    beat_state = (position < 1.0 / observation_lambda).astype(np.uint8)
    state_interval = np.repeat(np.arange(len(intervals)), intervals)
    prob = tempo_transitions(intervals, float(transition_lambda))
    with np.errstate(divide="ignore"):
        log_trans = np.log(prob)
    allowed = prob > 0
    lo = allowed.argmax(0).astype(np.int64)
    hi = (len(intervals) - allowed[::-1].argmax(0)).astype(np.int64)
    return StateSpace(intervals, first, np.ascontiguousarray(log_trans.T), lo, hi,
                      state_interval.astype(np.int64), beat_state, position)


@numba.njit(cache=True, nogil=True)
def _viterbi(log_beat, log_nobeat, intervals, first, beat_state, log_trans_in, lo, hi,
             state_interval, log_init):  # pragma: no cover - compiled
    """Best state path ``[T]`` (empty when every path has probability zero).

    The sums are formed in madmom's order, ``(previous + log transition) + log density``, so
    that ties fall as they do there; a within-beat step has log transition 0."""
    num_frames, num_int = log_beat.shape[0], intervals.shape[0]
    num_states = state_interval.shape[0]
    last = first + intervals - 1
    prev = np.full(num_states, log_init)
    cur = np.empty(num_states)
    back = np.empty((num_frames, num_int), dtype=np.int32)
    for t in range(num_frames):
        d_beat, d_none = log_beat[t], log_nobeat[t]
        # Every state from its previous position (one branch-free pass; the first states
        # are overwritten below).
        for s in range(1, num_states):
            cur[s] = prev[s - 1] + (d_beat if beat_state[s] else d_none)
        # Into the first position of interval j: from the last position of each allowed
        # interval i in ascending order, the first strict maximum kept.
        for j in range(num_int):
            row = log_trans_in[j]
            best, arg = -np.inf, -1
            for i in range(lo[j], hi[j]):
                value = prev[last[i]] + row[i] + d_beat
                if value > best:
                    best, arg = value, i
            cur[first[j]] = best
            back[t, j] = arg
        prev, cur = cur, prev
    state = 0
    for s in range(1, num_states):
        if prev[s] > prev[state]:
            state = s
    path = np.empty(num_frames, dtype=np.int64)
    if prev[state] == -np.inf:
        return path[:0]
    for t in range(num_frames - 1, -1, -1):
        path[t] = state
        j = state_interval[state]
        state = last[back[t, j]] if state == first[j] else state - 1
    return path


@dataclass(frozen=True)
class BeatDBN:
    """madmom's ``DBNBeatTrackingProcessor(fps=frame_rate, …)`` in offline mode; the defaults
    are madmom's (and so MARBLE's, which passes only ``fps``)."""

    frame_rate: float
    min_bpm: float = 55.0
    max_bpm: float = 215.0
    num_tempi: int | None = None
    transition_lambda: float = 100.0
    observation_lambda: float = 16
    threshold: float = 0.0
    correct: bool = True

    @property
    def states(self) -> StateSpace:
        return state_space(float(self.frame_rate), float(self.min_bpm), float(self.max_bpm),
                           self.num_tempi, float(self.transition_lambda),
                           self.observation_lambda)

    def path(self, activation: np.ndarray) -> np.ndarray:
        """The Viterbi state path over ``activation`` (empty when no path is possible)."""
        act = np.asarray(activation)
        # The densities are computed in the activation's own precision, as madmom does
        # (MARBLE passes float32 probabilities).
        with np.errstate(divide="ignore", invalid="ignore"):
            log_nobeat = np.log((1.0 - act) / (self.observation_lambda - 1)).astype(np.float64)
            log_beat = np.log(act).astype(np.float64)
        st = self.states
        log_init = float(np.log(1.0 / len(st.state_interval)))
        return first_call("beat_dbn", lambda: _viterbi(
            log_beat, log_nobeat, st.intervals, st.first, st.beat_state, st.log_trans_in, st.lo,
            st.hi, st.state_interval, log_init))

    def frames(self, activation: np.ndarray) -> np.ndarray:
        """Beat frame indices (int64) of a 1-D activation in [0, 1]."""
        act = np.asarray(activation)
        if not np.issubdtype(act.dtype, np.floating):
            act = act.astype(np.float64)
        if act.ndim != 1:
            raise ValueError(f"beat activation must be 1-D, got shape {act.shape}")
        offset = 0
        if self.threshold:
            # madmom keeps the span from the first to the last frame at or above the
            # threshold; when that set is just frame 0 it keeps nothing (``idx.any()``).
            above = np.flatnonzero(act >= self.threshold)
            start = stop = 0
            if above.any():
                start, stop = above.min(), min(act.size, above.max() + 1)
            act, offset = act[start:stop], int(start)
        if not act.any():
            return np.zeros(0, dtype=np.int64)
        path = self.path(act)
        if not path.any():
            return np.zeros(0, dtype=np.int64)
        st = self.states
        in_beat = st.beat_state[path].astype(bool)
        if self.correct:
            beats = _peaks_in_runs(act, in_beat)
        else:
            beats = _wrapping_minima(st.position[path])
            beats = beats[in_beat[beats]]
        return beats + offset

    def __call__(self, activation: np.ndarray) -> np.ndarray:
        """Beat times (s)."""
        return self.frames(activation) / float(self.frame_rate)


def _peaks_in_runs(activation: np.ndarray, in_beat: np.ndarray) -> np.ndarray:
    """The frame of the (first) activation maximum within each run of ``True``."""
    edges = np.flatnonzero(np.diff(in_beat.astype(np.int8))) + 1
    if in_beat[0]:
        edges = np.r_[0, edges]
    if in_beat[-1]:
        edges = np.r_[edges, in_beat.size]
    return np.array([lo + int(np.argmax(activation[lo:hi])) for lo, hi in edges.reshape(-1, 2)],
                    dtype=np.int64)


def _wrapping_minima(values: np.ndarray) -> np.ndarray:
    """Indices strictly below both neighbours, the ends wrapping around (scipy's
    ``argrelmin(mode='wrap')``)."""
    from scipy.signal import argrelmin

    return argrelmin(values, mode="wrap")[0].astype(np.int64)


def dbn_beats(activation: np.ndarray, frame_rate: float, **params: object) -> np.ndarray:
    """Beat times (s) of a beat activation in [0, 1], decoded by :class:`BeatDBN`."""
    return BeatDBN(float(frame_rate), **params)(activation)


__all__ = ["BeatDBN", "StateSpace", "beat_intervals", "dbn_beats", "state_space",
           "tempo_transitions"]

"""Labels derived from a song spec and its rendering: tags and raw emotion values."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mirprobe.synth.spec import PARTS, SongSpec

INSTRUMENT_TAGS = PARTS
CHARACTER_TAGS = ("fast", "slow", "loud", "quiet", "bright", "dark", "happy", "sad", "waltz",
                  "swing")
TAGS = INSTRUMENT_TAGS + CHARACTER_TAGS

# Thresholds of the character tags; the band between two thresholds gets neither tag.
FAST_BPM, SLOW_BPM = 130.0, 90.0
LOUD_DB, QUIET_DB = -15.0, -24.0
BRIGHT_HZ, DARK_HZ = 3500.0, 1500.0
SWING_RATIO = 0.55

DESCRIPTION = {
    "Key": "the key the track was composed in (progression starting on the tonic chord; "
           "minor keys mostly raise the 7th on V)",
    "Genre": "the style sheet the track was drawn from (tempo range, meter, swing, drum pattern, "
             "instrument palette, harmony, accompaniment; ranges overlap across genres)",
    "Tagging": f"instruments actually rendered, plus fast (>= {FAST_BPM:g} BPM) / slow (< "
               f"{SLOW_BPM:g}), loud (RMS >= {LOUD_DB:g} dBFS) / quiet (< {QUIET_DB:g}), bright "
               f"(low-pass >= {BRIGHT_HZ:g} Hz) / dark (< {DARK_HZ:g}), happy (major) / sad "
               f"(minor), waltz (3/4), swing (off-beat eighth at >= {SWING_RATIO:g} of the beat)",
    "Emotion": "[arousal, valence]: arousal = tempo + loudness + brightness + drums + noise, "
               "valence = mode + brightness + tempo + noise (standardised terms), then z-scored "
               "with the train split's mean and population std",
    "Beat": "beat times phase + k*60/tempo inside the clip, downbeats where the bar starts; "
            "exact from the rendering grid",
}


def tags(spec: SongSpec, rms_db: float, parts: Iterable[str]) -> list[str]:
    """What was generated (``parts``: the instruments that sounded), in :data:`TAGS` order."""
    on = {i for i in parts if i in INSTRUMENT_TAGS}
    on |= {"fast"} if spec.tempo >= FAST_BPM else {"slow"} if spec.tempo < SLOW_BPM else set()
    on |= {"loud"} if rms_db >= LOUD_DB else {"quiet"} if rms_db < QUIET_DB else set()
    on |= {"bright"} if spec.cutoff >= BRIGHT_HZ else {"dark"} if spec.cutoff < DARK_HZ else set()
    on.add("happy" if spec.mode == "major" else "sad")
    if spec.meter == 3:
        on.add("waltz")
    if spec.swing >= SWING_RATIO:
        on.add("swing")
    return [t for t in TAGS if t in on]


def _terms(spec: SongSpec, rms_db: float) -> tuple[float, float, float]:
    tempo = (spec.tempo - 115.0) / 30.0
    loud = (rms_db + 19.0) / 5.0
    bright = (np.log2(spec.cutoff) - np.log2(2500.0)) / 1.0
    return tempo, loud, float(bright)


def emotion_raw(spec: SongSpec, rms_db: float, drums: bool) -> tuple[float, float]:
    """Arousal and valence before standardisation (``drums``: whether drums sounded)."""
    tempo, loud, bright = _terms(spec, rms_db)
    arousal = 0.8 * tempo + 0.6 * loud + 0.4 * bright + 0.5 * drums + 0.45 * spec.noise[0]
    valence = (0.9 if spec.mode == "major" else -0.9) + 0.4 * bright + 0.25 * tempo + 0.5 * spec.noise[1]
    return float(arousal), float(valence)


def standardise(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Z-score ``values`` with the mean and population std of ``train`` (MARBLE's Emomusic)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    return (values - mean) / np.where(std > 0, std, 1.0)

"""The built-in synthetic suite: seeded, numpy/scipy-rendered tracks with labels for five tasks.

``generate_suite(out_dir, size, seed)`` writes audio plus MARBLE-v2 JSONL (Key, Genre, Tagging,
Emotion over one shared pool of tracks, Beat over a subset of it) so that the whole benchmark
runs without downloading anything.
"""

from mirprobe.synth.labels import TAGS
from mirprobe.synth.spec import GENRES, KEYS
from mirprobe.synth.suite import PREFIXES, SIZES, VERSION, default_dir, generate_suite

__all__ = ["GENRES", "KEYS", "PREFIXES", "SIZES", "TAGS", "VERSION", "default_dir",
           "generate_suite"]

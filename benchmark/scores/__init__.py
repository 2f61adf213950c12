"""The built-in scores suite: real dance tunes from music21's corpus played by the sampled
instruments of a General MIDI SoundFont, with labels read from the scores.

``mirprobe.scores.suite.generate_scores_suite(out_dir, size, seed)`` writes audio plus
MARBLE-v2 JSONL for six tasks (key, genre, tagging and beat over clips of tunes; pitch and
instrument over single notes). This package imports nothing heavy, so that the worker
processes that parse and render (:mod:`mirprobe.scores.work`) start fast.
"""

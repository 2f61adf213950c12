"""``mirprobe series``: every checkpoint of a pre-training run through the benchmark, in step order.

:mod:`.checkpoints` finds the checkpoints (step-named sub-folders or a YAML listing),
:mod:`.runner` evaluates new ones round by round through the ordinary pipeline, and
:mod:`mirprobe.report.series` turns the run records into score-by-step and step × layer tables.
"""

"""mirprobe: layer-by-layer probing of music audio representations on MIR tasks."""

import os

# OpenMP threads that wait for each other by spinning hold the cores the late thread of a
# parallel region needs when other processes share the machine: on a loaded 2-core machine one
# float64 eigendecomposition of the ridge probes took 3-30x longer than with passive waiting,
# which splits the work the same way (bitwise the same results; perf/README.md). Set before
# torch loads its OpenMP runtime; the environment's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

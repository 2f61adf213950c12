"""mirprobe: layer-by-layer probing of music audio representations on MIR tasks."""

import os


def _busy() -> bool:
    """Whether other processes already keep every core of this one busy (1-minute load)."""
    try:
        return os.getloadavg()[0] >= len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no load average (Windows) or no affinity (macOS)
        return False


# OpenMP threads that wait by spinning hold the cores the late thread of a parallel region
# needs when other processes share the machine: on a loaded 2-core machine one float64
# eigendecomposition of the ridge probes took 3-30x longer than with passive waiting. On an
# idle one spinning is faster (the default run: 84 s active, 97 s passive). So passive only on
# a busy machine; both split the work the same way (bitwise the same results; perf/README.md).
# Set before torch loads its OpenMP runtime; the environment's own setting wins.
if _busy():
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

"""numba's code-generation target, chosen before numba compiles anything.

The LLVM that llvmlite 0.50 ships miscompiles for AMD Zen 5 (host CPU name ``znver5``):
``librosa.beat.beat_track``, the ``dp`` beat decoder, ends in a segmentation fault there, and
runs with the target set to ``znver4`` (the same instruction set up to AVX-512, without
Zen 5's scheduling model). A ``NUMBA_CPU_NAME`` set by the user is left alone.
"""

from __future__ import annotations

import os
import sys

MISCOMPILED = {"znver5": "znver4"}  # host CPU name → the target numba compiles for instead


def configure() -> None:
    """Set ``NUMBA_CPU_NAME`` on hosts whose target LLVM miscompiles (call before importing
    numba or librosa; when numba is already imported its configuration is reloaded, which
    holds until its first compilation)."""
    if "NUMBA_CPU_NAME" in os.environ:
        return
    from llvmlite import binding

    target = MISCOMPILED.get(binding.get_host_cpu_name())
    if target is None:
        return
    os.environ["NUMBA_CPU_NAME"] = target
    if "numba" in sys.modules:
        from numba.core import config

        config.reload_config()

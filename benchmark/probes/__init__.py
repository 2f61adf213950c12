"""Probe engine: one batched job trains every layer × hyper-parameter × seed head.

Contract used by the pipeline (``mirprobe.pipeline``)::

    result = run_probe(task, entry, splits, cfg, device="cpu", seed=0, progress=True)

``splits`` maps ``"train" | "val" | "test"`` to :class:`SplitData` (tracks of the feature
entry with their raw labels). The result carries what a run record needs.
"""

from __future__ import annotations

from mirprobe.probes.spec import (
    ENGINE_VERSION,
    HEAD_KINDS,
    PRECISIONS,
    ProbeConfig,
    ProbeResult,
    SplitData,
    check_heads,
    probe_identity,
)


def run_probe(task, entry, splits, cfg: ProbeConfig, **kwargs) -> ProbeResult:  # noqa: ANN001
    from mirprobe.probes.engine import run_probe as _run

    return _run(task, entry, splits, cfg, **kwargs)


__all__ = ["ENGINE_VERSION", "HEAD_KINDS", "PRECISIONS", "ProbeConfig", "ProbeResult", "SplitData",
           "check_heads", "probe_identity", "run_probe"]

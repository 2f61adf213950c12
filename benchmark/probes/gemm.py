"""The heads' large float32 products; on CPUs through oneDNN, as 1×1 convolutions.

``torch.mm`` on a CPU calls MKL's sgemm. On the project's reference machine (AMD EPYC, Zen 5,
2 cores) it ran the heads' shapes (``[n·512, 768] × [768, 64]`` and ``[n·512, 64] × [64, 768]``)
at 90–185 GFLOP/s, and the same products written as 1×1 convolutions over channels-last
views, which PyTorch runs in oneDNN, at 210–400 GFLOP/s with the same float32 precision
(``perf/README.md``). On an Intel Xeon (AVX-512, AMX) the opposite holds: MKL's sgemm, Intel's
own, ran the same shapes 1.5–7× faster than those convolutions, and the default run's probe stage
took 12.7 s through it against 15.8 s. So the convolutions are used on AMD CPUs only, where MKL
is known to take slower code paths. A product ``A [P, K] × B [K, R]`` is a convolution whose input
is ``A`` seen as ``P`` positions of ``K`` channels (channels last: ``A``'s own memory, no copy)
and whose ``R`` filters are the rows of ``Bᵀ``; its channels-last output is ``[P, R]`` in
memory, the layout the heads keep.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F


@functools.cache
def amd_cpu() -> bool:
    """Whether this machine's CPU is an AMD one (Linux's ``/proc/cpuinfo``; False elsewhere)."""
    try:
        return "AuthenticAMD" in Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False


def onednn_products(t: torch.Tensor) -> bool:
    """Whether float32 products of ``t``'s device go through oneDNN convolutions (AMD CPUs)."""
    return (t.device.type == "cpu" and t.dtype == torch.float32 and amd_cpu()
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def mm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``out [P, R] = a [P, K] × b [K, R]`` (float32; ``b`` small: it is copied)."""
    if not onednn_products(a):
        if out.is_contiguous():
            torch.mm(a, b, out=out)
        else:
            out.copy_(torch.mm(a, b))
        return
    # One group: [P, 1, K] × [1, R, K]ᵀ (b is small: its transposed copy is cheap).
    out.copy_(grouped_mm(a.unsqueeze(1), b.T.unsqueeze(0)).squeeze(1))


def grouped_mm(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
    """``n`` products sharing their rows: ``out[:, i] = a[:, i] × bt[i]ᵀ`` for ``a`` ``[P, n, K]``
    and ``bt`` ``[n, R, K]``; returns ``[P, n, R]`` (a grouped 1×1 convolution through oneDNN,
    else one batched product)."""
    if not onednn_products(a):
        return torch.bmm(a.transpose(0, 1), bt.transpose(1, 2)).transpose(0, 1)
    p, n, k = a.shape
    r = bt.shape[1]
    # a's memory as channels last: [1, n·K, 1, P] with the strides of a permuted
    # [1, 1, P, n·K] (a copy only where a is not dense; other strides on the size-1 dims hide
    # the layout from the convolution, which then copies a and its output).
    positions = a.contiguous().view(1, 1, p, n * k).permute(0, 3, 1, 2)
    y = F.conv2d(positions, bt.contiguous().view(n * r, k, 1, 1), groups=n)
    return y.permute(0, 2, 3, 1).reshape(p, n, r)  # channels-last output: a view


def grouped_tmm(at: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``out[i] = at[i]ᵀ × b[i]`` for ``at`` ``[n, K, P]`` and ``b`` ``[n, K, R]``: ``[n, P, R]``
    (through oneDNN a grouped 1×1 convolution whose input is ``b`` as channels-first: no copy
    of the large factor)."""
    if not onednn_products(b):
        return torch.bmm(at.transpose(1, 2), b)
    n, k, p = at.shape
    r = b.shape[2]
    filters = at.transpose(1, 2).contiguous().view(n * p, k, 1, 1)
    y = F.conv2d(b.contiguous().view(1, n * k, 1, r), filters, groups=n)
    return y.view(n, p, r)

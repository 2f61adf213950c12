"""Faster CPU routes for the products of PyTorch models, swapped in without changing the model.

On the project's reference CPU (AMD EPYC, Zen 5) the stock routes leave speed on the table
(``perf/README.md``): ``nn.Conv1d`` runs oneDNN on channels-first memory, which in bfloat16 is
several times slower than the same convolution as a 2-D one over a channels-last view (and
1.1–1.4× slower in float32); a one-channel waveform front end is faster as a product of frames;
a per-channel group norm made contiguous copies the largest activation twice.
:func:`accelerate` points the ``forward`` of those modules at these routes. Parameters, state
dict and parametrisations (weight norm) stay as they are; the routes only run on CPUs with
oneDNN enabled, and :func:`plain_products` turns them off (the reference forward pass).
Float32 results equal the stock ones to float32 rounding (relative 2e-6 on MERT-v1-95M).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F

_PLAIN = [False]  # set by plain_products(): the stock forward of every module


@contextlib.contextmanager
def plain_products() -> Iterator[None]:
    """Run swapped modules through their stock ``forward`` (the reference for deviations)."""
    before = _PLAIN[0]
    _PLAIN[0] = True
    try:
        yield
    finally:
        _PLAIN[0] = before


def _fast(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and routes_enabled()


def routes_enabled() -> bool:
    """Whether the fast routes run: oneDNN available and on, and not inside :func:`plain_products`."""
    return (not _PLAIN[0] and torch.backends.mkldnn.is_available()
            and bool(torch.backends.mkldnn.enabled))


def accelerate(model: torch.nn.Module) -> torch.nn.Module:
    """Route every zero-padded ``nn.Conv1d`` of ``model`` through channels-last oneDNN convolutions
    on CPUs, and per-channel ``nn.GroupNorm`` through a pass that keeps that layout (in place;
    returns ``model``). Modules of other devices keep their stock forward. ``nn.Linear`` keeps
    its own: at transformer widths (768 → 768/3072) MKL's sgemm and oneDNN ran at the same rate
    (``perf/README.md``); :func:`linear` is the oneDNN route for narrower products."""
    for module in model.modules():
        if type(module) is torch.nn.GroupNorm and module.num_groups == module.num_channels:
            module.forward = functools.partial(channel_norm, module)
        elif isinstance(module, torch.nn.Conv1d) and module.padding_mode == "zeros" \
                and not isinstance(module.padding, str):
            module.forward = functools.partial(conv1d, module)
    return model


def linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``; float32 on a CPU as a 1×1 convolution over ``x``'s memory (oneDNN)."""
    if not _fast(x) or torch.is_autocast_enabled("cpu") or x.dtype != torch.float32 or x.dim() < 2:
        return F.linear(x, module.weight, module.bias)
    return mm_bias(x, module.weight, module.bias)


def mm_bias(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x [..., K] × weightᵀ + bias`` as a 1×1 convolution whose input is ``x`` seen as rows of
    ``K`` channels (channels last: ``x``'s own memory) and whose filters are ``weight``'s rows."""
    k, r = x.shape[-1], weight.shape[0]
    rows = x.reshape(-1, k)
    positions = rows.contiguous().view(1, 1, rows.shape[0], k).permute(0, 3, 1, 2)
    y = F.conv2d(positions, weight.view(r, k, 1, 1), bias)
    return y.permute(0, 2, 3, 1).reshape(*x.shape[:-1], r)  # channels-last output: a view


def conv1d(module: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for ``x`` ``[B, C, T]`` through :func:`conv1d_channels_last` on CPUs."""
    return conv1d_channels_last(x, module.weight, module.bias, module.stride[0], module.padding[0],
                                module.dilation[0], module.groups)


def conv1d_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                         stride: int = 1, padding: int = 0, dilation: int = 1,
                         groups: int = 1) -> torch.Tensor:
    """``F.conv1d``; on a CPU a 2-D convolution over a channels-last view ``[B, C, 1, T]`` of ``x``
    ``[B, C, T]``. Its output is ``[B, C', T']`` with channels-last strides, which elementwise ops
    keep, so a stack of such convolutions copies its input once."""
    if not _fast(x) or x.dim() != 3:
        return F.conv1d(x, weight, bias, stride, padding, dilation, groups)
    if x.shape[1] == 1 and groups == 1 and padding == 0 and dilation == 1:
        return _frames_product(x, weight, bias, stride)
    last = torch.channels_last
    y = F.conv2d(x.unsqueeze(2).contiguous(memory_format=last),
                 weight.unsqueeze(2).contiguous(memory_format=last), bias, stride=(1, stride),
                 padding=(0, padding), dilation=(1, dilation), groups=groups)
    return y.squeeze(2)


def _frames_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    stride: int) -> torch.Tensor:
    """A one-channel convolution (a waveform front end) as frames ``[B, T', k]`` × filters, in
    float32 even under autocast (its reduction is ``k`` long: nothing to gain in bfloat16, and a
    bfloat16 waveform loses precision); channels-last ``[B, C, T']`` out."""
    with torch.autocast("cpu", enabled=False):
        frames = x[:, 0].float().unfold(-1, weight.shape[-1], stride)  # a view
        y = torch.matmul(frames, weight[:, 0].float().T)
        if bias is not None:
            y += bias.float()
    return y.transpose(1, 2)


def channel_norm(module: torch.nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """A ``GroupNorm`` of one channel per group over ``x`` ``[B, C, T]``, in float32 (as autocast
    runs group norms), keeping ``x``'s memory layout (the stock kernel makes it contiguous)."""
    if not _fast(x) or x.dim() != 3:
        return F.group_norm(x, module.num_groups, module.weight, module.bias, module.eps)
    with torch.autocast("cpu", enabled=False):
        x = x.float()
        var, mean = torch.var_mean(x, dim=2, keepdim=True, correction=0)
        scale = torch.rsqrt(var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight[:, None]
        shift = -mean * scale
        if module.bias is not None:
            shift = shift + module.bias[:, None]
        return x * scale + shift

"""Faster CPU routes for the products of PyTorch models, swapped in without changing the model.

On the project's CPUs (an AMD EPYC, Zen 5; an Intel Xeon with AMX) the stock routes leave speed
on the table (``perf/README.md``): ``nn.Conv1d`` runs oneDNN on channels-first memory, which in
bfloat16 is several times slower than the same convolution as a 2-D one over a channels-last
view (and 1.1–1.4× slower in float32); a one-channel waveform front end is faster as a product
of frames, and with the per-channel group norm after it folded in, one product writes the
normalised output; a per-channel group norm made contiguous copies the largest activation
twice; under bfloat16 autocast every linear and convolution cast its float32 weights again at
every call (on the AMX CPU the casts took longer than the products). :func:`accelerate` points
the ``forward`` of those modules at these routes. Parameters, state dict and parametrisations
(weight norm) stay as they are; the routes only run on CPUs with oneDNN enabled, and
:func:`plain_products` turns them off (the reference forward pass). Float32 results equal the
stock ones to float32 rounding (relative 2e-6 on MERT-v1-95M); under autocast the linears give
the stock autocast numbers exactly.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

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
    on CPUs, per-channel ``nn.GroupNorm`` through a pass that keeps that layout, a wav2vec
    2.0-style first layer (waveform conv, its group norm, activation) through one product
    (:func:`normed_waveform_conv`), and ``nn.Linear`` under CPU autocast through weights cast
    once (in place; returns ``model``). Modules of other
    devices keep their stock forward. A float32 ``nn.Linear`` keeps its own: at transformer widths
    (768 → 768/3072) MKL's sgemm and oneDNN ran at the same rate (``perf/README.md``);
    :func:`mm_bias` is the oneDNN route for narrower products."""
    for module in model.modules():
        if _normed_waveform_layer(module):
            module.forward = functools.partial(normed_waveform_conv, module)
        if type(module) is torch.nn.GroupNorm and module.num_groups == module.num_channels:
            module.forward = functools.partial(channel_norm, module)
        elif isinstance(module, torch.nn.Conv1d) and module.padding_mode == "zeros" \
                and not isinstance(module.padding, str):
            module.forward = functools.partial(conv1d, module)
            _forget_casts_on_load(module)
        elif type(module) is torch.nn.Linear:
            module.forward = functools.partial(autocast_linear, module)
            _forget_casts_on_load(module)
    return model


def _normed_waveform_layer(module: torch.nn.Module) -> bool:
    """A wav2vec 2.0-style first layer (transformers' ``*GroupNormConvLayer``: conv → per-channel
    group norm → activation) whose convolution reads the waveform (one channel, no padding)."""
    conv, norm = getattr(module, "conv", None), getattr(module, "layer_norm", None)
    return (type(module).__name__.endswith("GroupNormConvLayer") and hasattr(module, "activation")
            and type(conv) is torch.nn.Conv1d and type(norm) is torch.nn.GroupNorm
            and conv.in_channels == 1 and conv.groups == 1 and conv.padding == (0,)
            and conv.dilation == (1,) and conv.padding_mode == "zeros"
            and norm.num_groups == norm.num_channels == conv.out_channels)


def normed_waveform_conv(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``activation(layer_norm(conv(x)))`` of a :func:`_normed_waveform_layer` in one product.

    The convolution is linear in the waveform's frames ``f`` (``[B, T', k]``, k = 10 taps), so each
    channel's mean over time is ``w · mean(f)`` and its variance ``w · cov(f) · w`` (a k × k
    matrix per item, in float64): the normalisation is folded into per-item filters, applied to
    the centred frames (no cancellation), with the norm's shift as one more tap on a column of
    ones. The 512-channel output is written once, channels last, instead of a product, a pass
    of statistics, a normalising pass and a copy (the conv's bias cancels in the norm)."""
    conv, norm = module.conv, module.layer_norm
    if not _fast(x) or torch.is_grad_enabled() or x.dim() != 3 or x.shape[1] != 1:
        return module.activation(norm(conv(x)))  # (the fold's filters carry no gradient)
    with torch.autocast("cpu", enabled=False):
        frames = x[:, 0].double().unfold(-1, conv.kernel_size[0], conv.stride[0])  # [B, T', k]
        centred = frames - frames.mean(dim=1, keepdim=True)
        cov = centred.transpose(1, 2) @ centred / frames.shape[1]  # [B, k, k]
        w = conv.weight.detach().flatten(1).double()  # [C, k]
        scale = torch.rsqrt(torch.einsum("ck,bkl,cl->bc", w, cov, w) + norm.eps)  # [B, C]
        if norm.weight is not None:
            scale = scale * norm.weight.detach().double()
        filters = (w * scale[..., None]).transpose(1, 2)  # [B, k, C]
        if norm.bias is not None:
            centred = torch.cat([centred, centred.new_ones(centred.shape[:2] + (1,))], dim=2)
            filters = torch.cat([filters, norm.bias.detach().double().expand(len(x), 1, -1)], dim=1)
        y = torch.bmm(centred.float(), filters.float())  # [B, T', C]
    return module.activation(y.transpose(1, 2))


def _forget_casts_on_load(module: torch.nn.Module) -> None:
    module.register_load_state_dict_post_hook(_forget_casts)


def _forget_casts(module: torch.nn.Module, _: object) -> None:
    module.__dict__.pop(_CASTS, None)


_CASTS = "fastops_casts"  # a module's cached weight casts, in its __dict__ (not state)


def cached(module: torch.nn.Module, key: str, make: Callable[[], tuple]) -> tuple:
    """``make()``'s tensors (casts of ``module``'s weights), made once per ``key`` and kept while
    ``module``'s parameters are the same tensors at the same addresses (moved, replaced or loaded
    weights make them again: ``load_state_dict`` in place drops them through a hook). Only used
    with gradients off, so a cast never needs to carry one."""
    stamp = tuple((p.data_ptr(), p.dtype, p.device) for p in module.parameters())
    casts = module.__dict__.setdefault(_CASTS, {})
    if key not in casts or casts[key][0] != stamp:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            casts[key] = (stamp, make())
    return casts[key][1]


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The CPU autocast precision ``x`` would be cast to by a product, or None (no autocast, not a
    CPU, gradients on, routes off)."""
    if not _fast(x) or torch.is_grad_enabled() or not torch.is_autocast_enabled("cpu"):
        return None
    dtype = torch.get_autocast_dtype("cpu")
    return dtype if x.dtype in (torch.float32, dtype) else None


def autocast_linear(module: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``; under CPU autocast with the weights cast to its precision once (the stock
    route casts them at every call), else the stock ``F.linear``. Same numbers either way."""
    dtype = _autocast_dtype(x)
    if dtype is None or module.weight.dtype != torch.float32:
        return F.linear(x, module.weight, module.bias)
    w, b = cached(module, f"linear {dtype}", lambda: (
        module.weight.to(dtype), None if module.bias is None else module.bias.to(dtype)))
    return F.linear(x.to(dtype), w, b)


def mm_bias(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x [..., K] × weightᵀ + bias`` as a 1×1 convolution whose input is ``x`` seen as rows of
    ``K`` channels (channels last: ``x``'s own memory) and whose filters are ``weight``'s rows."""
    k, r = x.shape[-1], weight.shape[0]
    rows = x.reshape(-1, k)
    positions = rows.contiguous().view(1, 1, rows.shape[0], k).permute(0, 3, 1, 2)
    y = F.conv2d(positions, weight.view(r, k, 1, 1), bias)
    return y.permute(0, 2, 3, 1).reshape(*x.shape[:-1], r)  # channels-last output: a view


def conv1d(module: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for ``x`` ``[B, C, T]`` through :func:`conv1d_channels_last` on CPUs, its
    weight laid out (and under autocast cast) once, not at every call, when gradients are off."""
    args = (module.stride[0], module.padding[0], module.dilation[0], module.groups)
    floats = next(module.parameters()).dtype == torch.float32  # (weight norm: not .weight, computed)
    if not _fast(x) or torch.is_grad_enabled() or x.dim() != 3 or not floats:
        return conv1d_channels_last(x, module.weight, module.bias, *args)
    dtype = _autocast_dtype(x) or torch.float32
    if x.shape[1] == 1:  # the waveform front end: float32 frames (see _frames_product)
        dtype = torch.float32
    w, b = cached(module, f"conv {dtype}", lambda: (
        module.weight.to(dtype).unsqueeze(2).contiguous(memory_format=torch.channels_last),
        None if module.bias is None else module.bias.to(dtype)))
    return conv1d_channels_last(x, w, b, *args)


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
    if weight.dim() == 3:
        weight = weight.unsqueeze(2).contiguous(memory_format=last)
    dtype = weight.dtype if torch.is_autocast_enabled("cpu") else x.dtype  # one pass: layout and cast
    y = F.conv2d(x.unsqueeze(2).to(dtype, memory_format=last), weight, bias, stride=(1, stride),
                 padding=(0, padding), dilation=(1, dilation), groups=groups)
    return y.squeeze(2)


def _frames_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    stride: int) -> torch.Tensor:
    """A one-channel convolution (a waveform front end) as frames ``[B, T', k]`` × filters, in
    float32 even under autocast (its reduction is ``k`` long: nothing to gain in bfloat16, and a
    bfloat16 waveform loses precision); channels-last ``[B, C, T']`` out."""
    with torch.autocast("cpu", enabled=False):
        frames = x[:, 0].float().unfold(-1, weight.shape[-1], stride)  # a view
        y = torch.matmul(frames, weight.flatten(1).float().T)
        if bias is not None:
            y += bias.float()
    return y.transpose(1, 2)


def channel_norm(module: torch.nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """A ``GroupNorm`` of one channel per group over ``x`` ``[B, C, T]``, in float32 (as autocast
    runs group norms), keeping ``x``'s memory layout (the stock kernel makes it contiguous). Each
    item is a batch norm in training mode over its ``[1, C, 1, T]`` view: per channel, the
    statistics and the normalisation in one kernel (a variance and a mean over the strided time
    axis, then a scale and shift, took 1.6× longer)."""
    if not _fast(x) or x.dim() != 3:
        return F.group_norm(x, module.num_groups, module.weight, module.bias, module.eps)
    with torch.autocast("cpu", enabled=False):
        x = x.float().unsqueeze(2)
        items = [F.batch_norm(x[b:b + 1], None, None, module.weight, module.bias, True, 0.0, module.eps)
                 for b in range(x.shape[0])]
        return (items[0] if len(items) == 1 else torch.cat(items)).squeeze(2)

"""The products ceiling of a forward pass: its convolutions, matrix products and attention, each
timed by the fastest public route on this CPU at a precision.

The forward pass of one batch is run under a ``TorchFunctionMode`` (with the stock routes,
``plain_products``) that records every ``conv1d``/``conv2d``/``linear``/``scaled_dot_product_attention``
call with its tensors and times it: ``share`` is the fraction of the forward pass's wall time
spent in those calls. Each call is then replayed by every route that computes it (the stock
call; a channels-last 2-D convolution; a 1×1 convolution over the rows for ``linear``), in
float32 and cast to bfloat16, the routes of a call interleaved round by round, best of
``rounds``. ``gain`` is the stock float32 time of all calls over the sum of each call's fastest
route at a precision. If everything but these calls took no time, the forward pass would be
``gain / share`` times faster than the stock float32 one: that is the ceiling. Each figure is
a ratio of times taken within milliseconds of each other, so it holds on a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from mirprobe.models.fastops import mm_bias, plain_products

RECORDED = {F.conv1d: "conv1d", F.conv2d: "conv2d", F.linear: "linear",
            F.scaled_dot_product_attention: "sdpa"}


class Recorder(TorchFunctionMode):
    """Keeps ``(name, args, kwargs)`` of every recorded call and the seconds they took."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple, dict]] = []
        self.seconds = 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func not in RECORDED:
            return func(*args, **kwargs)
        self.calls.append((RECORDED[func], args, dict(kwargs)))
        start = time.perf_counter()
        out = func(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        return out


def record(forward: Callable[[torch.Tensor], object], waves: torch.Tensor,
           rounds: int = 3) -> tuple[list[tuple[str, tuple, dict]], float]:
    """The recorded calls of ``forward(waves)`` (stock routes) and their share of its wall time
    (median of ``rounds`` passes)."""
    shares = []
    with torch.inference_mode(), plain_products():
        forward(waves)
        for _ in range(rounds):
            rec = Recorder()
            start = time.perf_counter()
            with rec:
                forward(waves)
            shares.append(rec.seconds / (time.perf_counter() - start))
    return rec.calls, sorted(shares)[len(shares) // 2]


def _cast(v: object, dtype: torch.dtype) -> object:
    return v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v


def _conv_args(name: str, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, object, dict]:
    keys = ("stride", "padding", "dilation", "groups")
    x, w, b = args[0], args[1], args[2] if len(args) > 2 else kwargs.get("bias")
    opts = dict(zip(keys, args[3:], strict=False)) | {k: kwargs[k] for k in keys if k in kwargs}
    return x, w, b, opts


def routes(name: str, args: tuple, kwargs: dict) -> dict[str, Callable[[], object]]:
    """Every route that computes the recorded call."""
    func = next(f for f, n in RECORDED.items() if n == name)
    out = {"stock": lambda: func(*args, **kwargs)}
    if name == "linear":
        x, w = args[0], args[1]
        b = args[2] if len(args) > 2 else kwargs.get("bias")
        out["1x1 conv"] = lambda: mm_bias(x, w, b)
    elif name in ("conv1d", "conv2d"):
        x, w, b, opts = _conv_args(name, args, kwargs)
        if isinstance(opts.get("padding", 0), str):
            return out
        last = torch.channels_last
        if name == "conv1d":
            pair = {k: (1 if k != "padding" else 0, _one(v)) for k, v in opts.items() if k != "groups"}
            x4, w4 = x.unsqueeze(2), w.unsqueeze(2)
        else:
            pair, x4, w4 = {k: v for k, v in opts.items() if k != "groups"}, x, w
        x4, w4 = x4.contiguous(memory_format=last), w4.contiguous(memory_format=last)
        out["channels-last conv"] = lambda: F.conv2d(x4, w4, b, groups=opts.get("groups", 1), **pair)
    return out


def _one(v: object) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def route_times(calls: list[tuple[str, tuple, dict]], dtypes: list[str],
                rounds: int = 3) -> dict[str, dict[str, float]]:
    """Seconds of the recorded calls per precision (``dtypes`` holds float32): ``stock`` (float32's stock routes for every
    precision: the naive loop's), ``best`` (each call's fastest route at that precision) and the
    fastest time per kind of call and route. A call's routes at every precision run interleaved,
    round after round; each keeps its best round."""
    out = {d: {"stock": 0.0, "best": 0.0} for d in dtypes}
    with torch.inference_mode():
        for name, args, kwargs in calls:
            fns = {}
            for d in dtypes:
                dt = getattr(torch, d)
                cast = tuple(_cast(a, dt) for a in args)
                kw = {k: _cast(v, dt) for k, v in kwargs.items()}
                fns.update({(d, r): fn for r, fn in routes(name, cast, kw).items()})
            best = dict.fromkeys(fns, float("inf"))
            for r in range(rounds + 1):  # round 0 warms up
                for key, fn in fns.items():
                    start = time.perf_counter()
                    fn()
                    if r:
                        best[key] = min(best[key], time.perf_counter() - start)
            for d in dtypes:
                mine = {r: t for (dd, r), t in best.items() if dd == d}
                route = min(mine, key=mine.get)
                out[d]["stock"] += best[("float32", "stock")]
                out[d]["best"] += mine[route]
                out[d][f"{name}: {route}"] = out[d].get(f"{name}: {route}", 0.0) + mine[route]
    return out

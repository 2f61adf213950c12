"""The oneDNN routes of mirprobe.models.fastops against the stock PyTorch forward passes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from mirprobe.models.fastops import accelerate, mm_bias, plain_products
from mirprobe.models.mert import random_architecture

#: Documented tolerances (perf/README.md, "Extraction"), relative to each layer's largest magnitude.
FP32_TOL = 1e-5  # the oneDNN routes in float32: float32 rounding
BF16_TOL = 5e-2  # bfloat16 autocast against the float32 forward, frame level, MERT-v1-95M


class Conv2dCalls(TorchFunctionMode):
    """Counts the 2-D convolutions a forward pass calls (the oneDNN routes are 2-D convolutions),
    and the calls of every function in ``also`` (by function)."""

    def __init__(self, also: tuple = ()) -> None:
        super().__init__()
        self.count = 0
        self.also = {f: 0 for f in also}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.count += func is F.conv2d
        if func in self.also:
            self.also[func] += 1
        return func(*args, **(kwargs or {}))


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    weight_norm = torch.nn.utils.parametrizations.weight_norm
    return torch.nn.Sequential(
        torch.nn.Conv1d(1, 16, 10, stride=5, bias=False), torch.nn.GroupNorm(16, 16), torch.nn.GELU(),
        torch.nn.Conv1d(16, 16, 3, stride=2), torch.nn.GELU(),
        torch.nn.Conv1d(16, 16, 3, stride=2, dilation=2), torch.nn.GELU(),
        weight_norm(torch.nn.Conv1d(16, 16, 8, padding=4, groups=4), dim=2),
        torch.nn.Flatten(1), torch.nn.LazyLinear(7)).eval()



def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def test_routes_match_the_stock_forward_and_are_taken() -> None:
    net = _net()
    x = torch.randn(2, 1, 400)
    with torch.inference_mode():
        net(x)  # materialises the lazy linear
        keys = list(net.state_dict())
        accelerate(net)
        assert list(net.state_dict()) == keys  # parameters and parametrisations untouched
        with plain_products(), Conv2dCalls() as stock:
            ref = net(x)
        with Conv2dCalls() as fast:
            out = net(x)
    assert stock.count == 0 and fast.count == 3  # the convolutions but the one-channel one
    assert out.shape == ref.shape
    assert _relative(out, ref) < FP32_TOL


def test_linear_route_matches_float64() -> None:
    x, w, b = torch.randn(3, 50, 96), torch.randn(40, 96), torch.randn(40)
    ref = F.linear(x.double(), w.double(), b.double())
    with torch.inference_mode(), Conv2dCalls() as calls:
        out = mm_bias(x, w, b)
    assert calls.count == 1 and out.shape == ref.shape
    assert _relative(out, ref) < FP32_TOL


def test_routes_stay_off_where_oneDNN_is() -> None:
    net = accelerate(_net())
    x = torch.randn(1, 1, 200)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False), Conv2dCalls() as calls:
        net(x)
    assert calls.count == 0


def test_channels_last_output_feeds_the_next_convolution_without_a_copy() -> None:
    conv = accelerate(torch.nn.Sequential(torch.nn.Conv1d(4, 8, 3, stride=2)))[0]
    with torch.inference_mode():
        y = conv(torch.randn(2, 4, 50))
    assert y.shape == (2, 8, 24) and y.stride(1) == 1  # channels last in memory


@pytest.fixture(scope="module")
def mert() -> tuple[torch.Tensor, ...]:
    ex = random_architecture("mert-v1-95m", seed=0)
    waves = torch.randn(2, 24000, generator=torch.Generator().manual_seed(3))
    with plain_products():
        ref = ex.forward(waves)
    fast = ex.forward(waves)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = ex.forward(waves)
    return ref, fast, bf16


def test_mert_float32_routes_within_tolerance(mert: tuple[torch.Tensor, ...]) -> None:
    ref, fast, _ = mert
    for layer in range(len(ref)):
        assert _relative(fast[layer], ref[layer]) < FP32_TOL, layer


def test_mert_bfloat16_within_tolerance(mert: tuple[torch.Tensor, ...]) -> None:
    ref, _, bf16 = mert
    assert bf16.dtype == torch.bfloat16 or _relative(bf16, ref) > 0  # it ran in bfloat16
    devs = [_relative(bf16[layer], ref[layer]) for layer in range(len(ref))]
    assert max(devs) < BF16_TOL, devs
    assert min(devs) > FP32_TOL  # bfloat16 rounding shows: the comparison can fail


def test_musicnn_routes_within_tolerance() -> None:
    import importlib.util

    if importlib.util.find_spec("musicnn") is None:
        pytest.skip("musicnn weights not installed (pip install --no-deps musicnn==0.1.0)")
    from mirprobe.models.musicnn import MusicnnExtractor

    ex = MusicnnExtractor()
    waves = torch.randn(2, 48000, generator=torch.Generator().manual_seed(4))
    reductions = (torch.Tensor.amax, torch.Tensor.amin, torch.bmm)
    with torch.inference_mode():
        with plain_products(), Conv2dCalls(reductions) as stock:
            ref = ex.pool(ex.forward(waves))
        with Conv2dCalls(reductions) as fast:
            out = ex.pool(ex.forward(waves))
        with torch.autocast("cpu", dtype=torch.bfloat16), Conv2dCalls(reductions) as bf16:
            ex.forward(waves)
        ex.net.double()
        with plain_products():
            f64 = ex.pool(ex.forward(waves.double()))
        ex.net.float()
    # float32: the timbral convolutions (7 × 38, 7 × 67) through BandPeaks' products (a DFT along
    # frequency), the mid end's stock convolutions; bfloat16: the convolutions, the mid end's as 2-D ones
    assert fast.count == stock.count - 2 and fast.also[torch.bmm] > 0
    assert bf16.count == stock.count + 3 and bf16.also[torch.bmm] == 0
    # MTT's filters of negative batch-norm scale (about half) are negated: one max per branch,
    # where the stock route takes a max and a min of each front-end branch
    assert stock.also[torch.Tensor.amin] == 5 and fast.also[torch.Tensor.amin] == 0
    for layer in range(len(ref)):
        assert _relative(out[layer], ref[layer]) < FP32_TOL, layer
        # and as near float64 as the stock float32 forward pass
        assert _relative(out[layer], f64[layer]) < max(2 * _relative(ref[layer], f64[layer]), 1e-6), layer


def test_autocast_weights_cast_once_same_numbers_and_dropped_on_load() -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv1d(8, 16, 3, stride=2), torch.nn.GELU(),
                              torch.nn.Conv1d(16, 24, 3), torch.nn.Flatten(1), torch.nn.LazyLinear(5)).eval()
    x = torch.randn(2, 8, 40)
    with torch.inference_mode():
        net(x)  # materialises the lazy linear
        accelerate(net)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with plain_products():
                ref = net(x)
            out = net(x)
            linear_cast = net[4].__dict__["fastops_casts"]["linear torch.bfloat16"][1][0]
            again = net(x)
        assert out.dtype == ref.dtype == torch.bfloat16
        assert torch.equal(out, again) and _relative(out, ref) < 1e-2  # bf16 rounding of the inputs' layout
        assert net[4].__dict__["fastops_casts"]["linear torch.bfloat16"][1][0] is linear_cast  # cast once
        assert torch.equal(linear_cast, net[4].weight.bfloat16())
        new = {k: torch.randn_like(v) for k, v in net.state_dict().items()}
        net.load_state_dict(new)  # in place: same addresses, so the hook must drop the casts
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with plain_products():
                ref = net(x)
            out = net(x)
        assert _relative(out, ref) < 1e-2


def test_linear_under_autocast_equals_the_stock_autocast_linear() -> None:
    lin = accelerate(torch.nn.Sequential(torch.nn.Linear(96, 40)))[0]
    x = torch.randn(3, 50, 96)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        with plain_products():
            ref = lin(x)
        out = lin(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref)  # the same casts, made once
    with torch.inference_mode():  # float32: the stock route
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))


@pytest.mark.parametrize("batch", [1, 3])
def test_channel_norm_matches_float64_group_norm(batch: int) -> None:
    norm = torch.nn.GroupNorm(32, 32)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = (torch.randn(batch, 900, 32) * 3 + 1).transpose(1, 2)  # channels last, as a conv leaves it
    ref = F.group_norm(x.double(), 32, norm.weight.double(), norm.bias.double(), norm.eps)
    with torch.inference_mode():
        out = accelerate(torch.nn.Sequential(norm))(x)
    assert out.shape == x.shape and out.stride(1) == 1  # the layout kept
    assert _relative(out, ref) < FP32_TOL


@pytest.mark.parametrize("batch", [1, 2])
def test_waveform_layer_with_its_norm_in_one_product_matches_float64(batch: int) -> None:
    from transformers import HubertConfig
    from transformers.models.hubert.modeling_hubert import HubertGroupNormConvLayer

    torch.manual_seed(2)
    config = HubertConfig(conv_dim=[32], conv_kernel=[10], conv_stride=[5], conv_bias=True)
    layer = HubertGroupNormConvLayer(config).eval()
    torch.nn.init.normal_(layer.layer_norm.weight)
    torch.nn.init.normal_(layer.layer_norm.bias)
    x = torch.randn(batch, 1, 4000) * 0.1 + 0.3  # a DC offset: the centring must hold
    ref = copy_double(layer)(x.double())
    norms = (F.group_norm, F.batch_norm)
    with torch.inference_mode():
        accelerate(layer)
        with Conv2dCalls(norms) as calls:
            out = layer(x)
    assert sum(calls.also.values()) == 0  # the norm folded into the product
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.stride(1) == 1
    assert _relative(out, ref) < FP32_TOL
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert _relative(layer(x), ref) < FP32_TOL  # float32 even under autocast, as the stock norm
    layer(x).square().mean().backward()  # gradients on: the unfolded layer, which carries them
    assert layer.conv.weight.grad is not None and bool(layer.conv.weight.grad.abs().sum() > 0)


def copy_double(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).double()

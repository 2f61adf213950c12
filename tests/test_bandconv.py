"""BandPeaks (a DFT along frequency) against the direct convolution in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mirprobe.models.bandconv import BandPeaks


def _direct(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``max over f of conv2d``, in float64: ``[B, n, T]``."""
    return F.conv2d(x.double()[:, None], kernel.double()[:, None]).amax(dim=3)


def _relative(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize(("bands", "widths", "taps", "frames"), [
    (96, (38, 67), 7, 40),  # MusiCNN's timbral filters
    (33, (5, 33), 3, 17),  # odd bands (no Nyquist bin), a filter as wide as the input
    (20, (1,), 1, 50),  # one tap in time, one band wide: an elementwise product
])
def test_peaks_match_the_float64_convolution(bands: int, widths: tuple[int, ...], taps: int,
                                             frames: int) -> None:
    g = torch.Generator().manual_seed(bands)
    x = torch.randn(3, frames + taps - 1, bands, generator=g) * 2 + 1  # frames: not a CHUNK multiple
    kernels = [torch.randn(5 + i, taps, w, generator=g) / w for i, w in enumerate(widths)]
    peaks = BandPeaks(kernels, bands)(x)
    for kernel, out in zip(kernels, peaks, strict=True):
        ref = _direct(x, kernel)
        assert out.dtype == torch.float32 and out.shape == ref.shape
        stock = _relative(_direct(x.float(), kernel.float()).float(), ref)  # (float32 convolution)
        assert _relative(out, ref) < max(1e-6, 2 * stock)


def test_dead_filters_give_their_tiny_outputs_and_no_subnormals() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 22, 96, generator=g)
    live = torch.randn(4, 7, 38, generator=g) * 0.05
    dead = torch.randn(4, 7, 38, generator=g) * 1e-30  # as MTT's dead filters
    band = BandPeaks([torch.cat([live, dead])], 96)
    tiny = torch.finfo(torch.float32).tiny
    for weights in (band.spectra, band.dft, *band.inverse):
        assert not ((weights != 0) & (weights.abs() < tiny)).any()
    out = band(x)[0]
    ref = _direct(x, torch.cat([live, dead]))
    assert _relative(out, ref) < 1e-6
    assert out[:, 4:].abs().max() < 1e-20  # what the dead filters give stays below any live output


def test_kernels_must_share_their_taps_and_fit_the_bands() -> None:
    with pytest.raises(ValueError, match="one number of taps"):
        BandPeaks([torch.ones(2, 7, 3), torch.ones(2, 5, 3)], 16)
    with pytest.raises(ValueError, match="width <= bands"):
        BandPeaks([torch.ones(2, 7, 17)], 16)

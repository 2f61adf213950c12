"""One-channel 2-D correlations over a spectrogram, each output's max over frequency, by a DFT along frequency.

MusiCNN's timbral filters (7 frames × 38 and × 67 of the 96 mel bands, 204 each, over the one-channel
log-mel) are three quarters of its forward pass, and the direct convolution already runs at the
core's float32 product rate (``perf/README.md``). Along frequency, a 'valid' correlation of the
``bands`` rows is the circular one of length ``bands`` at the positions where no filter wraps around,
and the DFT turns a circular correlation into a product per frequency bin: per bin, each output
frame is the frame's 7 time taps (real and imaginary parts: 14 numbers) times the filters' spectra,
and one product per filter bank (the inverse DFT, at the valid positions only) brings the outputs
back as rows of frequency positions, whose max is taken on rows still in cache. For MusiCNN's two
banks that is 2.6× fewer operations than the direct convolution (1.75 against 4.54 GFLOP for two
3 s windows) and 2.5× less time at one thread; the DFTs are exact matrices built in float64, the
products run in float32, and the outputs are nearer float64 than the direct float32 convolution's
(``tests/test_bandconv.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

CHUNK = 16  # output frames per pass and thread: the per-bin products (2 × bins × filters × 16 floats) stay in L2
TINY = 2.0 ** -80  # spectra below it are zeroed: see BandPeaks


class BandPeaks:
    """``max over f of conv2d(x, kernel)`` for banks of one-channel kernels ``[n, taps, width]`` that
    share their number of time taps, over inputs ``[B, T + taps - 1, bands]`` (already padded in
    time); float32 on the CPU. The filters' spectra and the inverse DFTs are computed once here."""

    def __init__(self, kernels: Sequence[torch.Tensor], bands: int) -> None:
        taps = {int(k.shape[1]) for k in kernels}
        if len(taps) != 1 or any(k.dim() != 3 or k.shape[2] > bands for k in kernels):
            raise ValueError("BandPeaks: kernels [n, taps, width <= bands] with one number of taps")
        self.taps, self.bands, self.bins = taps.pop(), bands, bands // 2 + 1
        self.sizes = [int(k.shape[0]) for k in kernels]
        device = kernels[0].device
        theta = 2 * math.pi / bands * torch.arange(self.bins, dtype=torch.float64, device=device)
        # X[w] = sum_f x[f] e^{-i theta_w f}: [bands, 2 * bins], real parts then imaginary parts
        angle = torch.outer(torch.arange(bands, dtype=torch.float64, device=device), theta)
        self.dft = _exact_zeros(torch.cat([angle.cos(), -angle.sin()], dim=1))
        # a correlation is X * conj(K): Re = a c + b d, Im = b c - a d for X = a + ib, K = c + id;
        # per bin, rows (real outputs, imaginary outputs) × filters, columns (real taps, imaginary taps)
        spectra = [self._spectrum(k.double(), theta) for k in kernels]
        c = torch.cat([s[0] for s in spectra])  # [filters, taps, bins]
        d = torch.cat([s[1] for s in spectra])
        rows = torch.cat([torch.cat([c, d], dim=2), torch.cat([-d, c], dim=2)])  # [2 × filters, taps, 2 × bins]
        self.spectra = _flush(rows.view(2 * len(c), self.taps, 2, self.bins).permute(3, 0, 2, 1)
                              .reshape(self.bins, 2 * len(c), 2 * self.taps)).contiguous()
        # inverse DFTs over (bin, real/imaginary) columns, as the products' rows come out
        self.inverse = [_exact_zeros(self._inverse(bands - int(k.shape[2]) + 1, theta)).float()
                        for k in kernels]

    def _spectrum(self, kernel: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``K = c + i d`` of each filter's time taps: ``[n, taps, bins]`` twice."""
        angle = torch.outer(torch.arange(kernel.shape[2], dtype=torch.float64, device=kernel.device), theta)
        return kernel @ angle.cos(), -(kernel @ angle.sin())

    def _inverse(self, valid: int, theta: torch.Tensor) -> torch.Tensor:
        """The inverse real DFT at positions ``0..valid-1``: ``[valid, 2 × bins]`` (Hermitian
        symmetry: bins other than 0 and ``bands / 2`` count twice)."""
        weight = torch.full_like(theta, 2.0)
        weight[0] = 1.0
        if self.bands % 2 == 0:
            weight[-1] = 1.0
        angle = torch.outer(theta, torch.arange(valid, dtype=torch.float64, device=theta.device))
        rows = torch.stack([weight[:, None] * angle.cos(), -weight[:, None] * angle.sin()], dim=1)
        return (rows.flatten(0, 1) / self.bands).T.contiguous()  # [valid, (bin, real/imaginary)]

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` ``[B, T + taps - 1, bands]`` → per bank ``[B, n, T]``."""
        batch, frames = x.shape[0], x.shape[1] - self.taps + 1
        spectrum = (x.double() @ self.dft).float().view(batch, -1, 2, self.bins)
        # [bins, (real, imag) × taps, B × T]: each output frame's taps, per bin
        taps = spectrum.unfold(1, self.taps, 1).permute(3, 2, 4, 0, 1).reshape(self.bins, -1, batch * frames)
        width, total = batch * frames, sum(self.sizes)
        chunk = CHUNK * torch.get_num_threads()  # each core's L2 holds its share
        out = [x.new_empty(n, width) for n in self.sizes]
        for start in range(0, width, chunk):
            part = taps[:, :, start:start + chunk]
            cols = part.shape[2]
            rows = torch.bmm(self.spectra, part).view(2 * self.bins, total * cols)  # [(bin, re/im), filters × cols]
            first = 0
            for inverse, n, y in zip(self.inverse, self.sizes, out, strict=True):
                bank = rows[:, first * cols:(first + n) * cols]
                y[:, start:start + cols] = (inverse @ bank).amax(dim=0).view(n, cols)
                first += n
        return [y.view(-1, batch, frames).transpose(0, 1) for y in out]


def _exact_zeros(dft: torch.Tensor) -> torch.Tensor:
    """A float64 DFT matrix with its rounding noise (``cos(pi/2)`` = 6e-17) set to the exact zeros it
    stands for: float32 products of it with a dead filter's tiny outputs would be subnormal."""
    return torch.where(dft.abs() < 1e-12, 0.0, dft)


def _flush(spectra: torch.Tensor) -> torch.Tensor:
    """Float32 ``spectra`` with magnitudes below :data:`TINY` zeroed. MTT's checkpoint has dead
    filters (all weights 1e-20 and below: 45 and 107 of the two banks' 204), whose products with
    the input's spectrum are subnormal floats, each a slow path for the CPU (the whole route took
    1.5× longer). What is zeroed moves an output by under 1e-20 of the input's largest magnitude."""
    spectra = spectra.float()
    return torch.where(spectra.abs() < TINY, 0.0, spectra)

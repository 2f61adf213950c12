"""A validator in the spirit of HEAR's: feed awkward inputs, check what comes back.

For clips of 0.3 s, 1.07 s, 4.99 s, 5.01 s and 61 s (odd lengths, shorter and just longer than a
window, many windows) the extractor runs the way extraction runs it — windows of its context,
the tail its own shorter window (dropped when too short for a frame), per-window normalisation —
and each result must have the declared layers and width, be float32 and finite, hold exactly the
frames ``num_frames`` promises for its windows, and cover the clip's duration (within a frame per
window). Then: a window gives the same features alone and in a batch, and the clip view has the
declared layers and width, with zeros past each layer's true width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mirprobe.extraction import min_window_samples
from mirprobe.models.base import Extractor

DEFAULT_LENGTHS = (0.3, 1.07, 4.99, 5.01, 61.0)


@dataclass
class Check:
    """One validator check: what was tested, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str


def describe(extractor: Extractor) -> dict[str, Any]:
    """What ``models verify`` prints about a model before checking it."""
    params = getattr(extractor, "num_parameters", None)
    return {
        "name": extractor.name, "kind": extractor.kind,
        "architecture": getattr(extractor, "architecture", type(extractor).__name__),
        "source": str(getattr(extractor, "source", None) or "-"),
        "sample_rate": extractor.sample_rate, "frame_rate": extractor.frame_rate,
        "layers": extractor.num_layers, "dim": extractor.dim, "context_s": extractor.context_s,
        "clip layers": ", ".join(f"{n} ({d})" for n, d in zip(
            extractor.view_layers("clip"), extractor.layer_dims("clip"), strict=True)),
        "normalize": extractor.normalize,
        "parameters": f"{params:,}" if params is not None else "-",
        "fingerprint": extractor.fingerprint(),
    }


def probe_signal(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A deterministic music-like clip: a few partials, an amplitude envelope, a little noise."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(seed)
    tone = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((220.0, 330.0, 440.0, 659.3)))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.0 * t))
    return (0.2 * tone * envelope + 0.01 * rng.standard_normal(n)).astype(np.float32)


@torch.inference_mode()
def embed_windows(extractor: Extractor, wave: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``[layers, frames, dim]`` of a clip at the extractor's rate, window by window."""
    from mirprobe.audio import window_bounds

    window = int(round(extractor.context_s * extractor.sample_rate))
    bounds = window_bounds(len(wave), window, min_window_samples(extractor))
    parts = []
    for a, b in bounds:
        chunk = torch.from_numpy(np.ascontiguousarray(extractor.prepare(wave[a:b]), dtype=np.float32))
        parts.append(extractor.forward(chunk[None].to(extractor.device))[:, 0].cpu().numpy())
    if not parts:
        return np.zeros((extractor.num_layers, 0, extractor.dim), dtype=np.float32), bounds
    return np.concatenate(parts, axis=1), bounds


def check_length(extractor: Extractor, seconds: float) -> list[Check]:
    """Shape, dtype, finiteness and frame timing of one clip of ``seconds``."""
    label = f"{seconds:g} s"
    wave = probe_signal(seconds, extractor.sample_rate)
    try:
        out, bounds = embed_windows(extractor, wave)
    except Exception as e:  # the validator reports, it does not crash
        return [Check(f"{label}: runs", False, f"{type(e).__name__}: {str(e).splitlines()[0]}")]
    want_frames = sum(extractor.num_frames(b - a) for a, b in bounds)
    want = (extractor.num_layers, want_frames, extractor.dim)
    nominal = len(wave) / extractor.sample_rate * extractor.frame_rate
    slack = len(bounds) + 1  # the conv front end loses up to a frame per window
    return [
        Check(f"{label}: shape", tuple(out.shape) == want,
              f"{tuple(out.shape)} (want {want}, {len(bounds)} window(s))"),
        Check(f"{label}: dtype", out.dtype == np.float32, str(out.dtype)),
        Check(f"{label}: finite", bool(np.isfinite(out).all()),
              f"{int((~np.isfinite(out)).sum())} non-finite value(s)"),
        Check(f"{label}: frames vs duration", abs(out.shape[1] - nominal) <= slack,
              f"{out.shape[1]} frames for {nominal:.1f} expected at {extractor.frame_rate:g} Hz "
              f"(tolerance {slack})"),
    ]


@torch.inference_mode()
def check_batching(extractor: Extractor) -> Check:
    """A window alone and the same window second in a batch give the same features."""
    n = int(round(min(extractor.context_s, 5.0) * extractor.sample_rate))
    a = extractor.prepare(probe_signal(n / extractor.sample_rate, extractor.sample_rate, seed=1))
    b = extractor.prepare(probe_signal(n / extractor.sample_rate, extractor.sample_rate, seed=2)[::-1].copy())
    try:
        batch = torch.from_numpy(np.stack([b, a]).astype(np.float32)).to(extractor.device)
        together = extractor.forward(batch)[:, 1].float().cpu()
        alone = extractor.forward(batch[1:]).float()[:, 0].cpu()
    except Exception as e:
        return Check("batched = alone", False, f"{type(e).__name__}: {str(e).splitlines()[0]}")
    diff = float((together - alone).abs().max()) if together.numel() else 0.0
    scale = float(alone.abs().max()) if alone.numel() else 1.0
    return Check("batched = alone", diff <= 1e-4 * max(scale, 1.0),
                 f"max difference {diff:.2e} (values up to {scale:.2e})")


@torch.inference_mode()
def check_clip_view(extractor: Extractor) -> Check:
    """The clip view (``pool``) of a two-window batch: the declared layers and width, finite, and
    zeros past each layer's declared true width."""
    n = int(round(min(extractor.context_s, 5.0) * extractor.sample_rate))
    waves = np.stack([extractor.prepare(probe_signal(n / extractor.sample_rate, extractor.sample_rate, seed=s))
                      for s in (3, 4)])
    try:
        out = extractor.pool(extractor.forward(torch.from_numpy(waves).to(extractor.device))).float().cpu()
    except Exception as e:
        return Check("clip view", False, f"{type(e).__name__}: {str(e).splitlines()[0]}")
    dims = extractor.layer_dims("clip")
    want = (len(extractor.view_layers("clip")), 2, extractor.clip_dim)
    padding = max((float(out[i, :, d:].abs().max()) for i, d in enumerate(dims) if d < want[2]),
                  default=0.0) if tuple(out.shape) == want else float("nan")
    ok = tuple(out.shape) == want and bool(torch.isfinite(out).all()) and padding == 0.0
    return Check("clip view", ok, f"{tuple(out.shape)} (want {want}), largest padding value {padding:g}")


def verify(extractor: Extractor, lengths: tuple[float, ...] = DEFAULT_LENGTHS) -> list[Check]:
    """Every check, in order; the model passes when all are ``ok``."""
    checks: list[Check] = []
    for seconds in lengths:
        checks += check_length(extractor, seconds)
    checks.append(check_batching(extractor))
    checks.append(check_clip_view(extractor))
    return checks

"""Closed-form ridge probes: the whole L2 path of every layer from one eigendecomposition.

For the standardised features ``X`` of a layer (train rows) and targets ``Y`` — one-hot
(multiclass), multi-hot (multilabel), standardised values (regression) or frame targets
(beat) — the ridge weights for a penalty ``a`` are ``W(a) = (Xcᵀ Xc + a·n I)⁻¹ Xcᵀ Yc`` with
centred ``Xc, Yc`` and the intercept ``ȳ − x̄ᵀ W``, i.e. scikit-learn's ``Ridge(alpha=a·n)``.
One pass over the train rows accumulates ``XᵀX`` and ``XᵀY`` for every layer at once (so
features streamed from disk are read once); ``XᵀX = V diag(λ) Vᵀ`` then gives every penalty of
the path as ``W(a) = V diag(1 / (λ + a·n)) Vᵀ XᵀY``.

The learned weighted sum of layers has no closed form; its stand-in here is the fixed mean of
the standardised layers (itself re-standardised), recorded as layer ``weighted`` with head
``ridge``.

Outputs are used as logits: as they are for multiclass and regression, and as the log-odds of
the (clipped) ridge estimate of the probability for the binary targets of multilabel and beat
tasks, whose predictions go through a sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mirprobe.probes.data import FeatureSource, SplitRows
from mirprobe.probes.heads import WEIGHTED

DEFAULT_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4)  # penalty per training row
CLIP = 1e-3  # probability clip before log-odds


@dataclass(frozen=True)
class RidgeSpec:
    """One ridge probe of the path: a layer (or the mean of layers) and a penalty."""

    layer: int
    alpha: float
    seed: int = 0

    def config(self) -> dict:
        return {"head": "ridge", "alpha": self.alpha}


def ridge_grid(cfg, num_layers: int) -> list[RidgeSpec]:  # noqa: ANN001 (ProbeConfig)
    """Layers (+ the mean of layers) × penalties, layer-major."""
    layers = list(range(num_layers)) if cfg.layers is None else [int(k) for k in cfg.layers]
    if cfg.weighted_sum:
        layers.append(WEIGHTED)
    alphas = DEFAULT_ALPHAS if cfg.alpha is None else cfg.alpha
    return [RidgeSpec(layer, float(a)) for layer in layers for a in alphas]


def row_targets(task, split: SplitRows, pos: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """Float targets ``[n, out]`` of the rows at ``pos`` (one-hot for multiclass)."""
    if split.row_targets is not None:
        return split.row_targets[pos].double()
    t = split.track_targets[split.row_track[pos]]
    if task.kind == "multiclass":
        return F.one_hot(t.long(), task.output_dim).double()
    return t.double().reshape(len(pos), -1)


class RidgePath:
    """Sufficient statistics of every probed layer, then the path's weights."""

    def __init__(self, layers: list[int], dim: int, out: int, device: torch.device) -> None:
        self.layers = layers
        k = len(layers)
        f64 = dict(dtype=torch.float64, device=device)
        self.gram = torch.zeros(k, dim, dim, **f64)
        self.cross = torch.zeros(k, dim, out, **f64)
        self.xsum = torch.zeros(k, dim, **f64)
        self.ysum = torch.zeros(out, **f64)
        self.n = 0
        self.scale = torch.ones(k, dim, **f64)  # the mean of layers is re-standardised

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` standardised rows → ``[k, B, D]`` each probed input."""
        singles = [layer for layer in self.layers if layer != WEIGHTED]
        parts = [x[:, singles].transpose(0, 1)] if singles else []
        if WEIGHTED in self.layers:
            parts.append(x.mean(1, keepdim=True).transpose(0, 1))
        xs = torch.cat(parts) if len(parts) > 1 else parts[0]
        return xs * self.scale[:, None].to(xs.dtype)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        xs = self.inputs(x)
        # float32 products per chunk, float64 sums across chunks
        self.gram += torch.bmm(xs.transpose(1, 2), xs).double()
        self.cross += torch.einsum("kbd,bo->kdo", xs.double(), y)
        self.xsum += xs.double().sum(1)
        self.ysum += y.sum(0)
        self.n += y.shape[0]

    def restandardise_mean(self) -> None:
        """Scale the mean-of-layers input to unit variance (its mean is already ~0)."""
        if WEIGHTED not in self.layers:
            return
        k = self.layers.index(WEIGHTED)
        mu = self.xsum[k] / self.n
        var = (self.gram[k].diagonal() / self.n - mu * mu).clamp_min(0)
        s = 1.0 / var.sqrt().clamp_min(1e-6)
        self.scale[k] = s
        self.gram[k] *= s[:, None] * s[None, :]
        self.cross[k] *= s[:, None]
        self.xsum[k] *= s

    def solve(self, alphas: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights ``[k, D, A·out]`` and intercepts ``[k, A·out]`` (float32) of every penalty."""
        n = self.n
        mu, ybar = self.xsum / n, self.ysum / n
        gram = self.gram - n * mu[:, :, None] * mu[:, None, :]
        cross = self.cross - n * mu[:, :, None] * ybar[None, None, :]
        lam, vec = torch.linalg.eigh(gram)  # one decomposition per layer
        q = vec.transpose(1, 2) @ cross  # [k, D, out]
        a = torch.tensor(alphas, dtype=torch.float64, device=gram.device) * n
        inv = 1.0 / (lam.clamp_min(0)[:, :, None] + a[None, None, :])  # [k, D, A]
        w = vec @ (q[:, :, None, :] * inv[..., None]).flatten(2)  # [k, D, A·out]
        k, d, _ = w.shape
        b = ybar.repeat(len(alphas))[None] - torch.einsum("kd,kdo->ko", mu, w)
        self.scale = self.scale.float()
        return w.float(), b.float()


def fit_path(task, source: FeatureSource, train: SplitRows, specs: list[RidgeSpec],  # noqa: ANN001
             out: int) -> tuple[RidgePath, torch.Tensor, torch.Tensor]:
    """One pass over the train rows, then the weights of every spec's layer and penalty."""
    layers = list(dict.fromkeys(s.layer for s in specs))
    alphas = list(dict.fromkeys(s.alpha for s in specs))
    if len(specs) != len(layers) * len(alphas):
        raise ValueError("ridge specs must be layers × penalties")
    path = RidgePath(layers, source.dim, out, source.device)
    for pos, x in source.ordered(train.rows):
        path.add(x, row_targets(task, train, pos))
    path.restandardise_mean()
    w, b = path.solve(alphas)
    return path, w, b


def predict_rows(task, path: RidgePath, w: torch.Tensor, b: torch.Tensor,  # noqa: ANN001
                 source: FeatureSource, split: SplitRows, out: int) -> torch.Tensor:
    """Outputs ``[k·A, R, out]`` of every (layer, penalty) for the rows of ``split``, in
    ``ridge_grid`` order, as logits."""
    k = w.shape[0]
    a = w.shape[2] // out
    result = None
    for pos, x in source.ordered(split.rows):
        y = torch.baddbmm(b[:, None], path.inputs(x), w)  # [k, n, A·out]
        y = y.view(k, -1, a, out).permute(0, 2, 1, 3).reshape(k * a, -1, out)
        if result is None:
            result = y.new_empty(k * a, len(split.rows), out)
        result[:, pos] = y
    if task.kind in ("multilabel", "beat"):
        result = torch.logit(result.clamp(CLIP, 1 - CLIP))
    return result

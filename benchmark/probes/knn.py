"""k-nearest-neighbour probes: a parameter-free protocol (X-ARES's k-NN track) on cached features.

Nothing is trained. Each window row of the validation and test splits takes the ``k`` nearest
training window rows of the same layer, in the engine's standardised units (train z-scores;
the learned weighted sum's stand-in is the mean of the standardised layers, standardised again,
as for ridge heads), by Euclidean or cosine distance. A row's output is the neighbours' mean
target — class votes for multiclass (``k`` × scikit-learn's ``KNeighborsClassifier.predict_proba``:
whole numbers, so that a track's mean over windows keeps tied classes exactly tied and the
first class wins as in scikit-learn), tag shares for multilabel (as log-odds, clipped like ridge
outputs), mean values for regression (``KNeighborsRegressor.predict``) — and the engine averages
a track's windows as for any head.

``k`` and the distance are hyper-parameters chosen on validation per layer; one pass over the
query rows serves every ``k`` (the neighbours of the largest ``k`` are found once). Frame tasks
are refused: a single frame's neighbours carry no context, and the train frames of a suite are
too many to search exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mirprobe.errors import UserError
from mirprobe.probes.data import FeatureSource, SplitRows
from mirprobe.probes.heads import WEIGHTED
from mirprobe.probes.ridge import CLIP, row_targets
from mirprobe.probes.spec import KNN_METRICS

DEFAULT_K = (1, 3, 5, 10, 20, 50)
QUERY_BYTES = 64 << 20  # float64 bytes of one block of query-to-train distances


@dataclass(frozen=True)
class KnnSpec:
    """One k-NN probe: a layer (or the mean of layers), a distance and a neighbour count."""

    layer: int
    metric: str
    k: int
    seed: int = 0

    def config(self) -> dict:
        return {"head": "knn", "metric": self.metric, "k": self.k}


def check_task(task) -> None:  # noqa: ANN001
    if task.view != "clip" or task.kind not in ("multiclass", "multilabel", "regression"):
        raise UserError(f"probe.heads=[knn] needs a clip task (multiclass, multilabel or "
                        f"regression); task {task.name!r} is {task.kind} ({task.view} view): its "
                        "single frames have no context for neighbours to share; use ridge or "
                        "linear heads")


def knn_grid(cfg, num_layers: int, train_rows: int) -> list[KnnSpec]:  # noqa: ANN001 (ProbeConfig)
    """Layers (+ the mean of layers) × distances × k, layer-major. The default k grid keeps the
    counts up to the number of training rows; a given ``probe.k`` must fit them all."""
    if cfg.k is None:
        ks = [k for k in DEFAULT_K if k <= train_rows] or [train_rows]
    else:
        ks = [int(k) for k in cfg.k]
        if max(ks) > train_rows:
            raise UserError(f"config key 'probe.k': {max(ks)} neighbours but the train split "
                            f"has {train_rows} rows; give k <= {train_rows}")
    metrics = list(KNN_METRICS) if cfg.metric is None else list(cfg.metric)
    layers = list(range(num_layers)) if cfg.layers is None else [int(k) for k in cfg.layers]
    if cfg.weighted_sum:
        layers.append(WEIGHTED)
    return [KnnSpec(layer, m, k) for layer in layers for m in metrics for k in ks]


def _inputs(x: torch.Tensor, layers: list[int]) -> torch.Tensor:
    """``[B, L, D]`` standardised rows → ``[k, B, D]`` float64 inputs of the probed layers."""
    parts = [x[:, [la for la in layers if la != WEIGHTED]].transpose(0, 1)]
    if WEIGHTED in layers:
        parts.append(x.mean(1)[None])
    return torch.cat(parts).double()


class Neighbours:
    """The training rows of every probed layer, their targets, and the search."""

    def __init__(self, task, source: FeatureSource, train: SplitRows, specs: list[KnnSpec],  # noqa: ANN001
                 out: int) -> None:
        self.task, self.source, self.specs = task, source, specs
        self.layers = list(dict.fromkeys(s.layer for s in specs))
        self.kmax = max(s.k for s in specs)
        self.count = task.kind == "multiclass"  # integer votes: window means keep exact ties
        n = len(train.rows)
        self.x = torch.empty(len(self.layers), n, source.dim, dtype=torch.float64,
                             device=source.device)
        self.y = torch.empty(n, out, dtype=torch.float64, device=source.device)
        for pos, x in source.ordered(train.rows):
            self.x[:, pos] = _inputs(x, self.layers)
            self.y[pos] = row_targets(task, train, pos)
        self.shift = torch.zeros(len(self.layers), 1, source.dim, dtype=torch.float64,
                                 device=source.device)
        self.scale = torch.ones_like(self.shift)
        if WEIGHTED in self.layers:  # the mean of layers, standardised again on train
            w = self.layers.index(WEIGHTED)
            mu, sd = self.x[w].mean(0), self.x[w].std(0, unbiased=False)
            self.shift[w, 0], self.scale[w, 0] = mu, torch.where(sd > 1e-6, 1 / sd, 0.0)
            self.x[w] = (self.x[w] - mu) * self.scale[w, 0]
        self.unit = {m: self._prepare(self.x, m) for m in {s.metric for s in specs}}
        self.norm2 = (self.x * self.x).sum(-1)  # [k, N] for Euclidean distances

    @staticmethod
    def _prepare(x: torch.Tensor, metric: str) -> torch.Tensor:
        if metric == "euclidean":
            return x
        norm = x.norm(dim=-1, keepdim=True)
        return x / torch.where(norm > 0, norm, 1.0)  # a zero row stays zero: distance 1

    def _nearest(self, q: torch.Tensor, metric: str) -> torch.Tensor:
        """Indices ``[k, B, kmax]`` of each query row's nearest training rows, nearest first."""
        ref = self.unit[metric]
        sim = torch.bmm(self._prepare(q, metric), ref.transpose(1, 2))  # [k, B, N]
        if metric == "euclidean":  # −‖q − x‖² up to a per-query constant
            sim = 2 * sim - self.norm2[:, None, :]
        return sim.topk(self.kmax, dim=-1, sorted=True).indices

    def rows(self, split: SplitRows, pick: list[int] | None = None) -> torch.Tensor:
        """Outputs ``[specs, R, out]`` in ``specs`` order for the rows of ``split`` (only the
        specs at positions ``pick``, e.g. the test split's chosen heads)."""
        specs = self.specs if pick is None else [self.specs[i] for i in pick]
        metrics = [m for m in self.unit if any(s.metric == m for s in specs)]
        out = None
        at = {la: i for i, la in enumerate(self.layers)}
        step = max(1, QUERY_BYTES // (8 * len(self.layers) * max(1, self.x.shape[1])))
        for pos, x in self.source.ordered(split.rows, max_rows=step):
            q = (_inputs(x, self.layers) - self.shift) * self.scale
            found = {m: self._nearest(q, m) for m in metrics}
            if out is None:
                out = torch.empty(len(specs), len(split.rows), self.y.shape[1],
                                  device=self.source.device)
            for h, s in enumerate(specs):
                idx = found[s.metric][at[s.layer], :, : s.k]  # [B, k]
                votes = self.y[idx].sum(1)
                out[h, pos] = (votes if self.count else votes / s.k).float()
        assert out is not None
        if self.task.kind == "multilabel":
            out = torch.logit(out.clamp(CLIP, 1 - CLIP))
        return out

"""Nearest-centroid probes: MARBLE v2's few-shot protocol (``BaseFewShotTask``) on cached features.

MARBLE v2's few-shot GTZAN embeds every training track (a layer's frames averaged over the
track), takes one centroid per class (the mean of its tracks' embeddings), and labels each test
track with the class of the nearest centroid (Euclidean distance); nothing is trained. Here the
same runs on every layer at once, from one pass over the training rows:

- a track's embedding is the mean of its window rows (one row per window in the clip view;
  for equal windows, the mean of its frames), a class centroid the mean of its tracks';
- distances are Euclidean in the features' own units (the engine's z-scores are undone by
  weighting each dimension with its training variance; dimensions constant on train count 0);
- a head outputs ``−distance²`` per class for each window; the engine's mean over a track's
  windows is ``−‖track mean − centroid‖²`` minus a constant shared by every class, so its argmax
  is the nearest centroid of the track's embedding, as in MARBLE.

There is nothing to tune: each layer has one head (``{"head": "centroid"}``), and the layer is
chosen on validation like any other hyper-parameter. The learned weighted sum of layers has no
counterpart and is left out.

Few-shot (``probe.shots=[n]``, ``mirprobe.probes.fewshot``): each layer has ``probe.draws``
heads, one per random draw of ``n`` training tracks per class (``{"head": "centroid",
"shots": n}``, the draw's number as its seed), all from the same track embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mirprobe.errors import UserError
from mirprobe.probes.data import FeatureSource, SplitRows
from mirprobe.probes.fewshot import draw_tracks, single


@dataclass(frozen=True)
class CentroidSpec:
    """The nearest-centroid probe of one layer."""

    layer: int
    seed: int = 0  # the draw, with shots
    shots: int | None = None  # None: every training track

    def config(self) -> dict:
        return {"head": "centroid"} if self.shots is None else {"head": "centroid",
                                                                 "shots": self.shots}


def centroid_grid(cfg, num_layers: int) -> list[CentroidSpec]:  # noqa: ANN001 (ProbeConfig)
    """One probe per probed layer, or one per layer and draw (layer-major) with shots."""
    layers = list(range(num_layers)) if cfg.layers is None else [int(k) for k in cfg.layers]
    shots = single(cfg, "shots")
    if shots is None:
        return [CentroidSpec(layer) for layer in layers]
    return [CentroidSpec(layer, d, int(shots)) for layer in layers for d in range(cfg.draws)]


def check_task(task) -> None:  # noqa: ANN001
    if task.kind != "multiclass" or task.view != "clip":
        raise UserError(f"probe.heads=[centroid] needs a multiclass clip task; task "
                        f"{task.name!r} is {task.kind} ({task.view} view)")


def fit_centroids(source: FeatureSource, train: SplitRows, specs: list[CentroidSpec],
                  classes: int, seed: int = 0, names: list[str] | None = None) -> torch.Tensor:
    """Class centroids ``[S, C, D]`` of every spec in standardised units (a class without a
    training track gets NaN); ``names``: the class names for errors."""
    layers = list(dict.fromkeys(s.layer for s in specs))
    tracks = torch.zeros(len(layers), train.num_tracks, source.dim, dtype=torch.float64,
                         device=source.device)
    for pos, x in source.ordered(train.rows):
        rows = x[:, layers].transpose(0, 1).double()  # [k, B, D]
        tracks.index_add_(1, train.row_track[pos], rows)
    lengths = torch.tensor(train.track_lengths, dtype=torch.float64, device=source.device)
    tracks /= lengths[None, :, None]
    onehot = torch.nn.functional.one_hot(train.track_targets.long(), classes).double()  # [T, C]
    shots = specs[0].shots
    if shots is None:
        weights = onehot[None]  # [1, T, C]
    else:
        draws = max(s.seed for s in specs) + 1
        masks = draw_tracks(train.track_targets.cpu().numpy(), names or
                            [str(c) for c in range(classes)], shots, draws, seed)
        weights = torch.from_numpy(masks).to(onehot)[:, :, None] * onehot[None]  # [n, T, C]
    counts = weights.sum(1)  # [n, C]
    out = []
    for s in specs:
        w = weights[0 if shots is None else s.seed]
        sums = w.T @ tracks[layers.index(s.layer)]  # [C, D]
        out.append(sums / torch.where(counts[0 if shots is None else s.seed] > 0,
                                      counts[0 if shots is None else s.seed], torch.nan)[:, None])
    return torch.stack(out)


def centroid_rows(centroids: torch.Tensor, source: FeatureSource, split: SplitRows,
                  specs: list[CentroidSpec]) -> torch.Tensor:
    """Outputs ``[S, R, C]``: ``−distance²`` of each row to each centroid in feature units
    (the most negative float for a class without centroid); one product per layer."""
    by_layer: dict[int, list[int]] = {}
    for i, s in enumerate(specs):
        by_layer.setdefault(s.layer, []).append(i)
    inv = source.inv_std
    floor = torch.finfo(torch.float32).min
    out = torch.empty(len(specs), len(split.rows), centroids.shape[1], device=source.device)
    for pos, x in source.ordered(split.rows):
        for layer, members in by_layer.items():
            # variance of each dimension (0 where constant): distances in the features' units
            weight = (1.0 / inv[layer].double().clamp_min(1e-30) ** 2) * (inv[layer] > 0)
            rows = x[:, layer].double()  # [B, D]
            c = centroids[members]  # [n, C, D]
            # ‖x − c‖²_w = Σ w x² − 2 Σ w x c + Σ w c², without a [n, B, C, D] difference
            dist = ((rows * rows * weight).sum(-1)[None, :, None]
                    - 2 * torch.einsum("bd,ncd->nbc", rows * weight, c)
                    + (c * c * weight).sum(-1)[:, None, :])
            # a layer's specs are consecutive (the grid is layer-major)
            out[members[0]: members[-1] + 1, pos] = torch.nan_to_num(-dist, nan=floor).float()
    return out

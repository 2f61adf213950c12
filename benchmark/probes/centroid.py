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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mirprobe.errors import UserError
from mirprobe.probes.data import FeatureSource, SplitRows


@dataclass(frozen=True)
class CentroidSpec:
    """The nearest-centroid probe of one layer."""

    layer: int
    seed: int = 0

    def config(self) -> dict:
        return {"head": "centroid"}


def centroid_grid(cfg, num_layers: int) -> list[CentroidSpec]:  # noqa: ANN001 (ProbeConfig)
    """One probe per probed layer."""
    layers = list(range(num_layers)) if cfg.layers is None else [int(k) for k in cfg.layers]
    return [CentroidSpec(layer) for layer in layers]


def check_task(task) -> None:  # noqa: ANN001
    if task.kind != "multiclass" or task.view != "clip":
        raise UserError(f"probe.heads=[centroid] needs a multiclass clip task; task "
                        f"{task.name!r} is {task.kind} ({task.view} view)")


def fit_centroids(source: FeatureSource, train: SplitRows, specs: list[CentroidSpec],
                  classes: int) -> torch.Tensor:
    """Class centroids ``[k, C, D]`` in standardised units (a class without a training track
    gets NaN)."""
    layers = [s.layer for s in specs]
    tracks = torch.zeros(len(layers), train.num_tracks, source.dim, dtype=torch.float64,
                         device=source.device)
    for pos, x in source.ordered(train.rows):
        rows = x[:, layers].transpose(0, 1).double()  # [k, B, D]
        tracks.index_add_(1, train.row_track[pos], rows)
    lengths = torch.tensor(train.track_lengths, dtype=torch.float64, device=source.device)
    tracks /= lengths[None, :, None]
    onehot = torch.nn.functional.one_hot(train.track_targets.long(), classes).double()  # [T, C]
    counts = onehot.sum(0)
    sums = torch.einsum("ktd,tc->kcd", tracks, onehot)
    return sums / torch.where(counts > 0, counts, torch.nan)[None, :, None]


def centroid_rows(centroids: torch.Tensor, source: FeatureSource, split: SplitRows,
                 specs: list[CentroidSpec]) -> torch.Tensor:
    """Outputs ``[k, R, C]``: ``−distance²`` of each row to each centroid in feature units
    (the most negative float for a class without centroid)."""
    layers = [s.layer for s in specs]
    weight = (1.0 / source.inv_std[layers].double().clamp_min(1e-30) ** 2) * \
        (source.inv_std[layers] > 0)  # [k, D]: variance of each dimension, 0 where constant
    floor = torch.finfo(torch.float32).min
    out = torch.empty(len(layers), len(split.rows), centroids.shape[1], device=source.device)
    for pos, x in source.ordered(split.rows):
        rows = x[:, layers].transpose(0, 1).double()  # [k, B, D]
        # ‖x − c‖²_w = Σ w x² − 2 Σ w x c + Σ w c², without a [k, B, C, D] difference
        dist = ((rows * rows * weight[:, None]).sum(-1)[:, :, None]
                - 2 * torch.einsum("kbd,kcd->kbc", rows * weight[:, None], centroids)
                + (centroids * centroids * weight[:, None]).sum(-1)[:, None, :])
        out[:, pos] = torch.nan_to_num(-dist, nan=floor).float()
    return out

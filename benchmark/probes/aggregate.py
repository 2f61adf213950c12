"""From row outputs to scored units: windows → track (mean of logits) → song (ensemble).

Songs (clips sharing an ``ori_uid``) of multiclass tasks are merged by one of MARBLE's
song-level ensembles, chosen on validation: ``mean`` of clip logits, ``max`` of clip
probabilities, majority ``vote`` (ties broken by mean probability), ``geomean`` of clip
probabilities. Merged outputs are returned as log-scores, so argmax and softmax still apply.
"""

from __future__ import annotations

import torch

ENSEMBLES = ("mean", "max", "vote", "geomean")


def track_mean(row_out: torch.Tensor, row_track: torch.Tensor, num_tracks: int) -> torch.Tensor:
    """``[H, R, out]`` row outputs → ``[H, T, out]`` mean per track."""
    h, _, c = row_out.shape
    total = row_out.new_zeros(h, num_tracks, c).index_add_(1, row_track, row_out)
    count = torch.bincount(row_track, minlength=num_tracks).clamp_min(1).to(row_out.dtype)
    return total / count.view(1, -1, 1)


def ensembles(kind: str, group: bool) -> tuple[str, ...]:
    """The song-level merges to try: all for grouped multiclass tasks, else the mean."""
    return ENSEMBLES if group and kind == "multiclass" else ("mean",)


def merge_units(track_out: torch.Tensor, track_unit: torch.Tensor, num_units: int,
                how: str = "mean") -> torch.Tensor:
    """``[H, T, out]`` track outputs → ``[H, U, out]`` unit outputs merged by ``how``."""
    if num_units == track_out.shape[1] and bool(
            (track_unit == torch.arange(num_units, device=track_unit.device)).all()):
        return track_out
    if how == "mean":
        return track_mean(track_out, track_unit, num_units)
    prob = torch.softmax(track_out, dim=-1)
    if how == "geomean":
        return track_mean(torch.log_softmax(track_out, dim=-1), track_unit, num_units)
    if how == "max":
        h, _, c = prob.shape
        idx = track_unit.view(1, -1, 1).expand_as(prob)
        top = prob.new_zeros(h, num_units, c).scatter_reduce_(1, idx, prob, "amax",
                                                              include_self=False)
        return torch.log(top.clamp_min(1e-12))
    if how == "vote":
        votes = torch.nn.functional.one_hot(prob.argmax(-1), prob.shape[-1]).to(prob.dtype)
        share = track_mean(votes + 1e-3 * prob, track_unit, num_units)
        return torch.log(share.clamp_min(1e-12))
    raise ValueError(f"unknown song ensemble {how!r}; use one of {', '.join(ENSEMBLES)}")

"""Few-shot draws and data-efficiency subsets of the train split.

- Few-shot (``probe.shots=[n]`` with nearest-centroid heads): ``probe.draws`` random draws of
  ``n`` training tracks per class; each draw is one head per layer (its seed is the draw's
  number), so a record holds every draw's scores in its per-seed results and their mean as the
  layer's score.
- Data efficiency (``probe.train_fraction=[f]``): the heads are trained on a share ``f`` of the
  train tracks, stratified by label (multiclass; other kinds: one stratum) and nested — the
  shares come from one fixed shuffle per stratum, so 1 % ⊂ 10 % ⊂ 25 % ⊂ 100 %.

A run config may list several values of either key: the pipeline runs one job (one record) per
value (:func:`variants`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from mirprobe.errors import UserError
from mirprobe.probes.spec import ProbeConfig, SplitData

VARIED = ("shots", "train_fraction")  # list keys that make one job per value


def variants(cfg: ProbeConfig) -> list[ProbeConfig]:
    """One probe config per value of each varied key (the config itself when none is set)."""
    out = [cfg]
    for key in VARIED:
        values = getattr(cfg, key)
        if values is not None and len(values) > 1:
            out = [dataclasses.replace(c, **{key: [v]}) for c in out for v in values]
    return out


def variant_label(cfg: ProbeConfig | None) -> str:
    """The suffix that tells a varied job's records apart in tables: ``/5-shot``, ``/10%``, and
    ``/knn`` or ``/centroid`` for a grid of only those heads (untrained protocols: their records
    must not stand in for a trained probe's in the leaderboard, which keeps one per task)."""
    if cfg is None:
        return ""
    shots, fraction = single(cfg, "shots"), single(cfg, "train_fraction")
    untrained = list(cfg.heads) in (["knn"], ["centroid"])  # one kind alone (spec.ALONE)
    return ((f"/{shots}-shot" if shots is not None else "")
            + (f"/{fraction * 100:g}%" if fraction is not None else "")
            + (f"/{cfg.heads[0]}" if untrained and shots is None else ""))


def single(cfg: ProbeConfig, key: str) -> float | None:
    values = getattr(cfg, key)
    if values is None:
        return None
    if len(values) != 1:
        raise UserError(f"config key 'probe.{key}': one job takes one value (got {list(values)}); "
                        "the pipeline runs one job per value")
    return values[0]


def _strata(task, labels: list) -> dict:  # noqa: ANN001
    groups: dict = defaultdict(list)
    for i, label in enumerate(labels):
        groups[str(label) if task.kind == "multiclass" else ""].append(i)
    return groups


def share_of_train(task, splits: dict[str, SplitData], cfg: ProbeConfig,  # noqa: ANN001
                   seed: int) -> dict[str, SplitData]:
    """``splits`` with the train split cut to ``probe.train_fraction`` (unchanged when unset)."""
    fraction = single(cfg, "train_fraction")
    if fraction is None or fraction >= 1:
        return splits
    return {**splits, "train": train_subset(task, splits["train"], float(fraction), seed)}


def train_subset(task, split: SplitData, fraction: float, seed: int) -> SplitData:  # noqa: ANN001
    """The nested, stratified share ``fraction`` of the train tracks (at least one per stratum)."""
    keep = []
    for s, (_, members) in enumerate(sorted(_strata(task, split.labels).items())):
        order = np.random.default_rng([seed, s]).permutation(members)
        keep.extend(order[: max(1, int(round(fraction * len(members))))].tolist())
    keep.sort()
    return SplitData(split.items[keep], [split.labels[i] for i in keep],
                     [split.uids[i] for i in keep])


def check_shots(counts: Mapping[str, int], shots: int) -> None:
    """A one-line error when a class (``counts``: training tracks per class name) has fewer
    than ``shots`` training tracks: no ``shots``-shot draw exists."""
    short = [(name, have) for name, have in counts.items() if have < shots]
    if not short:
        return
    name, have = min(short, key=lambda x: x[1])
    if have == 0:
        raise UserError(f"config key 'probe.shots': class {name!r} has no training tracks, "
                        f"so no {shots}-shot draw exists; few-shot needs every class of the "
                        "task in the train split (run it on another task)")
    raise UserError(f"config key 'probe.shots': {shots} examples per class but class "
                    f"{name!r} has {have} training tracks; give shots <= {have}")


def draw_tracks(track_classes: np.ndarray, classes: list[str], shots: int, draws: int,
                seed: int) -> np.ndarray:
    """``[draws, T]`` 0/1 masks: ``shots`` random train tracks of every class per draw."""
    members = [np.flatnonzero(track_classes == c) for c in range(len(classes))]
    check_shots({classes[c]: len(m) for c, m in enumerate(members)}, shots)
    masks = np.zeros((draws, len(track_classes)))
    for d in range(draws):
        rng = np.random.default_rng([seed, shots, d])
        for m in members:
            masks[d, rng.choice(m, shots, replace=False)] = 1.0
    return masks

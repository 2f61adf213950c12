"""What a probe job takes and gives: the tracks of each split, the grid, the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mirprobe.record import LayerResult, Selection


@dataclass
class SplitData:
    """The tracks of one split: indices into the feature entry's items, labels, song ids."""

    items: np.ndarray  # int64 indices into FeatureEntry.items
    labels: list[Any]  # raw JSONL labels, one per track
    uids: list[str]  # ori_uid (clips of one song) or the track's own key


@dataclass
class ProbeConfig:
    """The grid and the training protocol (MARBLE's defaults)."""

    heads: list[str] = field(default_factory=lambda: ["mlp"])  # "linear" | "mlp", or one of ALONE
    hidden: int = 512
    dropout: list[float] = field(default_factory=lambda: [0.2])
    lr: list[float] = field(default_factory=lambda: [5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2])
    weight_decay: list[float] = field(default_factory=lambda: [0.0])
    seeds: int = 1
    batch_size: int = 64
    max_epochs: int = 100
    patience: int = 10  # epochs without validation improvement before a head stops
    lr_patience: int = 5  # reduce-on-plateau patience (epochs); factor 0.5
    layers: list[int] | None = None  # None: every layer
    weighted_sum: bool = True  # add the learned softmax-weighted sum of layers
    memory_budget_gb: float | None = None  # None: keep features in memory when they fit
    alpha: list[float] | None = None  # ridge penalties per training row; None: 1e-3 … 1e4
    dtype: str = "float32"  # precision of the head products: "float32" | "bfloat16"
    k: list[int] | None = None  # k-NN neighbour counts; None: 1, 3, 5, 10, 20, 50
    metric: list[str] | None = None  # k-NN distances; None: cosine and euclidean
    shots: list[int] | None = None  # nearest-centroid examples per class (one job per value)
    draws: int = 100  # random draws per shot count
    train_fraction: list[float] | None = None  # share of the train tracks (one job per value)

    def __post_init__(self) -> None:
        check_heads(self)  # every ProbeConfig is a valid one: stages take it as it is


@dataclass
class ProbeResult:
    """Everything a run record needs from one probe job."""

    per_layer: list[LayerResult]  # the weighted sum last when weighted_sum
    selection: Selection  # the validation-selected layer
    predictions: dict[str, list[Any]]  # layer name → per seed: test predictions of its chosen head
    test_labels: list[Any]  # labels of the scored test units (tracks, or songs)
    test_uids: list[str]
    num_heads: int
    timings: dict[str, float] = field(default_factory=dict)
    # name → the same chosen heads scored on another test set (``run_probe``'s ``extra_tests``)
    extra: dict[str, ProbeResult] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return [r.layer for r in self.per_layer]

    @property
    def best(self) -> LayerResult:
        """The validation-selected layer."""
        return next(r for r in self.per_layer if r.layer == self.selection.layer)


HEAD_KINDS = ("linear", "mlp", "ridge", "centroid", "knn")
ALONE = ("ridge", "centroid", "knn")  # closed-form heads: one kind per run
KNN_METRICS = ("cosine", "euclidean")
# Keys a job's identity leaves out while unset, so that records made before they existed keep
# their ids.
OPTIONAL_KEYS = ("k", "metric", "shots", "train_fraction")
# Part of every job's identity: raised whenever a change to the engine changes what it computes
# (2: first-layer products through oneDNN, dropout masks compared on 24 bits), so that records
# trained by an earlier engine are not reused.
ENGINE_VERSION = 2
PRECISIONS = ("float32", "bfloat16")


def check_heads(cfg) -> None:  # noqa: ANN001 (ProbeConfig or its DictConfig)
    """The whole probe config (``probe.heads``, ``probe.alpha``, ``probe.dtype``, the grid's
    lists and counts), with one-line errors naming the key."""
    from mirprobe.errors import UserError

    for key in ("lr", "dropout", "weight_decay", "heads"):
        if len(getattr(cfg, key)) == 0:
            raise UserError(f"config key 'probe.{key}' is empty; give at least one value")
    heads = list(cfg.heads)
    for head in heads:
        if head not in HEAD_KINDS:
            raise UserError(f"config key 'probe.heads': {head!r} is not allowed; use one of: "
                            f"{', '.join(HEAD_KINDS)}")
    for alone in ALONE:
        if alone in heads and len(heads) > 1:
            raise UserError(f"config key 'probe.heads': {alone} heads run alone (got {heads!r}); "
                            f"use probe.heads=[{alone}], and train other heads in another run")
    for key in ("seeds", "batch_size", "max_epochs", "hidden"):
        if getattr(cfg, key) < 1:
            raise UserError(f"config key 'probe.{key}' must be at least 1 (got {getattr(cfg, key)})")
    if cfg.alpha is not None:
        alpha = list(cfg.alpha)
        if not alpha or not all(isinstance(a, int | float) and not isinstance(a, bool) and a > 0
                                for a in alpha):
            raise UserError(f"config key 'probe.alpha': {alpha!r}; give positive penalties, "
                            "e.g. probe.alpha=[0.01,0.1,1,10], or null for the default grid")
    _check_knn(cfg)
    _check_fewshot(cfg)
    if cfg.dtype not in PRECISIONS:
        raise UserError(f"config key 'probe.dtype': {cfg.dtype!r} is not allowed; use one of: "
                        f"{', '.join(PRECISIONS)}")


def _check_knn(cfg) -> None:  # noqa: ANN001
    from mirprobe.errors import UserError

    k = getattr(cfg, "k", None)
    if k is not None and (not list(k) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in k)):
        raise UserError(f"config key 'probe.k': {list(k)!r}; give neighbour counts >= 1, "
                        "e.g. probe.k=[1,5,20], or null for the default grid")
    metric = getattr(cfg, "metric", None)
    if metric is not None and (not list(metric) or any(m not in KNN_METRICS for m in metric)):
        raise UserError(f"config key 'probe.metric': {list(metric)!r}; use a list of "
                        f"{', '.join(KNN_METRICS)}, or null for both")


def probe_identity(cfg: ProbeConfig) -> dict[str, Any]:
    """The probe protocol's part of a job's identity (unset optional keys left out, and the draw
    count unless there are shots to draw)."""
    from dataclasses import asdict

    out = asdict(cfg)
    for key in OPTIONAL_KEYS:
        if out.get(key) is None:
            out.pop(key, None)
    if "shots" not in out:
        out.pop("draws", None)
    return out


def _check_fewshot(cfg) -> None:  # noqa: ANN001
    from mirprobe.errors import UserError

    shots = getattr(cfg, "shots", None)
    if shots is not None:
        if not list(shots) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                      for v in shots):
            raise UserError(f"config key 'probe.shots': {list(shots)!r}; give examples per class "
                            ">= 1, e.g. probe.shots=[1,5,10,20], or null")
        if list(cfg.heads) != ["centroid"]:
            raise UserError(f"config key 'probe.shots' needs probe.heads=[centroid] (got "
                            f"{list(cfg.heads)!r})")
    if getattr(cfg, "draws", 1) < 1:
        raise UserError(f"config key 'probe.draws' must be at least 1 (got {cfg.draws})")
    frac = getattr(cfg, "train_fraction", None)
    if frac is not None and (not list(frac) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 1 for v in frac)):
        raise UserError(f"config key 'probe.train_fraction': {list(frac)!r}; give shares in "
                        "(0, 1], e.g. probe.train_fraction=[0.01,0.1,0.25,1], or null")

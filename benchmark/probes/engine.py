"""``run_probe``: one batched job for one task and one feature entry.

1. Rows and targets of each split; features standardised with train statistics; resident on
   the device when they fit the memory budget, else streamed (``mirprobe.probes.data``).
2. Every head of the grid trained at once (``mirprobe.probes.train``), each with its own early
   stopping on the validation proxy ``task.score``; or, for ``probe.heads=[ridge]``, the
   closed-form ridge path of every layer (``mirprobe.probes.ridge``); or, for
   ``probe.heads=[centroid]``, nearest-centroid heads (``mirprobe.probes.centroid``); or, for
   ``probe.heads=[knn]``, k-nearest-neighbour heads (``mirprobe.probes.knn``).
3. Every final head scored on validation with the task's own metrics (``task.evaluate``; beat
   outputs are decoded here); per layer, the configuration (head, lr, dropout, weight decay, and
   for grouped multiclass tasks the song ensemble) with the best mean over seeds is chosen, and
   the best layer overall, on validation only.
4. The test split is run once, through the chosen heads only; so is each extra test set
   (``extra_tests``: e.g. the test tracks under a deformation), read through the same train
   statistics, with the same chosen heads, selection untouched.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mirprobe import record
from mirprobe.errors import UserError
from mirprobe.probes.aggregate import ensembles
from mirprobe.probes.centroid import centroid_grid, centroid_rows, check_task, fit_centroids
from mirprobe.probes.data import FeatureSource, SplitRows, build_split, default_budget
from mirprobe.probes.fewshot import share_of_train
from mirprobe.probes.heads import WEIGHTED, HeadSpec, build_grid
from mirprobe.probes.knn import Neighbours, knn_grid
from mirprobe.probes.knn import check_task as check_knn_task
from mirprobe.probes.ridge import RidgeSpec, fit_path, predict_rows, ridge_grid
from mirprobe.probes.spec import ProbeConfig, ProbeResult, SplitData
from mirprobe.probes.train import Group, fit_heads, forward_rows, unit_outputs

SPLITS = ("train", "val", "test")


def run_probe(task, entry, splits: dict[str, SplitData], cfg: ProbeConfig, *,  # noqa: ANN001
              device: str | torch.device = "cpu", seed: int = 0, progress: bool = True,
              extra_tests: dict[str, tuple[Any, SplitData]] | None = None) -> ProbeResult:
    """Train, select on validation and test every probe of ``cfg`` for ``task`` on ``entry``.

    ``extra_tests``: name → ``(entry, tracks)`` of further test sets of the same model (their
    labels already as the task should score them); their scores go to ``result.extra[name]``
    and change nothing else."""
    t0 = time.perf_counter()
    dev = torch.device(device)
    _validate(task, entry, splits, cfg)
    task.fit(list(splits["train"].labels))
    splits = share_of_train(task, splits, cfg, seed)
    frame = task.view == "frame"
    group = bool(task.group_by_uid) and not frame
    data = {s: build_split(task, entry, s, splits[s], group, dev) for s in SPLITS}
    budget = (int(cfg.memory_budget_gb * 2**30) if cfg.memory_budget_gb is not None
              else default_budget(dev))
    source = FeatureSource(entry.features, np.concatenate([d.rows for d in data.values()]),
                           dev, budget)
    source.fit_standardiser(data["train"].rows)
    t1 = time.perf_counter()
    if cfg.heads == ["ridge"]:
        specs, heads, epochs = _ridge(task, source, data["train"], cfg, entry.num_layers)
    elif cfg.heads == ["centroid"]:
        specs, heads, epochs = _centroid(task, source, data["train"], cfg, entry.num_layers,
                                         seed)
    elif cfg.heads == ["knn"]:
        specs, heads, epochs = _knn(task, source, data["train"], cfg, entry.num_layers)
    else:
        specs = build_grid(cfg, entry.num_layers)
        groups = fit_heads(task, specs, source, data["train"], data["val"], cfg, seed,
                           task.output_dim, dev, progress,
                           batch_rows=batch_rows(cfg, entry, frame))
        heads = [_bank_heads(g, source) for g in groups]
        epochs = {int(i): int(g.epochs[j]) for g in groups for j, i in enumerate(g.index)}
    t2 = time.perf_counter()

    hows = ensembles(task.kind, group and data["val"].num_units < data["val"].num_tracks)
    val = _score_groups(task, heads, data["val"], hows, entry.frame_rate)
    chosen = _select(task, specs, val)
    t3 = time.perf_counter()

    test = _test(task, heads, data["test"], chosen, entry.frame_rate)
    t4 = time.perf_counter()
    result = _result(task, entry, specs, chosen, val, test, epochs, data["test"], len(hows) > 1)
    for name, (other, tracks) in (extra_tests or {}).items():
        started = time.perf_counter()
        split = build_split(task, other, "test", tracks, group, dev)
        with source.reading(other.features):
            scored = _test(task, heads, split, chosen, other.frame_rate)
        result.extra[name] = _result(task, other, specs, chosen, val, scored, epochs, split,
                                     len(hows) > 1)
        result.extra[name].timings = {"test_s": time.perf_counter() - started}
    result.timings = {"load_s": t1 - t0, "train_s": t2 - t1, "select_s": t3 - t2,
                      "test_s": t4 - t3, "probe_s": t4 - t0,
                      "resident": float(source.resident),
                      "epochs_max": float(max(epochs.values(), default=0))}
    return result


@dataclass
class Heads:
    """Trained heads: their grid positions and their outputs ``[h, R, out]`` for a split's rows
    (all heads, or those at positions ``pick`` of ``index``)."""

    index: np.ndarray
    rows: Callable[[SplitRows, list[int] | None], torch.Tensor]


def _bank_heads(g: Group, source: FeatureSource) -> Heads:
    bank = g.final_bank()

    def rows(split: SplitRows, pick: list[int] | None = None) -> torch.Tensor:
        return forward_rows(bank if pick is None else bank.select(pick), source, split)
    return Heads(g.index, rows)


def _ridge(task, source: FeatureSource, train: SplitRows, cfg: ProbeConfig,  # noqa: ANN001
           num_layers: int) -> tuple[list[RidgeSpec], list[Heads], dict[int, int]]:
    """The ridge path of every layer: one pass over the train rows, one decomposition each."""
    specs = ridge_grid(cfg, num_layers)
    path, w, b = fit_path(task, source, train, specs, task.output_dim)

    def rows(split: SplitRows, pick: list[int] | None = None) -> torch.Tensor:
        out = predict_rows(task, path, w, b, source, split, task.output_dim)
        return out if pick is None else out[pick]
    return specs, [Heads(np.arange(len(specs)), rows)], {i: 0 for i in range(len(specs))}


def _centroid(task, source: FeatureSource, train: SplitRows, cfg: ProbeConfig,  # noqa: ANN001
              num_layers: int, seed: int) -> tuple[list, list[Heads], dict[int, int]]:
    """Nearest-centroid heads of every layer (and few-shot draw) from one pass over the train
    rows."""
    check_task(task)
    specs = centroid_grid(cfg, num_layers)
    centres = fit_centroids(source, train, specs, task.output_dim, seed,
                            [str(c) for c in getattr(task, "classes", None) or []] or None)

    def rows(split: SplitRows, pick: list[int] | None = None) -> torch.Tensor:
        out = centroid_rows(centres, source, split, specs)
        return out if pick is None else out[pick]
    return specs, [Heads(np.arange(len(specs)), rows)], {i: 0 for i in range(len(specs))}


def _knn(task, source: FeatureSource, train: SplitRows, cfg: ProbeConfig,  # noqa: ANN001
         num_layers: int) -> tuple[list, list[Heads], dict[int, int]]:
    """k-NN heads of every layer, distance and k: the train rows kept, nothing fitted."""
    check_knn_task(task)
    specs = knn_grid(cfg, num_layers, len(train.rows))
    search = Neighbours(task, source, train, specs, task.output_dim)

    return specs, [Heads(np.arange(len(specs)), search.rows)], {i: 0 for i in range(len(specs))}


def check_protocol(task, cfg: ProbeConfig) -> None:  # noqa: ANN001
    """A head kind the task cannot take (k-NN on a frame task, centroids on a non-multiclass
    one): a one-line error, before any features are extracted."""
    if cfg.heads == ["knn"]:
        check_knn_task(task)
    elif cfg.heads == ["centroid"]:
        check_task(task)


def batch_rows(cfg: ProbeConfig, entry, frame: bool) -> int:  # noqa: ANN001
    """Rows per training step. Clip view: ``batch_size`` windows. Frame view: the frames of
    ``batch_size`` windows (MARBLE batches beat tracking by sequences, not single frames)."""
    window_s = entry.meta.get("window_s")  # entries built in memory may not record one
    if not frame or not window_s:
        return cfg.batch_size
    return max(cfg.batch_size, round(cfg.batch_size * entry.frame_rate * float(window_s)))


def _validate(task, entry, splits, cfg: ProbeConfig) -> None:  # noqa: ANN001
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise UserError(f"probe job needs splits {', '.join(SPLITS)}; missing {', '.join(missing)}")
    if task.view != entry.view:
        raise UserError(f"task {task.name!r} needs the {task.view} view but feature entry "
                        f"{entry.id!r} is the {entry.view} view; extract the {task.view} view")
    if cfg.layers is not None:
        out = [k for k in cfg.layers if not 0 <= int(k) < entry.num_layers]
        if out:
            raise UserError(f"probe.layers {out} out of range: the entry has "
                            f"{entry.num_layers} layers (0..{entry.num_layers - 1})")


def _track_outputs(row_out: torch.Tensor, split: SplitRows) -> list[list[np.ndarray]]:
    """Frame view: per head, the list of per-track ``[frames, out]`` arrays."""
    arr = row_out.detach().float().cpu().numpy()
    cuts = np.cumsum(split.track_lengths)[:-1]
    return [np.split(arr[h], cuts) for h in range(arr.shape[0])]


def _evaluate(task, outputs: Any, split: SplitRows, frame_rate: float) -> tuple[dict, Any]:  # noqa: ANN001
    frame = split.row_targets is not None
    preds = task.predictions(outputs, frame_rate=frame_rate if frame else None)
    labels = split.track_labels if frame else split.unit_labels
    return {k: float(v) for k, v in task.evaluate(preds, labels).items()}, preds


def _score_groups(task, heads: list[Heads], split: SplitRows,  # noqa: ANN001
                  hows: tuple[str, ...], frame_rate: float) -> dict[tuple[int, str], dict]:
    """Validation metrics of every final head: ``{(grid index, ensemble): metrics}``."""
    out: dict[tuple[int, str], dict] = {}
    for g in heads:
        row_out = g.rows(split, None)
        if split.row_targets is not None:
            for j, tracks in enumerate(_track_outputs(row_out, split)):
                out[int(g.index[j]), "mean"] = _evaluate(task, tracks, split, frame_rate)[0]
            continue
        for how in hows:
            units = unit_outputs(row_out, split, how).float().cpu().numpy()
            for j in range(len(g.index)):
                out[int(g.index[j]), how] = _evaluate(task, units[j], split, frame_rate)[0]
    return out


def _config_key(spec: HeadSpec | RidgeSpec, how: str) -> tuple:
    return (spec.layer, *spec.config().values(), how)


def _select(task, specs: list[HeadSpec], val: dict) -> dict[int, dict]:  # noqa: ANN001
    """Per layer: the configuration with the best mean validation metric over seeds."""
    sign = 1.0 if task.higher_is_better else -1.0
    metric = task.selection_metric
    runs: dict[tuple, list[int]] = defaultdict(list)
    for (i, how) in val:
        runs[_config_key(specs[i], how)].append(i)
    chosen: dict[int, dict] = {}
    for key, members in runs.items():
        members.sort(key=lambda i: specs[i].seed)
        vals = [val[i, key[-1]][metric] for i in members]
        score = sign * float(np.mean(vals)) if np.all(np.isfinite(vals)) else -np.inf
        layer = key[0]
        if layer not in chosen or score > chosen[layer]["score"]:
            chosen[layer] = {"score": score, "heads": members, "how": key[-1]}
    return chosen


def _test(task, heads: list[Heads], split: SplitRows, chosen: dict[int, dict],  # noqa: ANN001
          frame_rate: float) -> dict[int, tuple[dict, Any]]:
    """Test metrics and predictions of the chosen heads only: ``{grid index: (metrics, preds)}``."""
    how_of = {i: c["how"] for c in chosen.values() for i in c["heads"]}
    out: dict[int, tuple[dict, Any]] = {}
    for g in heads:
        pick = [j for j, i in enumerate(g.index) if int(i) in how_of]
        if not pick:
            continue
        row_out = g.rows(split, pick)
        frame_tracks = _track_outputs(row_out, split) if split.row_targets is not None else None
        for n, j in enumerate(pick):
            i = int(g.index[j])
            if frame_tracks is not None:
                out[i] = _evaluate(task, frame_tracks[n], split, frame_rate)
            else:
                units = unit_outputs(row_out[n: n + 1], split, how_of[i])[0]
                out[i] = _evaluate(task, units.float().cpu().numpy(), split, frame_rate)
    return out


def _mean(metrics: list[dict]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}


def _result(task, entry, specs: list[HeadSpec], chosen: dict[int, dict], val: dict,  # noqa: ANN001
            test: dict, epochs: dict[int, int], test_split: SplitRows,
            ensembled: bool) -> ProbeResult:
    per_layer, predictions = [], {}
    for layer in sorted(chosen, key=lambda k: (k == WEIGHTED, k)):
        c = chosen[layer]
        name = record.WEIGHTED if layer == WEIGHTED else entry.layer_names[layer]
        config = specs[c["heads"][0]].config()
        if ensembled:
            config["aggregate"] = c["how"]
        seeds = [record.SeedResult(seed=specs[i].seed, val=val[i, c["how"]], test=test[i][0],
                                   epochs=epochs[i]) for i in c["heads"]]
        per_layer.append(record.LayerResult(
            layer=name, index=entry.num_layers if layer == WEIGHTED else layer, chosen=config,
            val=_mean([s.val for s in seeds]), test=_mean([s.test for s in seeds]), seeds=seeds))
        predictions[name] = [test[i][1] for i in c["heads"]]
    return ProbeResult(per_layer=per_layer,
                       selection=record.select(per_layer, task.selection_metric,
                                               task.higher_is_better),
                       predictions=predictions, test_labels=list(test_split.unit_labels),
                       test_uids=list(test_split.unit_uids), num_heads=len(specs))

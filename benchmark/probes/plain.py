"""The reference protocol: one configuration at a time with a plain PyTorch loop (MARBLE's way).

Used by ``perf/probe.py`` and the tests to check the batched engine: same grid, same
standardisation (computed here independently with numpy), same initial weights, same batch
order; ``torch.nn`` modules, ``torch.optim.Adam`` and ``ReduceLROnPlateau``; early stopping on
``task.score`` of the validation tracks; selection per layer on ``task.evaluate`` of
validation (mean over seeds). Clip-view tasks only; songs are merged by the mean.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn

from mirprobe.probes.heads import (
    WEIGHTED,
    HeadSpec,
    build_grid,
    dropout_gate,
    init_head,
    mask_seed,
)
from mirprobe.probes.spec import ProbeConfig, SplitData
from mirprobe.probes.train import MIN_DELTA


class PlainHead(nn.Module):
    """One probe: a layer (or the softmax-weighted sum of layers) into a linear or MLP head."""

    def __init__(self, spec: HeadSpec, params: dict[str, torch.Tensor], seed: int) -> None:
        super().__init__()
        self.p, self.seed, self.step = spec.dropout, torch.tensor([seed]), 0
        self.weighted = spec.layer == WEIGHTED
        self.alpha = nn.Parameter(params["alpha"].clone()) if self.weighted else None
        w2 = params["w2"]
        last = nn.Linear(w2.shape[0], w2.shape[1])
        last.weight.data, last.bias.data = w2.T.clone(), params["b2"].clone()
        if spec.kind == "mlp":
            first = nn.Linear(params["w1"].shape[1], params["w1"].shape[0])
            first.weight.data, first.bias.data = params["w1"].clone(), params["b1"].clone()
            self.first = first
        else:
            self.first = None
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weighted:
            x = torch.einsum("l,bld->bd", torch.softmax(self.alpha, 0), x)
        if self.first is not None:
            x = torch.relu(self.first(x))
            if self.training and self.p > 0:  # the batched heads' masks at this step
                keep = torch.tensor([1.0 - self.p])
                x = x * dropout_gate(self.seed, self.step, keep, x.shape[1], x.shape[0])[0].T
        return self.last(x)


def _split_arrays(task, entry, split: SplitData, mean, std) -> dict[str, Any]:  # noqa: ANN001
    rows, track = [], []
    labels, uids = [], []
    for item, label, uid in zip(split.items, split.labels, split.uids, strict=True):
        sl = entry.rows(int(item))
        if sl.stop > sl.start:
            rows.append(np.arange(sl.start, sl.stop))
            track += [len(labels)] * (sl.stop - sl.start)
            labels.append(label)
            uids.append(uid)
    rows = np.concatenate(rows)
    x = (np.asarray(entry.features[rows], dtype=np.float32) - mean) / std
    unit_of: dict[str, int] = {}
    unit = [unit_of.setdefault(u, len(unit_of)) if task.group_by_uid else i
            for i, u in enumerate(uids)]
    first = {}
    for t, u in enumerate(unit):
        first.setdefault(u, t)
    unit_labels = [labels[first[u]] for u in range(len(first))]
    targets = torch.from_numpy(np.stack([np.asarray(task.encode(lab)) for lab in labels]))
    return {"x": torch.from_numpy(x), "track": torch.tensor(track), "unit": torch.tensor(unit),
            "targets": targets, "unit_targets": targets[[first[u] for u in range(len(first))]],
            "unit_labels": unit_labels}


def _units(logits: torch.Tensor, d: dict[str, Any]) -> torch.Tensor:
    """Window logits → mean per track → mean per unit."""
    def mean(v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        n = int(idx.max()) + 1
        total = v.new_zeros(n, v.shape[1]).index_add_(0, idx, v)
        return total / torch.bincount(idx, minlength=n).clamp_min(1).unsqueeze(1).to(v.dtype)
    return mean(mean(logits, d["track"]), d["unit"])


def _layer_input(d: dict[str, Any], layer: int) -> torch.Tensor:
    return d["x"] if layer == WEIGHTED else d["x"][:, layer].contiguous()


def train_one(task, spec: HeadSpec, data: dict[str, dict], cfg: ProbeConfig, run_seed: int,  # noqa: ANN001
              out: int) -> tuple[nn.Module, int]:
    """Train one probe to early stopping; returns it with its best validation weights, and the
    number of optimiser steps taken."""
    train, val = data["train"], data["val"]
    model = PlainHead(spec, init_head(spec, run_seed, train["x"].shape[1], train["x"].shape[2],
                                      out, cfg.hidden),
                      mask_seed(run_seed, spec))
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=0.5, patience=cfg.lr_patience, threshold=MIN_DELTA,
        threshold_mode="abs")
    shuffle = torch.Generator().manual_seed(run_seed)
    x_train, x_val = _layer_input(train, spec.layer), _layer_input(val, spec.layer)
    y_train = train["targets"][train["track"]]
    best, best_state, bad, steps = -float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    for _ in range(cfg.max_epochs):
        model.train()
        for idx in torch.randperm(len(x_train), generator=shuffle).split(cfg.batch_size):
            loss = task.loss(model(x_train[idx]).unsqueeze(0), y_train[idx]).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            model.step += 1
        model.eval()
        with torch.no_grad():
            score = float(task.score(_units(model(x_val), val).unsqueeze(0), val["unit_targets"])[0])
        sched.step(score)
        if score > best + MIN_DELTA:
            best, best_state, bad = score, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), steps


def run_plain(task, entry, splits: dict[str, SplitData], cfg: ProbeConfig, *,  # noqa: ANN001
              seed: int = 0) -> dict[str, Any]:
    """The whole grid one configuration at a time; per layer the validation-selected config
    with its val and test metrics (means over seeds): ``{"per_layer": {layer: {...}},
    "seconds": wall time, "steps": optimiser steps summed over heads}``."""
    t0 = time.perf_counter()
    task.fit(list(splits["train"].labels))
    train_rows = np.concatenate([np.arange(entry.rows(int(i)).start, entry.rows(int(i)).stop)
                                 for i in splits["train"].items])
    sample = np.asarray(entry.features[train_rows], dtype=np.float64)
    mean = sample.mean(0).astype(np.float32)
    std = np.maximum(sample.std(0), 1e-6).astype(np.float32)
    data = {s: _split_arrays(task, entry, splits[s], mean, std) for s in ("train", "val", "test")}
    runs: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    steps = 0
    for spec in build_grid(cfg, entry.num_layers):
        model, n = train_one(task, spec, data, cfg, seed, task.output_dim)
        steps += n
        metrics = {}
        with torch.no_grad():
            for s in ("val", "test"):
                units = _units(model(_layer_input(data[s], spec.layer)), data[s]).numpy()
                metrics[s] = task.evaluate(task.predictions(units), data[s]["unit_labels"])
        key = (spec.layer, spec.kind, spec.lr, spec.dropout, spec.weight_decay)
        runs[key].append((metrics["val"], metrics["test"]))
    sign = 1.0 if task.higher_is_better else -1.0
    metric = task.selection_metric
    per_layer: dict[int, dict] = {}
    for key, seeds in runs.items():
        val = {k: float(np.mean([v[k] for v, _ in seeds])) for k in seeds[0][0]}
        test = {k: float(np.mean([t[k] for _, t in seeds])) for k in seeds[0][1]}
        layer = key[0]
        if layer not in per_layer or sign * val[metric] > sign * per_layer[layer]["val"][metric]:
            per_layer[layer] = {"config": key[1:], "val": val, "test": test}
    return {"per_layer": per_layer, "seconds": time.perf_counter() - t0, "steps": steps}

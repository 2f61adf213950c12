"""The batched training loop: every head of the grid over the same batches.

Per head: its own Adam state and learning rate, reduce-on-plateau (factor 0.5 after
``lr_patience`` epochs without improvement of the validation proxy), early stopping after
``patience`` such epochs, and its best weights kept. Stopped heads leave the stacked tensors at
the end of the epoch, so the work per epoch shrinks as heads converge.

Loop order. Within an epoch heads are independent, so the steps of a window of batches can be
taken chunk of heads by chunk of heads: on a CPU each chunk is sized so that its weights,
gradients and Adam state stay in the cache over the window (reading them from memory at
every step would cost more than the products); on a GPU one chunk holds every head. Every
head takes the same steps, with the same dropout masks, whatever the order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mirprobe.probes.adam import HeadAdam
from mirprobe.probes.aggregate import merge_units, track_mean
from mirprobe.probes.data import FeatureSource, SplitRows
from mirprobe.probes.heads import WEIGHTED, HeadBank, HeadSpec, chunks
from mirprobe.progress import progress_bar

EVAL_BYTES = 128 << 20  # float32 activations of one evaluation sub-batch across heads
WINDOW_BYTES = 256 << 20  # float32 training batches held to be run chunk by chunk
# Parameters, gradients, Adam state and activations of one chunk of heads on a CPU, sized to stay
# in the last-level cache over a window of steps. On MARBLE's MLP grid (13 x 768, 64-row batches;
# 6.8 MB per head) 48 MB chunks (the six heads of a layer) beat whole-bank ones, which stream the
# parameters and Adam state from memory at every step (perf/README.md).
CPU_CHUNK_BYTES = 48 << 20
MERGE_ROWS = 1024  # batches up to this many rows train small layers' heads in shared chunks
MIN_DELTA = 1e-6  # a validation score must beat the best by this much to count as better


@dataclass
class Group:
    """The heads of one kind: the live (compacted) bank and the full store of best weights."""

    specs: list[HeadSpec]
    index: np.ndarray  # position of each spec in the grid
    bank: HeadBank
    opt: HeadAdam
    best: tuple[torch.Tensor, torch.Tensor]  # best (big, small) buffers of every head
    active: torch.Tensor  # [h] live heads' positions in this group
    best_score: torch.Tensor
    bad: torch.Tensor  # epochs since the best score
    plateau: torch.Tensor  # epochs since the last improvement or lr reduction
    epochs: torch.Tensor  # epochs trained per head
    best_epoch: torch.Tensor
    chunk_bytes: int | None = None
    batch_rows: int = 0  # rows per training step (sizes the chunks)
    ranges: list[tuple[int, int]] | None = None
    grads: list[torch.Tensor] | None = None

    def final_bank(self) -> HeadBank:
        """All heads of the group with their best weights."""
        b = self.bank
        return HeadBank(b.kind, self.best[0].clone(), self.best[1].clone(),
                        [s.layer for s in self.specs], [s.dropout for s in self.specs],
                        [0] * len(self.specs), b.shape, b.dtype, b.widths)

    def plan(self) -> None:
        """Chunks of the live bank and gradient buffers for the largest."""
        self.ranges = chunks(self.bank, self.chunk_bytes, self.batch_rows,
                             merge=self.batch_rows <= MERGE_ROWS)
        most = max((e - a for a, e in self.ranges), default=0)
        if self.grads is None or len(self.grads[0]) < most:
            self.grads = [self.bank.big.new_empty(most, *self.bank.big.shape[1:]),
                          self.bank.small.new_empty(most, self.bank.small.shape[1])]


def make_groups(specs: list[HeadSpec], cfg, run_seed: int, num_layers: int, dim: int, out: int,  # noqa: ANN001
                device: torch.device, widths: list[int] | None = None,
                batch_rows: int | None = None) -> list[Group]:
    groups = []
    rows = batch_rows or cfg.batch_size
    chunk_bytes = CPU_CHUNK_BYTES if device.type == "cpu" else None
    dtype = getattr(cfg, "dtype", "float32")
    # Weighted-sum heads get banks of their own: their input needs a gradient (for the layer
    # weights), single-layer heads' does not.
    for kind, weighted in dict.fromkeys((s.kind, s.layer == WEIGHTED) for s in specs):
        index = np.array([i for i, s in enumerate(specs)
                          if s.kind == kind and (s.layer == WEIGHTED) == weighted])
        gspecs = [specs[i] for i in index]
        bank = HeadBank.create(gspecs, run_seed, num_layers, dim, out, cfg.hidden, device, dtype,
                               widths)
        h = len(gspecs)
        lr = torch.tensor([s.lr for s in gspecs], device=device)
        wd = torch.tensor([s.weight_decay for s in gspecs], device=device)
        zeros = torch.zeros(h, dtype=torch.int64, device=device)
        group = Group(gspecs, index, bank, HeadAdam(bank, lr, wd),
                      (bank.big.clone(), bank.small.clone()), torch.arange(h, device=device),
                      torch.full((h,), -torch.inf, device=device),
                      zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone(), chunk_bytes,
                      rows)
        group.plan()
        groups.append(group)
    return groups


def forward_rows(bank: HeadBank, source: FeatureSource, split: SplitRows) -> torch.Tensor:
    """Logits of every head for every row of ``split``, ``[H, R, out]`` in split row order."""
    width = max(bank.params["w2"].shape[1], source.dim)
    max_rows = max(1, EVAL_BYTES // (4 * width * max(1, bank.num_heads)))
    out = None
    with torch.no_grad():
        for pos, x in source.ordered(split.rows, max_rows):
            logits = bank.forward(x)
            if out is None:
                out = logits.new_empty(logits.shape[0], len(split.rows), logits.shape[2])
            out[:, pos] = logits
    return out


def unit_outputs(row_out: torch.Tensor, split: SplitRows, how: str = "mean") -> torch.Tensor:
    """Row logits → scored-unit outputs (tracks, or songs merged by ``how``)."""
    tracks = track_mean(row_out, split.row_track, split.num_tracks)
    return merge_units(tracks, split.track_unit, split.num_units, how)


def val_proxy(task, bank: HeadBank, source: FeatureSource, val: SplitRows) -> torch.Tensor:  # noqa: ANN001
    """The per-epoch early-stopping score ``[H]`` (``task.score``, higher is better)."""
    row_out = forward_rows(bank, source, val)
    if val.row_targets is not None:
        return task.score(row_out, val.row_targets).float()
    return task.score(unit_outputs(row_out, val), val.unit_targets).float()


def _targets(split: SplitRows, pos: torch.Tensor) -> torch.Tensor:
    if split.row_targets is not None:
        return split.row_targets[pos]
    return split.track_targets[split.row_track[pos]]


def train_chunk(task, g: Group, a: int, b: int, x: torch.Tensor, y: torch.Tensor,  # noqa: ANN001
                step: int) -> None:
    """One Adam step (number ``step``, from 0) of heads ``a:b`` of the group on one batch."""
    cache: dict = {}
    out = g.bank.forward(x, a, b, step=step, cache=cache).requires_grad_(True)
    with torch.enable_grad():
        (d_out,) = torch.autograd.grad(task.loss(out, y).sum(), out)
    grads = [buf[: b - a] for buf in g.grads]
    g.bank.gradients(x, d_out, cache, *grads)
    g.opt.step(g.bank, grads, a, b)


def keep_best(g: Group, better: torch.Tensor, improved: torch.Tensor) -> None:
    """Copy the weights of the live heads flagged ``better`` into the group's best store, at
    their group positions ``improved``.

    Head by head: a masked gather would first copy every improved head into a new tensor (up
    to the whole bank, 130 MB on MARBLE's MLP grid), fresh memory with page faults at every
    epoch."""
    live = torch.nonzero(better).flatten()
    for j, i in zip(live.tolist(), improved.tolist(), strict=True):  # one sync per epoch
        g.best[0][i].copy_(g.bank.big[j])
        g.best[1][i].copy_(g.bank.small[j])


def end_epoch(task, g: Group, source: FeatureSource, val: SplitRows, cfg) -> None:  # noqa: ANN001
    """Validation proxy, best weights, plateau and early stopping; compacts stopped heads."""
    if g.bank.num_heads == 0:
        return
    score = val_proxy(task, g.bank, source, val)
    a = g.active
    g.epochs[a] += 1
    better = score > g.best_score[a] + MIN_DELTA
    improved = a[better]
    keep_best(g, better, improved)
    g.best_score[improved] = score[better]
    g.best_epoch[improved] = g.epochs[improved]
    g.bad[a] = torch.where(better, 0, g.bad[a] + 1)
    g.plateau[a] = torch.where(better, 0, g.plateau[a] + 1)
    reduce = g.plateau[a] > cfg.lr_patience
    # One host synchronisation per epoch.
    reduced, keep = torch.stack([reduce, g.bad[a] < cfg.patience]).tolist()
    if any(reduced):  # new learning rates regroup the optimiser: only when one changed
        g.opt.lr = torch.where(reduce, g.opt.lr * 0.5, g.opt.lr)
        g.plateau[a[reduce]] = 0
    if not all(keep):
        idx = [i for i, k in enumerate(keep) if k]
        g.bank = g.bank.compact(idx)
        g.opt = g.opt.select(idx)
        g.active = a[torch.tensor(idx, dtype=torch.int64, device=a.device)]
        g.plan()


def windows(batches, max_bytes: int):  # noqa: ANN001, ANN201
    """Consecutive training batches grouped up to ``max_bytes`` of features."""
    window, size = [], 0
    for pos, x in batches:
        window.append((pos, x))
        size += x.numel() * x.element_size()
        if size >= max_bytes:
            yield window
            window, size = [], 0
    if window:
        yield window


def fit_heads(task, specs: list[HeadSpec], source: FeatureSource, train: SplitRows,  # noqa: ANN001
              val: SplitRows, cfg, run_seed: int, out: int, device: torch.device,  # noqa: ANN001
              progress: bool = True, batch_rows: int | None = None) -> list[Group]:
    """Train every head; returns the groups with their best weights and epoch counts.

    ``batch_rows`` is the number of feature rows per step (default ``cfg.batch_size``)."""
    groups = make_groups(specs, cfg, run_seed, source.num_layers, source.dim, out, device,
                         source.widths, batch_rows)
    shuffle = torch.Generator().manual_seed(run_seed)
    bar = progress_bar(range(cfg.max_epochs), desc=f"probe {task.name}", unit="epoch",
                       enabled=progress, leave=False)
    # Streamed features: a window within the share of the budget that one sub-batch may take.
    window_bytes = min(WINDOW_BYTES, 8 * source.step_bytes) if source.resident else source.step_bytes
    step = 0
    for _ in bar:
        live = sum(g.bank.num_heads for g in groups)
        if live == 0:
            break
        bar.set_postfix(heads=f"{live}/{len(specs)}")
        batches = source.train_batches(train.rows, batch_rows or cfg.batch_size, shuffle)
        for window in windows(batches, window_bytes):
            targets = [_targets(train, pos) for pos, _ in window]
            with torch.no_grad():
                for g in groups:
                    for a, b in g.ranges:
                        for k, ((_, x), y) in enumerate(zip(window, targets, strict=True)):
                            train_chunk(task, g, a, b, x, y, step + k)
            step += len(window)
        for g in groups:
            end_epoch(task, g, source, val, cfg)
    bar.close()
    return groups

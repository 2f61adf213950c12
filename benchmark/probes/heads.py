"""Batched probe heads: many linear / MLP heads trained as one set of stacked tensors.

Every parameter has a leading head axis ``H``; one ``torch.bmm`` feeds all heads. Each head
reads one layer of the ``[B, layers, D]`` input (gathered per head) or, for the weighted-sum
head, a softmax-weighted sum of all layers. The optimiser is Adam written on the stacked
tensors with a per-head learning rate and weight decay, numerically the same update as
``torch.optim.Adam`` run head by head.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

WEIGHTED = -1  # layer index of the learned weighted sum of layers


@dataclass(frozen=True)
class HeadSpec:
    """One probe of the grid."""

    layer: int  # layer index, or WEIGHTED
    kind: str  # "linear" | "mlp"
    lr: float
    dropout: float
    weight_decay: float
    seed: int  # seed index 0..seeds-1

    def config(self) -> dict:
        """The hyper-parameters that selection chooses among (everything but layer and seed)."""
        d = asdict(self)
        d["head"] = d.pop("kind")
        del d["layer"], d["seed"]
        return d


def build_grid(cfg, num_layers: int) -> list[HeadSpec]:  # noqa: ANN001 (ProbeConfig)
    """Every head of the job: layers (+ weighted sum) × head kinds × lr × dropout × wd × seeds."""
    layers = list(range(num_layers)) if cfg.layers is None else [int(k) for k in cfg.layers]
    if cfg.weighted_sum:
        layers.append(WEIGHTED)
    specs = []
    for layer in layers:
        for kind in cfg.heads:
            # Linear heads have no hidden layer to drop out.
            dropouts = cfg.dropout if kind == "mlp" else [0.0]
            for lr in cfg.lr:
                for p in dict.fromkeys(dropouts):
                    for wd in cfg.weight_decay:
                        for s in range(cfg.seeds):
                            specs.append(HeadSpec(layer, kind, float(lr), float(p), float(wd), s))
    return specs


def init_seed(run_seed: int, spec: HeadSpec) -> int:
    """Initial weights depend on (run seed, seed index, layer, head kind) only, so that the
    heads of one layer that differ in lr start from the same point, like separate runs
    seeded alike."""
    ss = np.random.SeedSequence([run_seed, spec.seed, spec.layer + 1, ["linear", "mlp"].index(spec.kind)])
    return int(ss.generate_state(1)[0])


def dropout_generator(run_seed: int, spec: HeadSpec, device: torch.device) -> torch.Generator:
    """Each head draws its dropout masks from its own stream, so that a head trains the same
    whatever else is in the grid (and like the one-at-a-time reference loop)."""
    return torch.Generator(device=device).manual_seed(init_seed(run_seed, spec) ^ 0x5EED)


def dropout_mask(gen: torch.Generator, batch: int, hidden: int, p: float,
                 device: torch.device) -> torch.Tensor:
    """Inverted-dropout multiplier ``[batch, hidden]``: 0 or ``1 / (1 - p)``."""
    keep = torch.rand((batch, hidden), generator=gen, device=device) < 1 - p
    return keep / (1 - p)


def _uniform(gen: torch.Generator, shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    # torch.nn.Linear's default initialisation (weights and biases).
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound


def init_head(spec: HeadSpec, run_seed: int, num_layers: int, dim: int, out: int,
              hidden: int) -> dict[str, torch.Tensor]:
    """Initial parameters of one head (also used by the one-at-a-time reference loop)."""
    g = torch.Generator().manual_seed(init_seed(run_seed, spec))
    p = {"alpha": torch.zeros(num_layers)}
    if spec.kind == "mlp":
        p["w1"] = _uniform(g, (hidden, dim), dim).T.contiguous()
        p["b1"] = _uniform(g, (hidden,), dim)
        p["w2"] = _uniform(g, (out, hidden), hidden).T.contiguous()
        p["b2"] = _uniform(g, (out,), hidden)
    else:
        p["w2"] = _uniform(g, (out, dim), dim).T.contiguous()
        p["b2"] = _uniform(g, (out,), dim)
    return p


class HeadBank:
    """Heads of one kind, stacked. Single-layer heads first, weighted-sum heads last."""

    def __init__(self, kind: str, params: dict[str, torch.Tensor], layer: torch.Tensor,
                 dropout: torch.Tensor, gens: list[torch.Generator] | None = None) -> None:
        self.kind = kind
        self.gens = gens  # per-head dropout streams (training only)
        self.params = {k: v.requires_grad_(True) for k, v in params.items()}
        self.layer = layer  # [H] int64, WEIGHTED for weighted-sum heads
        self.dropout = dropout  # [H] float32
        self.n_single = int((layer != WEIGHTED).sum())

    @classmethod
    def create(cls, specs: list[HeadSpec], run_seed: int, num_layers: int, dim: int, out: int,
               hidden: int, device: torch.device) -> HeadBank:
        heads = [init_head(s, run_seed, num_layers, dim, out, hidden) for s in specs]
        params = {k: torch.stack([h[k] for h in heads]).to(device) for k in heads[0]}
        layer = torch.tensor([s.layer for s in specs], dtype=torch.int64, device=device)
        dropout = torch.tensor([s.dropout for s in specs], dtype=torch.float32, device=device)
        gens = [dropout_generator(run_seed, s, device) for s in specs]
        return cls(specs[0].kind, params, layer, dropout, gens)

    @property
    def num_heads(self) -> int:
        return int(self.layer.numel())

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, D]`` standardised features → ``[H, B, D]`` each head's input."""
        parts = []
        if self.n_single:
            parts.append(x[:, self.layer[: self.n_single]].transpose(0, 1))
        if self.n_single < self.num_heads:
            w = torch.softmax(self.params["alpha"][self.n_single:], dim=-1)
            parts.append(torch.einsum("hl,bld->hbd", w, x))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """Logits ``[H, B, out]``; with ``train``, dropout from each head's own stream."""
        h = self.inputs(x)
        p = self.params
        if self.kind == "mlp":
            h = torch.relu(torch.baddbmm(p["b1"].unsqueeze(1), h, p["w1"]))
            if train and self.gens is not None and bool((self.dropout > 0).any()):
                _, b, hidden = h.shape
                h = h * torch.stack([dropout_mask(g, b, hidden, q, h.device)
                                     for g, q in zip(self.gens, self.dropout.tolist(), strict=True)])
        return torch.baddbmm(p["b2"].unsqueeze(1), h, p["w2"])

    def select(self, keep: torch.Tensor) -> HeadBank:
        """A bank holding only the heads ``keep`` (sorted indices), sharing nothing."""
        params = {k: v.detach()[keep].clone() for k, v in self.params.items()}
        gens = None if self.gens is None else [self.gens[i] for i in keep.tolist()]
        return HeadBank(self.kind, params, self.layer[keep], self.dropout[keep], gens)

    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.params.items()}

    def load(self, idx: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Overwrite heads ``idx`` with ``values`` (``[len(idx), ...]`` per parameter)."""
        with torch.no_grad():
            for k, v in self.params.items():
                v[idx] = values[k].to(v.device)


class StackedAdam:
    """Adam on stacked per-head tensors with per-head lr and L2 weight decay (``torch.optim.Adam``
    semantics: decay added to the gradient). Heads step together, so one step count serves."""

    def __init__(self, bank: HeadBank, lr: torch.Tensor, weight_decay: torch.Tensor,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.bank = bank
        self.lr = lr.clone()  # [H], reduced on plateau per head
        self.wd = weight_decay.clone()
        self.betas, self.eps, self.t = betas, eps, 0
        self.m = {k: torch.zeros_like(v) for k, v in bank.params.items()}
        self.v = {k: torch.zeros_like(v) for k, v in bank.params.items()}

    def zero_grad(self) -> None:
        for v in self.bank.params.values():
            v.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every head: torch's fused (single-pass) Adam kernel on per-head
        views, one call per distinct (lr, weight decay)."""
        self.t += 1
        names = [k for k, p in self.bank.params.items() if p.grad is not None]
        step = torch.tensor(float(self.t), device=self.lr.device)
        hyper: dict[tuple[float, float], list[int]] = {}
        for h, key in enumerate(zip(self.lr.tolist(), self.wd.tolist(), strict=True)):
            hyper.setdefault(key, []).append(h)
        for (lr, wd), heads in hyper.items():
            views = [(self.bank.params[k], self.m[k], self.v[k]) for k in names]
            params = [p[h] for p, _, _ in views for h in heads]
            torch._fused_adam_(
                params, [p.grad[h] for p, _, _ in views for h in heads],
                [m[h] for _, m, _ in views for h in heads],
                [v[h] for _, _, v in views for h in heads], [], [step] * len(params),
                lr=lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=wd,
                eps=self.eps, amsgrad=False, maximize=False)

    def select(self, bank: HeadBank, keep: torch.Tensor) -> StackedAdam:
        """The optimiser of the compacted ``bank`` (state of heads ``keep`` carried over)."""
        new = StackedAdam.__new__(StackedAdam)
        new.bank, new.betas, new.eps, new.t = bank, self.betas, self.eps, self.t
        new.lr, new.wd = self.lr[keep].clone(), self.wd[keep].clone()
        new.m = {k: v[keep].clone() for k, v in self.m.items()}
        new.v = {k: v[keep].clone() for k, v in self.v.items()}
        return new

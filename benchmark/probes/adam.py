"""Adam for a bank of stacked probe heads: torch's fused Adam over per-head views of the bank.

Every head keeps its own Adam state and learning rate (halved on plateau head by head,
``torch.optim.Adam`` semantics: L2 weight decay added to the gradient). The heads of a chunk
that share (lr, weight decay) form one group, so a step is a few fused kernel calls, each one
pass over parameters, gradients and state. Written as whole-tensor ops over the stacked
``[H, ...]`` buffers the same update takes seven passes: 0.33 against 1.05 ms per MLP head of
393k parameters on this project's 2-core reference machine (``perf/README.md``).

The groups of a chunk (lists of per-head views of the bank, of the gradient buffers and of the
state) are built once and reused while the bank, the gradient buffers and the learning rates
stay the same; a step calls ``torch.optim.adam.adam`` (the functional form of
``torch.optim.Adam``) once per group: no per-head Python work per step, where
``torch.optim.Adam.step`` looks up every parameter's state at every step.
"""

from __future__ import annotations

import torch
from torch.optim.adam import adam

from mirprobe.probes.heads import HeadBank

_LISTS = ("params", "grads", "exp_avgs", "exp_avg_sqs", "steps")


class HeadAdam:
    """Per-head Adam over the rows of a bank's two buffers (``big`` and ``small``)."""

    def __init__(self, bank: HeadBank, lr: torch.Tensor, weight_decay: torch.Tensor,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self._lr = lr.clone()  # [H]
        self.wd = weight_decay.clone()
        self.betas, self.eps = betas, eps
        self.state: list[list[dict] | None] = [None] * bank.num_heads
        self._opts: dict[tuple, list[dict]] = {}  # a chunk's groups

    @property
    def lr(self) -> torch.Tensor:
        return self._lr

    @lr.setter
    def lr(self, value: torch.Tensor) -> None:
        self._lr = value
        self._opts.clear()  # groups follow the learning rates

    def _head_state(self, i: int, params: list[torch.Tensor]) -> list[dict]:
        if self.state[i] is None:
            self.state[i] = [{"step": torch.zeros((), dtype=torch.float32, device=p.device),
                              "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                             for p in params]
        return self.state[i]

    def _build(self, bank: HeadBank, grads: list[torch.Tensor], a: int, b: int) -> list[dict]:
        lr, wd = self._lr[a:b].tolist(), self.wd[a:b].tolist()
        groups: dict[tuple[float, float], dict[str, list[torch.Tensor]]] = {}
        for k, i in enumerate(range(a, b)):
            params = [bank.big[i], bank.small[i]]  # views: the update writes into the bank
            group = groups.setdefault((lr[k], wd[k]), {n: [] for n in _LISTS})
            for p, g, st in zip(params, (grads[0][k], grads[1][k]), self._head_state(i, params),
                                strict=True):
                for name, t in zip(_LISTS, (p, g, st["exp_avg"], st["exp_avg_sq"], st["step"]),
                                   strict=True):
                    group[name].append(t)
        return [{"lr": lr_, "weight_decay": wd_, **lists}
                for (lr_, wd_), lists in groups.items()]

    @torch.no_grad()
    def step(self, bank: HeadBank, grads: list[torch.Tensor], a: int, b: int) -> None:
        """Update heads ``a:b`` of ``bank`` with their gradients (``grads``: ``[b - a, ...]``
        rows of the two gradient buffers)."""
        key = (a, b, bank.big.data_ptr(), grads[0].data_ptr(), grads[1].data_ptr())
        groups = self._opts.get(key)
        if groups is None:
            groups = self._opts[key] = self._build(bank, grads, a, b)
        beta1, beta2 = self.betas
        for g in groups:
            adam(g["params"], g["grads"], g["exp_avgs"], g["exp_avg_sqs"], [], g["steps"],
                 fused=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=g["lr"],
                 weight_decay=g["weight_decay"], eps=self.eps, maximize=False)

    def select(self, keep: list[int]) -> HeadAdam:
        """The optimiser of the compacted bank (state of heads ``keep`` carried over)."""
        new = HeadAdam.__new__(HeadAdam)
        idx = torch.tensor(keep, dtype=torch.int64, device=self._lr.device)
        new._lr, new.wd = self._lr[idx].clone(), self.wd[idx].clone()
        new.betas, new.eps = self.betas, self.eps
        new.state = [self.state[i] for i in keep]
        new._opts = {}
        return new

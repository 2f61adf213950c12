"""Batched probe heads: many linear / MLP heads trained as stacked tensors, gradients by hand.

Every parameter has a leading head axis ``H``. A bank keeps its heads in two buffers: the large
weight (``w1`` ``[H, hidden, D]`` of an MLP, ``w2`` ``[H, D, out]`` of a linear head) and the
small rest (``alpha``, ``b1``, ``w2``, ``b2`` flattened per head); ``mirprobe.probes.adam``
updates them. Heads that read the same layer sit next to each other:
their first layer is one matrix product ``[H·hidden, D] × [D, B]`` and its weight gradient one
``[H·hidden, B] × [B, D]``. Gradients are written by hand (autograd only differentiates the
task's loss with respect to the logits), into preallocated buffers.

Dropout masks are a counter-based hash of (head seed, step, row, unit): the same for a head
whichever heads it is batched with, with no per-head random stream, and reproduced exactly by
the one-at-a-time reference loop (``mirprobe.probes.plain``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from mirprobe.probes.gemm import grouped_mm, grouped_tmm, mm_into

# The probe grid's key for the learned weighted sum of layers (it enters the heads' seeds, so it
# stays -1); results leave the engine with the layer named mirprobe.record.WEIGHTED.
WEIGHTED = -1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_M32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # below 2**31: products of 32-bit values stay within int64


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


def mask_seed(run_seed: int, spec: HeadSpec) -> int:
    """The key of a head's dropout masks (32 bits)."""
    return (init_seed(run_seed, spec) ^ 0x5EED) & _M32


def _mix32(x):  # noqa: ANN001, ANN202 - int or int64 tensor in [0, 2**32)
    # A 32-bit integer hash (two multiply-xorshift rounds).
    x = x ^ (x >> 16)
    x = (x * _MUL) & _M32
    x = x ^ (x >> 16)
    x = (x * _MUL) & _M32
    return x ^ (x >> 16)


_INDEX: dict[tuple, torch.Tensor] = {}


class Workspace:
    """Reused buffers for a training step's large temporaries. A fresh tensor of a few MB is
    new memory from the operating system on every step (page faults on first touch); on
    MARBLE's MLP grid the per-step allocations cost about a tenth of the step. A buffer keeps
    its memory as heads stop and shapes shrink."""

    def __init__(self) -> None:
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
        """The buffer ``name`` viewed as ``shape`` (grown when too small; its contents are
        whatever the last user left)."""
        key = (name, dtype, str(device))
        size = math.prod(shape)
        if key not in self._bufs or self._bufs[key].numel() < size:
            self._bufs[key] = torch.empty(size, dtype=dtype, device=device)
        return self._bufs[key][:size].view(shape)


def _to_int32(x: torch.Tensor) -> torch.Tensor:
    """int64 values in [0, 2**32) → the int32 tensor of the same 32 bits."""
    return (x - ((x >> 31) << 32)).to(torch.int32)


def _hashed_index(hidden: int, rows: int, device: torch.device) -> torch.Tensor:
    """``[hidden, rows]`` int32 hash of each unit's position ``b · hidden + j`` (cached)."""
    key = (hidden, rows, str(device))
    if key not in _INDEX:
        if len(_INDEX) > 16:
            _INDEX.clear()
        _INDEX[key] = _to_int32(_mix32(torch.arange(rows, device=device) * hidden
                                       + torch.arange(hidden, device=device)[:, None]))
    return _INDEX[key]


def gate_constants(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head ``[h, 1, 1]``: the comparison's limit ``⌊keep · 2**24⌋ − 2**23`` and the
    kept units' multiplier ``1 / keep`` (the same at every step: banks compute them once)."""
    limit = (torch.floor(keep.double() * 2.0**24) - 2**23).float().view(-1, 1, 1)
    return limit, (1.0 / keep).view(-1, 1, 1)


def dropout_gate(seeds: torch.Tensor, step: int, keep: torch.Tensor, hidden: int,
                 rows: int, work: Workspace | None = None,
                 constants: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Inverted-dropout multipliers ``[h, hidden, rows]``: 0 or ``1 / keep``.

    Unit ``j`` of row ``b`` at training step ``step`` is kept when a 32-bit hash ``r`` of
    (head seed, step, ``b · hidden + j``) has its top 24 bits below ``keep · 2**24``
    (``⌊r / 2**8⌋ < ⌊keep · 2**24⌋``): one vectorised draw for all heads. The per-step work is
    one xor and one multiply (Knuth's multiplicative hash, which wraps modulo 2**32 in int32:
    several times faster than int64 on CPUs) and a shift; ``r`` is the signed product plus
    2**31. The comparison is done in float arithmetic, exact on integers below 2**24:
    comparisons into bool tensors and bool → float conversions are several times slower than
    float passes on CPUs (``perf/README.md``). The heads' keys are mixed in Python integers
    (a dozen tensor operations on a few values each cost more than the hash of the units).
    ``constants``: ``gate_constants(keep)``, when the caller keeps them.
    ``test_dropout_gate_matches_a_python_reference`` checks the masks against Python
    integers."""
    work = work or Workspace()
    shape = (len(seeds), hidden, rows)
    mixed = _mix32(step & _M32)
    keys = [_mix32(seed ^ mixed) for seed in seeds.tolist()]
    head = torch.tensor([k - (1 << 32) if k >> 31 else k for k in keys],  # the same 32 bits
                        dtype=torch.int32, device=seeds.device).view(-1, 1, 1)
    u = torch.bitwise_xor(_hashed_index(hidden, rows, seeds.device), head,
                          out=work.get("hash", shape, torch.int32, seeds.device)).mul_(_MUL)
    # ⌊r / 2**8⌋ − 2**23 = u >> 8 (arithmetic shift): kept when limit − (u >> 8) ≥ 1, an
    # integer, so clamping it to [0, 1] gives the mask (keep = 1 keeps every unit).
    limit, inverse = constants or gate_constants(keep)
    gate = work.get("gate", shape, torch.float32, seeds.device).copy_(u.bitwise_right_shift_(8))
    torch.sub(limit, gate, out=gate).clamp_(0, 1)
    return gate.mul_(inverse)


def _uniform(gen: torch.Generator, shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    # torch.nn.Linear's default initialisation (weights and biases).
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound


def shapes(kind: str, num_layers: int, dim: int, out: int, hidden: int) -> dict[str, tuple]:
    """Per-head parameter shapes; the first is the large weight (its own buffer)."""
    if kind == "mlp":
        return {"w1": (hidden, dim), "alpha": (num_layers,), "b1": (hidden,),
                "w2": (hidden, out), "b2": (out,)}
    return {"w2": (dim, out), "alpha": (num_layers,), "b2": (out,)}


def init_head(spec: HeadSpec, run_seed: int, num_layers: int, dim: int, out: int,
              hidden: int) -> dict[str, torch.Tensor]:
    """Initial parameters of one head (also used by the one-at-a-time reference loop).
    ``w1`` is ``[hidden, dim]`` (``nn.Linear`` layout), ``w2`` is ``[in, out]``."""
    g = torch.Generator().manual_seed(init_seed(run_seed, spec))
    p = {"alpha": torch.zeros(num_layers)}
    if spec.kind == "mlp":
        p["w1"] = _uniform(g, (hidden, dim), dim)
        p["b1"] = _uniform(g, (hidden,), dim)
        p["w2"] = _uniform(g, (out, hidden), hidden).T.contiguous()
        p["b2"] = _uniform(g, (out,), hidden)
    else:
        p["w2"] = _uniform(g, (out, dim), dim).T.contiguous()
        p["b2"] = _uniform(g, (out,), dim)
    return p


def _runs(layers: list[int]) -> list[tuple[int, int, int]]:
    """``(start, stop, layer)`` of consecutive heads reading the same input."""
    runs: list[tuple[int, int, int]] = []
    for i, layer in enumerate(layers):
        if runs and runs[-1][2] == layer:
            runs[-1] = (runs[-1][0], i + 1, layer)
        else:
            runs.append((i, i + 1, layer))
    return runs


class HeadBank:
    """Heads of one kind, stacked: ``big`` ``[H, ...]`` and ``small`` ``[H, n]`` buffers."""

    def __init__(self, kind: str, big: torch.Tensor, small: torch.Tensor, layers: list[int],
                 dropout: list[float], seeds: list[int], shape: dict[str, tuple],
                 dtype: torch.dtype = torch.float32, widths: list[int] | None = None) -> None:
        self.kind, self.big, self.small, self.shape, self.dtype = kind, big, small, shape, dtype
        self.layers, self.dropout, self.seeds = list(layers), list(dropout), list(seeds)
        # Per input layer, the columns that can be non-zero (a narrower layer's zero padding
        # is left out of its heads' products; those weights never see a non-zero input).
        self.widths = list(widths) if widths is not None else None
        dev = big.device
        self.work = Workspace()  # a training step's temporaries
        self.eval_work = Workspace()  # an evaluation sub-batch's (up to 128 MB, once per epoch)
        self.seed_t = torch.tensor(self.seeds, dtype=torch.int64, device=dev)
        self.keep_t = torch.tensor([1.0 - p for p in self.dropout], dtype=torch.float32, device=dev)
        self.gate_limit, self.gate_inverse = gate_constants(self.keep_t)  # the same every step
        names = list(shape)[1:]
        sizes = [math.prod(shape[k]) for k in names]
        self.offsets = dict(zip(names, zip(np.cumsum([0, *sizes[:-1]]).tolist(), sizes, strict=True),
                                strict=True))

    @classmethod
    def create(cls, specs: list[HeadSpec], run_seed: int, num_layers: int, dim: int, out: int,
               hidden: int, device: torch.device, dtype: str = "float32",
               widths: list[int] | None = None) -> HeadBank:
        kind = specs[0].kind
        shape = shapes(kind, num_layers, dim, out, hidden)
        heads = [init_head(s, run_seed, num_layers, dim, out, hidden) for s in specs]
        big_name = next(iter(shape))
        big = torch.stack([h[big_name] for h in heads]).to(device)
        small = torch.stack([torch.cat([h[k].reshape(-1) for k in list(shape)[1:]])
                             for h in heads]).to(device)
        return cls(kind, big, small, [s.layer for s in specs], [s.dropout for s in specs],
                   [mask_seed(run_seed, s) for s in specs], shape, DTYPES[dtype], widths)

    @property
    def num_heads(self) -> int:
        return len(self.layers)

    def views(self, big: torch.Tensor, small: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named per-head views of rows of the two buffers (``[h, *shape]`` each)."""
        out = {next(iter(self.shape)): big}
        for k, (off, size) in self.offsets.items():
            out[k] = small[:, off: off + size].view(small.shape[0], *self.shape[k])
        return out

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return self.views(self.big, self.small)

    def _mm(self, fn, *args: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        """A head product in the bank's precision, returned in float32."""
        if self.dtype == torch.float32:
            return fn(*args)
        return fn(*(a.to(self.dtype) for a in args)).float()

    def _mm_into(self, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
        if self.dtype == torch.float32:
            mm_into(out, a, b)
        else:
            out.copy_(self._mm(torch.mm, a, b))

    def width(self, layer: int, dim: int) -> int:
        """Columns of ``layer`` that the heads read (all for the weighted sum)."""
        return dim if self.widths is None or layer == WEIGHTED else self.widths[layer]

    def _inputs(self, p: dict, x: torch.Tensor, runs: list) -> dict[int, torch.Tensor]:
        """Weighted-sum heads' inputs ``Σ_l w_l x_l`` by run start (single layers read ``x``):
        ``[B, n, D]`` in memory, as the grouped products read them; returned as ``[n, B, D]``
        views."""
        return {s: torch.matmul(torch.softmax(p["alpha"][s:e], dim=-1), x).transpose(0, 1)
                for s, e, layer in runs if layer == WEIGHTED}

    def _linear(self, x: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        """``[B, d] × [n, d, out]`` → ``[n, B, out]`` as one product ``[B, d] × [d, n·out]``."""
        n, d, o = w2.shape
        y = self._mm(torch.mm, x, w2.permute(1, 0, 2).reshape(d, n * o))
        return y.view(-1, n, o).transpose(0, 1)

    def forward(self, x: torch.Tensor, a: int = 0, b: int | None = None, step: int | None = None,
                cache: dict | None = None) -> torch.Tensor:
        """Logits ``[h, B, out]`` of heads ``a:b`` on ``[B, L, D]`` standardised features;
        with ``step``, dropout as at that training step; ``cache`` receives what the backward
        pass needs."""
        b = self.num_heads if b is None else b
        p = self.views(self.big[a:b], self.small[a:b])
        runs = _runs(self.layers[a:b])
        xw = self._inputs(p, x, runs)
        rows, h = x.shape[0], b - a
        if self.kind == "linear":
            out = x.new_empty(h, rows, p["b2"].shape[-1])
            for s, e, layer in runs:
                if layer == WEIGHTED:
                    out[s:e] = self._mm(torch.bmm, xw[s], p["w2"][s:e])
                else:
                    d = self.width(layer, x.shape[2])
                    out[s:e] = self._linear(x[:, layer, :d], p["w2"][s:e, :d])
            out += p["b2"][:, None]
            if cache is not None:
                cache.update(p=p, runs=runs, xw=xw)
            return out
        hidden = p["b1"].shape[-1]
        # Reused buffers: fresh ones are new memory with page faults at every step / epoch.
        work = self.work if cache is not None else self.eval_work
        zt = work.get("zt", (h, hidden, rows), x.dtype, x.device)
        for s, e, layer in runs:
            if layer == WEIGHTED:
                # Rows × the heads' own first layers: [B, n, D] → [B, n, hidden].
                zt[s:e] = self._mm(grouped_mm, xw[s].transpose(0, 1), p["w1"][s:e]).permute(1, 2, 0)
            else:
                # The heads of one layer: one product [n·hidden, d] × [d, B].
                d = self.width(layer, x.shape[2])
                self._mm_into(zt[s:e].view(-1, rows), p["w1"][s:e, :, :d].reshape(-1, d),
                              x[:, layer, :d].T)
        zt += p["b1"][:, :, None]
        if cache is None and step is None:  # evaluation: no dropout, no backward pass
            return torch.baddbmm(p["b2"][:, None], zt.relu_().transpose(1, 2), p["w2"])
        # The gate of the backward pass: dropout's multiplier where the unit is active, else 0
        # (sign of the ReLU output, a float pass: cheaper than a bool mask, see dropout_gate).
        ht = zt.relu_()
        if step is not None and any(q > 0 for q in self.dropout[a:b]):
            gate = dropout_gate(self.seed_t[a:b], step, self.keep_t[a:b], hidden, rows, work,
                                (self.gate_limit[a:b], self.gate_inverse[a:b]))
            gate.mul_(torch.sign(ht, out=work.get("active", zt.shape, zt.dtype, zt.device)))
            ht.mul_(gate)
        else:
            gate = torch.sign(ht, out=work.get("gate", zt.shape, zt.dtype, zt.device))
        out = torch.baddbmm(p["b2"][:, None], ht.transpose(1, 2), p["w2"])
        if cache is not None:
            cache.update(p=p, runs=runs, xw=xw, ht=ht, gate=gate)
        return out

    def gradients(self, x: torch.Tensor, d_out: torch.Tensor, cache: dict, g_big: torch.Tensor,
                  g_small: torch.Tensor) -> None:
        """The gradients of heads ``a:b`` (those of ``cache``) given the logits' gradient
        ``d_out`` ``[h, B, out]``, written into ``g_big`` / ``g_small`` (``[h, ...]``)."""
        p, runs, xw = cache["p"], cache["runs"], cache["xw"]
        g = self.views(g_big, g_small)
        g["b2"].copy_(d_out.sum(1))
        g["alpha"].zero_()
        if self.kind == "linear":
            d_in = {}
            for s, e, layer in runs:
                if layer == WEIGHTED:
                    g["w2"][s:e] = self._mm(torch.bmm, xw[s].transpose(1, 2), d_out[s:e])
                    d_in[s] = torch.bmm(d_out[s:e], p["w2"][s:e].transpose(1, 2))  # [n, B, D]
                    continue
                # One product [d, B] × [B, n·out] for the heads of one layer.
                d, (n, rows, o) = self.width(layer, x.shape[2]), d_out[s:e].shape
                dy = d_out[s:e].transpose(0, 1).reshape(rows, n * o)
                gw = self._mm(torch.mm, x[:, layer, :d].T, dy).view(d, n, o)
                g["w2"][s:e, :d] = gw.transpose(0, 1)
                if d < x.shape[2]:
                    g["w2"][s:e, d:] = 0
        else:
            ht, gate = cache["ht"], cache["gate"]
            g["w2"].copy_(torch.bmm(ht, d_out))
            dzt = torch.bmm(p["w2"], d_out.transpose(1, 2),  # [h, hidden, B]
                            out=self.work.get("dzt", gate.shape, gate.dtype, gate.device)).mul_(gate)
            g["b1"].copy_(dzt.sum(2))
            d_in = {}
            for s, e, layer in runs:
                if layer == WEIGHTED:
                    # Hidden units × the heads' own inputs: [hidden, n, B] → [hidden, n, D].
                    g_big[s:e] = self._mm(grouped_mm, dzt[s:e].transpose(0, 1),
                                          xw[s].permute(0, 2, 1)).transpose(0, 1)
                    d_in[s] = self._mm(grouped_tmm, dzt[s:e], p["w1"][s:e])  # [n, B, D]
                else:  # one product [n·hidden, B] × [B, d] for the heads of one layer
                    d = self.width(layer, x.shape[2])
                    self._mm_into(g_big[s:e, :, :d].view(-1, d), dzt[s:e].view(-1, x.shape[0]),
                                  x[:, layer, :d])
                    if d < x.shape[2]:  # padding columns: never updated
                        g_big[s:e, :, d:] = 0
        for s, d in d_in.items():
            # x_w = Σ_l softmax(α)_l x_l: dα = w ⊙ (dw − Σ w dw), dw_l = <d x_w, x_l>.
            e = s + d.shape[0]
            w = torch.softmax(p["alpha"][s:e], dim=-1)
            dw = torch.bmm(d.transpose(0, 1), x.transpose(1, 2)).sum(0)  # [n, L]
            g["alpha"][s:e] = w * (dw - (w * dw).sum(-1, keepdim=True))

    def select(self, keep: list[int]) -> HeadBank:
        """A bank holding only the heads ``keep`` (sorted positions), sharing nothing."""
        idx = torch.tensor(keep, dtype=torch.int64, device=self.big.device)
        return self._of(keep, self.big[idx].clone(), self.small[idx].clone())

    def _of(self, keep: list[int], big: torch.Tensor, small: torch.Tensor) -> HeadBank:
        """The bank of heads ``keep`` of this one, their parameters in ``big`` / ``small``."""
        return HeadBank(self.kind, big, small, [self.layers[i] for i in keep],
                        [self.dropout[i] for i in keep], [self.seeds[i] for i in keep],
                        self.shape, self.dtype, self.widths)

    def compact(self, keep: list[int]) -> HeadBank:
        """The bank of heads ``keep`` (sorted positions) in this bank's own memory: they move to
        the front of its buffers, which this bank then no longer describes. No new memory (a
        fresh copy of the bank is up to 130 MB of page faults on MARBLE's MLP grid), and the
        step's buffers carry over."""
        for j, i in enumerate(keep):  # j <= i: a row moves only onto one already moved
            if i != j:
                self.big[j].copy_(self.big[i])
                self.small[j].copy_(self.small[i])
        bank = self._of(keep, self.big[:len(keep)], self.small[:len(keep)])
        bank.work, bank.eval_work = self.work, self.eval_work
        return bank

    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.big, self.small


def chunks(bank: HeadBank, max_bytes: int | None, rows: int = 0,
           merge: bool = False) -> list[tuple[int, int]]:
    """Ranges of heads trained together: all at once (``max_bytes`` None), or as many as keep
    parameters, gradients and Adam state (4 × 4 bytes per parameter) and the step's activations
    for ``rows`` rows (4 float32 arrays per unit) within ``max_bytes``, heads of one layer
    together where they fit. With ``merge``, the heads of small layers share a chunk: on small
    batches the per-step overhead outweighs the products (measured: 2× on 64-window batches; on
    frame batches of thousands of rows it costs ~25%, so they don't)."""
    h = bank.num_heads
    if max_bytes is None or h == 0:
        return [(0, h)] if h else []
    units = bank.shape["b2"][0] + (bank.shape["b1"][0] if "b1" in bank.shape else 0)
    per_head = 16 * (bank.big[0].numel() + bank.small.shape[1]) + 16 * rows * units
    size = max(1, max_bytes // per_head)
    out: list[tuple[int, int]] = []
    for s, e, _ in _runs(bank.layers):
        for a in range(s, e, size):
            b = min(e, a + size)
            if merge and out and b - out[-1][0] <= size:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
    return out

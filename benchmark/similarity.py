"""Layer similarity: linear CKA between the layers of one model, or of two models, on the same items.

Each item is one vector per layer (the mean of its feature rows). For two layers with item
matrices ``X`` (n × d) and ``Y`` (n × e), linear kernels ``K = XXᵀ`` and ``L = YYᵀ``, CKA is
``HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L))`` with the unbiased HSIC estimator (Song et al. 2012)::

    HSIC(K, L) = [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1] / (n(n−3))

where ``K̃``, ``L̃`` are the kernels with their diagonals set to 0. The biased estimator grows
with the dimension relative to ``n``; the unbiased one does not, so matrices of different sample
sizes compare.

Every term is a sum over items of feature-space products, so nothing n × n is formed and the
items are read in chunks (features larger than memory stream from the cache file): with
``a = ‖x‖²`` and ``s = Σx`` per layer,

- ``tr(K̃L̃) = ‖XᵀY‖²_F − Σ aₓ a_y``,  ``1ᵀK̃1 = ‖sₓ‖² − Σ aₓ``,
- ``1ᵀK̃L̃1 = sₓᵀ XᵀY s_y − (Σ aₓ y)·s_y − (Σ a_y x)·sₓ + Σ aₓ a_y``.

The cross products ``XᵀY`` of all layer pairs may not fit at once: rows of the matrix are done in
blocks that fit ``budget_bytes``, one pass over the items per block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from mirprobe.errors import UserError

Chunks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # [b, L1, D1], [b, L2, D2]


def shared_items(first, second, keys: list[str]) -> tuple[list[tuple[int, int]], list[str]]:  # noqa: ANN001
    """Index pairs into two feature entries of the items ``keys`` that both hold rows for, and
    the keys left out (no features in one entry or the other)."""
    ia, ib = first.index(), second.index()
    pairs, left_out = [], []
    for key in dict.fromkeys(keys):
        i, j = ia.get(key), ib.get(key)
        rows_i = first.rows(i) if i is not None else slice(0, 0)
        rows_j = second.rows(j) if j is not None else slice(0, 0)
        if rows_i.stop > rows_i.start and rows_j.stop > rows_j.start:
            pairs.append((i, j))
        else:
            left_out.append(key)
    return pairs, left_out


def item_chunks(first, second, pairs: list[tuple[int, int]], chunk: int = 256) -> Chunks:  # noqa: ANN001
    """Aligned chunks of item vectors (the mean of each item's rows, float64) of two feature
    entries (``pairs``: item indices into each), read from the entries a chunk at a time."""

    def means(entry, index: list[int]) -> np.ndarray:  # noqa: ANN001
        return np.stack([np.asarray(entry.features[entry.rows(i)], dtype=np.float64).mean(0)
                         for i in index])

    def gen() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for a in range(0, len(pairs), chunk):
            part = pairs[a: a + chunk]
            x = means(first, [i for i, _ in part])
            yield x, (x if second is first else means(second, [j for _, j in part]))
    return gen


class _Self:
    """Per-layer statistics of one side: n, Σa, s, and the HSIC of each layer with itself."""

    def __init__(self, layers: int, dim: int) -> None:
        self.n = 0
        self.asum = np.zeros(layers)
        self.s = np.zeros((layers, dim))
        self.ax = np.zeros((layers, dim))  # Σ a x

    def add(self, x: np.ndarray) -> np.ndarray:
        a = np.einsum("bld,bld->bl", x, x)
        self.n += len(x)
        self.asum += a.sum(0)
        self.s += x.sum(0)
        self.ax += np.einsum("bl,bld->ld", a, x)
        return a


def _hsic(tr: np.ndarray, ksum: np.ndarray, lsum: np.ndarray, kl1: np.ndarray,
          n: int) -> np.ndarray:
    return (tr + ksum * lsum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl1) / (n * (n - 3))


def linear_cka(chunks: Chunks, same: bool, budget_bytes: int = 256 << 20) -> np.ndarray:
    """CKA matrix ``[L1, L2]`` between the layers of the two sides of ``chunks`` (``same``: the
    two sides are one model, and the matrix is symmetric)."""
    x0, y0 = next(iter(chunks()))
    (l1, d1), (l2, d2) = x0.shape[1:], y0.shape[1:]
    per_row = l2 * d1 * d2 * 8
    block = max(1, min(l1, budget_bytes // max(1, per_row)))
    out = np.empty((l1, l2))
    self_x = self_y = None
    for start in range(0, l1, block):
        rows = slice(start, min(l1, start + block))
        out[rows], self_x, self_y = _block(chunks, rows, (l1, d1), (l2, d2))
    # the HSIC of each layer with itself comes from the same sums (tr(K̃K̃) = ‖XᵀX‖² − Σa²)
    return out / np.sqrt(np.outer(self_x, self_y))


def _block(chunks: Chunks, rows: slice, left: tuple[int, int],
           right: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass: the unnormalised HSIC of layers ``rows`` (left) with every right layer, and the
    HSIC of every layer with itself on both sides."""
    (l1, d1), (l2, d2) = left, right
    k = rows.stop - rows.start
    sx, sy = _Self(l1, d1), _Self(l2, d2)
    cross = np.zeros((k, l2, d1, d2))
    aa = np.zeros((k, l2))
    ax_y = np.zeros((k, l2, d2))  # Σ aₓ y
    ay_x = np.zeros((k, l2, d1))  # Σ a_y x
    gx = np.zeros((l1, d1, d1))  # XᵀX of each left layer, for its own HSIC
    gy = np.zeros((l2, d2, d2))
    axx, ayy = np.zeros(l1), np.zeros(l2)
    for x, y in chunks():
        ax, ay = sx.add(x), sy.add(y)
        xb, axb = x[:, rows], ax[:, rows]
        cross += np.einsum("bkd,ble->klde", xb, y, optimize=True)
        aa += axb.T @ ay
        ax_y += np.einsum("bk,ble->kle", axb, y)
        ay_x += np.einsum("bl,bkd->kld", ay, xb)
        gx += np.einsum("bld,ble->lde", x, x, optimize=True)
        gy += np.einsum("bld,ble->lde", y, y, optimize=True)
        axx += (ax * ax).sum(0)
        ayy += (ay * ay).sum(0)
    n = sx.n
    if n < 4:
        raise UserError(f"CKA needs at least 4 items (got {n}); use a task with more items")
    s1, s2 = sx.s[rows], sy.s
    tr = (cross ** 2).sum((2, 3)) - aa
    kl1 = (np.einsum("kd,klde,le->kl", s1, cross, s2, optimize=True) - np.einsum("kle,le->kl", ax_y, s2)
           - np.einsum("kld,kd->kl", ay_x, s1) + aa)
    hs = _hsic(tr, (np.einsum("kd,kd->k", s1, s1) - sx.asum[rows])[:, None],
               (np.einsum("ld,ld->l", s2, s2) - sy.asum)[None, :], kl1, n)
    return hs, _self_hsic(gx, sx, axx, n), _self_hsic(gy, sy, ayy, n)


def _self_hsic(gram: np.ndarray, side: _Self, asq: np.ndarray, n: int) -> np.ndarray:
    """HSIC of each layer with itself: ``1ᵀK̃K̃1 = Σᵢ (xᵢ·s − aᵢ)² = sᵀXᵀXs − 2 (Σ a x)·s + Σ a²``."""
    s = side.s
    tr = (gram ** 2).sum((1, 2)) - asq
    ksum = np.einsum("ld,ld->l", s, s) - side.asum
    kk1 = np.einsum("ld,lde,le->l", s, gram, s) - 2 * np.einsum("ld,ld->l", side.ax, s) + asq
    return _hsic(tr, ksum, ksum, kk1, n)

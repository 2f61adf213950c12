"""Linear CKA (unbiased HSIC) against a direct numpy implementation on n × n kernels; its
invariances; streaming in chunks and in several passes; ``mirprobe similarity`` end to end."""

from __future__ import annotations

import numpy as np
import pytest

from mirprobe.features import FeatureEntry
from mirprobe.similarity import item_chunks, linear_cka, shared_items


def hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    n = len(k)
    k, l = k.copy(), l.copy()  # noqa: E741
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return float((np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3)))


def cka_direct(x: np.ndarray, y: np.ndarray) -> float:
    k, l = x @ x.T, y @ y.T  # noqa: E741
    return hsic_unbiased(k, l) / np.sqrt(hsic_unbiased(k, k) * hsic_unbiased(l, l))


def chunked(x: np.ndarray, y: np.ndarray, size: int):  # noqa: ANN201
    return lambda: ((x[i: i + size], y[i: i + size]) for i in range(0, len(x), size))


def features(n=60, seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4, 7))
    x[:, 1] += x[:, 0] @ rng.normal(size=(7, 7))  # related layers
    x[:, 3] = 3.0 + 0.1 * x[:, 3]  # a large mean: centring matters
    y = rng.normal(size=(n, 3, 5))
    y[:, 0, :4] += 2 * x[:, 1, :4]
    return x, y


@pytest.mark.parametrize(("size", "budget"), [(60, 1 << 30), (7, 1 << 30), (9, 1)])
def test_cka_equals_direct_numpy(size, budget) -> None:
    """One chunk, many chunks, and one pass per layer (a budget too small for two)."""
    x, y = features()
    ref = np.array([[cka_direct(x[:, i], y[:, j]) for j in range(3)] for i in range(4)])
    got = linear_cka(chunked(x, y, size), False, budget)
    np.testing.assert_allclose(got, ref, atol=1e-10)
    assert got[1, 0] > 0.5 > abs(got[2, 1])


def test_cka_is_one_with_itself_and_invariant_to_rotation_and_scale() -> None:
    x, _ = features(seed=1)
    same = linear_cka(chunked(x, x, 13), True)
    np.testing.assert_allclose(np.diag(same), 1.0, atol=1e-12)
    np.testing.assert_allclose(same, same.T, atol=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(7, 7)))
    moved = 2.5 * np.einsum("nld,de->nle", x, q)  # an orthogonal transform and a scale
    np.testing.assert_allclose(linear_cka(chunked(x, moved, 11), False), same, atol=1e-10)
    shifted = x * np.array([1.0, 1.0, 1.0, 1.0])[None, :, None]
    shifted[:, 0, 0] *= 5.0  # a non-isotropic scaling changes it
    assert abs(linear_cka(chunked(x, shifted, 11), False)[0, 0] - 1.0) > 1e-3


def test_unbiased_cka_of_unrelated_wide_features_is_near_zero() -> None:
    """Independent features with more dimensions than items: the biased estimator is far from 0
    (it grows with d/n), the unbiased one is not."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 1, 200)), rng.normal(size=(50, 1, 200))
    assert abs(linear_cka(chunked(x, y, 16), False)[0, 0]) < 0.05


def test_items_from_entries_on_disk_and_missing_items_listed(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 4, 30)
    lengths[5] = 0  # an item that failed: left out and named
    offsets = np.r_[0, np.cumsum(lengths)]
    rows = rng.normal(size=(offsets[-1], 3, 6)).astype(np.float16)
    np.save(tmp_path / "f.npy", rows)
    entry = FeatureEntry.from_arrays(rows, offsets, frame_rate=1.0)
    disk = FeatureEntry(np.load(tmp_path / "f.npy", mmap_mode="r"), entry.offsets, entry.meta)
    pairs, left_out = shared_items(disk, disk, disk.items)
    assert left_out == [disk.items[5]] and len(pairs) == 29
    means = np.stack([rows[offsets[i]: offsets[i + 1]].astype(np.float64).mean(0)
                      for i, _ in pairs])
    ref = np.array([[cka_direct(means[:, i], means[:, j]) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(linear_cka(item_chunks(disk, disk, pairs, chunk=4), True), ref,
                               atol=1e-10)


def test_similarity_command_writes_matrix_and_heatmap(tmp_path, capsys) -> None:  # noqa: ANN001
    import pandas as pd

    from mirprobe.cli import main

    common = ["progress=false", "device=cpu", "extract.num_workers=0", f"work_dir={tmp_path}",
              "tasks=[key]", "synthetic.size=tiny"]
    assert main(["similarity", "handcrafted", "--task", "key", *common]) == 0
    out = tmp_path / "similarity" / "handcrafted_key_all"
    one = pd.read_csv(out / "cka.csv", index_col=0)
    np.testing.assert_allclose(np.diag(one.to_numpy()), 1.0, atol=1e-6)
    assert (out / "cka.png").exists() and (out / "cka.svg").exists()
    assert main(["similarity", "handcrafted", "random", "--task", "key", "--split", "test",
                 *common]) == 0
    two = pd.read_csv(tmp_path / "similarity" / "handcrafted_vs_random_key_test" / "cka.csv",
                      index_col=0)
    assert list(two.index) == list(one.index) and two.shape[1] > 1
    assert "CKA on" in capsys.readouterr().out
    assert main(["similarity", "handcrafted", "--task", "nope", *common]) == 2
    assert "--task 'nope' is not a task of the run config" in capsys.readouterr().err

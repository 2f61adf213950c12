"""Handcrafted features: librosa window by window (the implementation before ``mirprobe.dsp``)
against ``HandcraftedExtractor.forward`` (``mirprobe.dsp``, batched in torch).

    python perf/handcrafted.py                        # 200 windows of 5 s, batches of 2 and 16
    python perf/handcrafted.py --threads 0 --rounds 5  # each library's own thread count
    python perf/handcrafted.py --cold                 # also the first window with an empty numba cache

Both paths run on the same windows (harmonic tones with noise, 16 kHz) in the same process
with the same number of threads (torch's and numpy's BLAS), rounds interleaved; the fastest
round of each counts. The script prints audio seconds per second, the ratio to librosa, and
the largest deviation of the new features from librosa's per group. Then, each in a fresh
process, the cost of the first window (imports after numpy and torch included): librosa loading
its numba cache (or, with ``--cold``, compiling it) against mirprobe.dsp.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from mirprobe.models.handcrafted import GROUPS, HandcraftedExtractor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # librosa_reference
from librosa_reference import SR, librosa_window  # noqa: E402

FIRST_WINDOW = """
import sys, time
import numpy as np, torch
sys.path.insert(0, {here!r})
t = time.perf_counter()
if sys.argv[1] == "librosa":
    from handcrafted import librosa_forward
    librosa_forward(np.zeros((1, 80000), dtype=np.float32))
else:
    from mirprobe.models.handcrafted import HandcraftedExtractor
    HandcraftedExtractor().forward(torch.zeros(1, 80000))
print(time.perf_counter() - t)
"""


def librosa_forward(waves: np.ndarray) -> np.ndarray:
    """The extractor's forward pass before mirprobe.dsp: librosa on one window at a time."""
    frames = int(waves.shape[-1] * 50 / SR)
    return np.stack([librosa_window(w, frames) for w in waves], axis=1)


def make_windows(n: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(80, 600, size=(n, 1))
    tones = sum(0.4 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
    return (tones + 0.01 * rng.standard_normal((n, len(t)))).astype(np.float32)


def timed(run: Callable[[np.ndarray], np.ndarray], waves: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = [run(waves[i : i + batch]) for i in range(0, len(waves), batch)]
    return time.perf_counter() - start, np.concatenate(out, axis=1)


def first_window(path: str, cold: bool) -> float:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        snippet = FIRST_WINDOW.format(here=os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run([sys.executable, "-c", snippet, path], env=env, check=True,
                             capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, default=200)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 16])
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads (0: each library's default, as an extraction run)")
    p.add_argument("--rounds", type=int, default=3, help="the fastest round of each path counts")
    p.add_argument("--cold", action="store_true", help="also time the first window on an empty numba cache")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # numpy's BLAS (librosa's matmuls) on the same cores
    waves = make_windows(args.windows, args.seconds)
    ex = HandcraftedExtractor()
    paths = {"librosa, window by window": (librosa_forward, 1)}
    for b in args.batch_sizes:
        paths[f"mirprobe.dsp, batch {b}"] = (lambda w: ex.forward(torch.from_numpy(w)).numpy(), b)
    best: dict[str, float] = dict.fromkeys(paths, float("inf"))
    outs = {}
    for run, b in paths.values():  # warm-up: imports, numba cache, filter banks
        run(waves[:b])
    for _ in range(args.rounds):
        for name, (run, b) in paths.items():
            took, outs[name] = timed(run, waves, b)
            best[name] = min(best[name], took)
    audio = args.windows * args.seconds
    base = best["librosa, window by window"]
    threads = (f"{args.threads} thread(s)" if args.threads
               else f"default threads (torch {torch.get_num_threads()})")
    print(f"{args.windows} windows × {args.seconds:g} s ({audio:g} s of audio), {threads}, "
          f"best of {args.rounds}")
    for name, took in best.items():
        print(f"  {name:28s} {took:7.3f} s  {audio / took:8.0f} audio s/s  {base / took:6.1f}×")
    ref, ours = outs["librosa, window by window"], outs[f"mirprobe.dsp, batch {args.batch_sizes[0]}"]
    devs = ", ".join(f"{g} {np.abs(ours[i] - ref[i]).max():.1e}" for i, g in enumerate(GROUPS))
    print(f"  max |mirprobe.dsp − librosa| per group: {devs}")
    for cold in [False, True] if args.cold else [False]:
        label = "empty numba cache" if cold else "warm numba cache"
        old, new = first_window("librosa", cold), first_window("dsp", cold)
        print(f"  first window in a fresh process ({label}): librosa {old:.2f} s, mirprobe.dsp {new:.2f} s")


if __name__ == "__main__":
    main()

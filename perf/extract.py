"""Extraction speed and memory: mirprobe's batched extraction against a naive per-file loop.

The naive loop is how MARBLE v1 extracts: one file at a time, a new resampler built for every
file, the track cut into windows run one by one (batch size 1) in the main process. mirprobe's
path is ``FeatureStore.extract``: worker processes decode and resample, windows of equal length
are batched across tracks, one forward pass per batch. Both produce the clip view (each window's
hidden states pooled over frames) of the same model on the same audio on the same machine, in
one run. Peak memory is measured in a fresh process per track for a 10 s and a 10 min track.

    python perf/extract.py                       # tiny + random MERT-v1-95M
    python perf/extract.py --models tiny --tracks 8 --seconds 20 --batch-size 16
    python perf/extract.py --models musicnn-mtt --threads 1 --dtypes float32 --skip-memory
    python perf/extract.py --models mert-v1-95m musicnn-mtt --tracks 2 --seconds 10 --repeat 5 \
        --skip-memory --threads 1
    python perf/extract.py --models mert-v1-95m muq-large musicfm-25hz dasheng-base omar-rq-base \
        --tracks 1 --repeat 1 --dtypes float32 --skip-memory   # the published sizes, random-init

Besides the ratio, each row gives mirprobe's audio seconds per second and its arithmetic rate
(the model's FLOPs per audio second, counted by torch's FlopCounterMode, times that speed), every
round's time (min / median / max) and the ratio within each round's pair. The naive loop runs
the stock PyTorch routes (``plain_products``); the ceiling is that of the model's products by
their fastest routes on this CPU (``perf/ceiling.py``). Each precision's forward pass is also
compared with the stock float32 one on the same two windows (no resampler or cache between
them), against the documented tolerance. On a loaded machine ``--threads 1`` gives the steadier
ratios (at two threads each parallel region waits for a descheduled thread).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from ceiling import record, route_times  # perf/ceiling.py, beside this script
from scale import flops_per_audio_second  # perf/scale.py, beside this script
from scipy.signal import resample_poly

from mirprobe.extraction import batch_windows
from mirprobe.features import FeatureStore
from mirprobe.models import load_model
from mirprobe.models.base import Extractor
from mirprobe.models.fastops import plain_products

FILE_RATE = 44100  # tracks are written as CD audio: stereo 16-bit 44.1 kHz, so both paths resample


def make_track(path: Path, seconds: float, seed: int) -> str:
    """A stereo 44.1 kHz WAV with a few drifting partials and noise (content does not matter)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FILE_RATE)
    t = np.arange(n) / FILE_RATE
    f0 = rng.uniform(110, 440)
    mono = sum(np.sin(2 * np.pi * f0 * k * t * (1 + 0.001 * np.sin(t))) / k for k in (1, 2, 3))
    stereo = np.stack([mono, np.roll(mono, 7)], axis=1) * 0.2 + 0.01 * rng.standard_normal((n, 2))
    sf.write(path, stereo.astype(np.float32), FILE_RATE, subtype="PCM_16")
    return str(path)


def naive_extract(extractor: Extractor, paths: list[str], window_s: float) -> list[np.ndarray]:
    """MARBLE v1 style: per file decode, new resampler, sequential windows at batch size 1, the
    stock PyTorch routes of every product (``plain_products``)."""
    with plain_products():
        return _naive(extractor, paths, window_s)


def _naive(extractor: Extractor, paths: list[str], window_s: float) -> list[np.ndarray]:
    out = []
    sr = extractor.sample_rate
    window = int(round(window_s * sr))
    for path in paths:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
        g = gcd(sr, file_sr)
        wave = resample_poly(data.mean(axis=1), sr // g, file_sr // g).astype(np.float32)  # filter built per file
        rows = []
        for start in range(0, len(wave), window):
            chunk = wave[start:start + window]
            if extractor.num_frames(len(chunk)) < 1:
                continue
            x = torch.from_numpy(np.ascontiguousarray(extractor.prepare(chunk), dtype=np.float32))[None]
            with torch.no_grad():
                rows.append(extractor.pool(extractor.forward(x))[:, 0].numpy())
        out.append(np.stack(rows))
    return out


def mirprobe_extract(extractor: Extractor, paths: list[str], root: Path, *, batch_size: int,
                     workers: int, dtype: str = "float32") -> np.ndarray:
    entry = FeatureStore(root).extract(extractor, paths, view="clip", batch_size=batch_size,
                                       num_workers=workers, dtype=dtype, progress=False)
    return np.asarray(entry.features)


def build(model: str) -> Extractor:
    """A random-init architecture (``tiny``, ``mert-v1-95m``, ``muq-large``, ``dasheng-base``, …)
    or a model config (``musicnn-mtt``)."""
    from mirprobe.config import available
    from mirprobe.models.random import RandomExtractor, architectures

    if model in architectures() or model not in available("models"):
        extractor = RandomExtractor(architecture=model)  # a random-init copy, no weights needed
    else:
        extractor = load_model(model)
    extractor.forward(torch.zeros(1, extractor.sample_rate))  # warm-up: first-call costs out of timings
    return extractor


CPU_TIMES: dict[str, list[float]] = {}  # process CPU seconds of each timed path (a loaded machine's
# wall time says little; CPU time at one thread approximates an idle core's wall time)


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    CPU_TIMES.setdefault(fn.__name__ + str(kwargs.get("dtype", "")), []).append(time.process_time() - cpu)
    return time.perf_counter() - start, result


def speed(extractor: Extractor, model: str, paths: list[str], work: Path,
          args: argparse.Namespace) -> list[dict]:
    """The naive fp32 loop and mirprobe at each precision, ``--repeat`` rounds side by side (the
    fastest round of each counts: the machine is shared). Deviations are relative to the largest
    magnitude: from the naive fp32 features (includes the different resamplers) and from
    mirprobe's own fp32 features (the precision alone)."""
    # warm-up of both paths (imports, allocator) on one track, untimed
    naive_extract(extractor, paths[:1], extractor.context_s)
    for dtype in args.dtypes:
        mirprobe_extract(extractor, paths[:1], work / f"warm-{model}-{dtype}",
                         batch_size=args.batch_size, workers=args.workers, dtype=dtype)
    times: dict[str, list[float]] = {"naive": [], **{d: [] for d in args.dtypes}}
    feats: dict[str, np.ndarray] = {}
    for r in range(args.repeat):
        t, naive = timed(naive_extract, extractor, paths, extractor.context_s)
        times["naive"].append(t)
        feats["naive"] = np.concatenate(naive)
        for dtype in args.dtypes:
            t, feats[dtype] = timed(mirprobe_extract, extractor, paths,
                                    work / f"features-{model}-{dtype}-{r}",
                                    batch_size=args.batch_size, workers=args.workers, dtype=dtype)
            times[dtype].append(t)
    scale = float(np.abs(feats["naive"]).max())

    def dev(a: np.ndarray, b: np.ndarray | None) -> float:
        if b is None or a.shape != b.shape:
            return float("nan")
        return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max()) / scale

    t_naive = min(times["naive"])
    return [{"dtype": d, "naive_s": t_naive, "mirprobe_s": min(times[d]),
             "ratio": t_naive / min(times[d]), "dev_naive": dev(feats[d], feats["naive"]),
             "dev_fp32": dev(feats[d], feats.get("float32")), "windows": len(feats["naive"]),
             "rounds_naive": times["naive"], "rounds": times[d],
             "paired": [n / m for n, m in zip(times["naive"], times[d], strict=True)]}
            for d in args.dtypes]


TOLERANCE = {"float32": 1e-5, "bfloat16": 5e-2}  # of the routes against the stock float32 forward
# pass, relative to each layer's largest magnitude (perf/README.md; tests/test_fastops.py; the
# bfloat16 one is MERT-v1-95M's: a random tiny model's stock bfloat16 forward is further off)


def forward_deviation(extractor: Extractor, path: str,
                      dtypes: list[str]) -> dict[str, tuple[float, float]]:
    """The largest per-layer deviation of mirprobe's forward pass (fast routes, each precision)
    from the stock float32 one (``plain_products``) on the first two windows of ``path``, frame
    level, relative to each layer's largest magnitude: the routes and the precision alone, no
    resampler or cache in between; beside it, the stock routes' own at that precision."""
    data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    g = gcd(extractor.sample_rate, file_sr)
    wave = resample_poly(data.mean(axis=1), extractor.sample_rate // g, file_sr // g)
    n = min(int(round(extractor.context_s * extractor.sample_rate)), len(wave) // 2)
    waves = torch.from_numpy(np.stack([extractor.prepare(wave[i * n:(i + 1) * n]) for i in range(2)])).float()
    with torch.inference_mode():
        with plain_products():
            ref = extractor.forward(waves).float()
        out = {}
        for d in dtypes:
            with torch.autocast("cpu", dtype=getattr(torch, d), enabled=d != "float32"):
                fast = extractor.forward(waves).float()
                with plain_products():
                    stock = extractor.forward(waves).float()
            out[d] = (_largest(fast, ref), _largest(stock, ref))
    return out


def _largest(a: torch.Tensor, ref: torch.Tensor) -> float:
    return max(float((a[i] - ref[i]).abs().max() / ref[i].abs().max().clamp_min(1e-30))
               for i in range(len(ref)))


def spread(rounds: list[float]) -> str:
    """min / median / max of a path's rounds."""
    r = sorted(rounds)
    return f"{r[0]:.2f} / {r[len(r) // 2]:.2f} / {r[-1]:.2f}"


def ceiling(model: str, extractor: Extractor, rows: list[dict], rounds: int) -> None:
    """Print the products ceiling (``perf/ceiling.py``) of the naive loop's forward pass (one
    window) at each precision beside the measured speed-up."""
    calls, share = record(extractor.forward, torch.randn(1, int(extractor.context_s * extractor.sample_rate)),
                          rounds)
    times = route_times(calls, sorted({"float32", *(r["dtype"] for r in rows)}), rounds)
    for r in rows:
        t = times[r["dtype"]]
        gain = t["stock"] / t["best"]
        kinds = ", ".join(f"{k} {v * 1e3:.0f}" for k, v in t.items() if ":" in k)
        print(f"  {model} {r['dtype']}: products {share:.0%} of the stock fp32 forward pass; by their "
              f"fastest routes {t['best'] * 1e3:.0f} ms per window ({kinds}) against "
              f"{t['stock'] * 1e3:.0f} ms stock fp32: {gain:.2f}x -> ceiling {gain / share:.2f}x "
              f"(measured {r['ratio']:.2f}x)")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(model: str, path: str, root: str, batch_size: str) -> None:
    """Run in a fresh process: resident memory after loading, and its peak while extracting one track."""
    extractor = build(model)
    extractor.forward(torch.zeros(2, int(extractor.context_s * extractor.sample_rate)))
    base = _status_mb("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    FeatureStore(Path(root)).extract(extractor, [path], view="clip", batch_size=int(batch_size),
                                     num_workers=0, progress=False)
    print(json.dumps({"before_mb": base, "after_mb": _status_mb("VmHWM:")}))


def memory(model: str, path: str, work: Path, batch_size: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", model, path, str(work / f"mem-{Path(path).stem}"),
           str(batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["tiny", "mert-v1-95m"])
    p.add_argument("--tracks", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--batch-size", type=int, default=batch_windows("auto", torch.device("cpu")),
                   help="windows per forward pass (default: extract.batch_size=auto on CPU)")
    p.add_argument("--workers", type=int, default=0,
                   help="decode workers (0, mirprobe's default, is fastest on a 2-core CPU)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the fastest of each path counts")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"],
                   help="mirprobe's extract.dtype values to measure (the naive loop is float32)")
    p.add_argument("--memory-model", default="tiny")
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--memory-batch", type=int, default=2,
                   help="windows per batch when measuring memory (2: a 10 s track fills a batch)")
    p.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; {args.tracks} tracks x {args.seconds:g} s "
          f"(44.1 kHz stereo WAV), batch {args.batch_size}, {args.workers} workers")
    with tempfile.TemporaryDirectory(prefix="mirprobe-bench-") as tmp:
        work = Path(tmp)
        paths = [make_track(work / f"t{i}.wav", args.seconds, i) for i in range(args.tracks)]
        print(f"{'model':<14} {'precision':<9} {'naive fp32 (s)':>14} {'mirprobe (s)':>13} "
              f"{'speed-up':>9} {'windows':>8} {'max rel dev: naive fp32':>24} {'mirprobe fp32':>14}")
        bounds = []
        for model in args.models:
            extractor = build(model)
            CPU_TIMES.clear()  # each model's own CPU times
            rows = speed(extractor, model, paths, work, args)
            with plain_products():  # the model's own operations (a route may do fewer: MusiCNN's)
                flops = flops_per_audio_second(extractor)
            devs = forward_deviation(extractor, paths[0], args.dtypes)
            bounds.append((model, extractor, rows))
            audio = args.tracks * args.seconds
            for r in rows:
                print(f"{model:<14} {r['dtype']:<9} {r['naive_s']:>14.2f} {r['mirprobe_s']:>13.2f} "
                      f"{r['ratio']:>8.2f}x {r['windows']:>8d} {r['dev_naive']:>24.1e} "
                      f"{r['dev_fp32']:>14.1e}")
                paired = sorted(r["paired"])
                print(f"  rounds min / median / max (s): naive {spread(r['rounds_naive'])}, mirprobe "
                      f"{spread(r['rounds'])}; ratio of each round's pair {paired[0]:.2f}-{paired[-1]:.2f}x "
                      f"(median {paired[len(paired) // 2]:.2f}x)")
                print(f"  {model} {r['dtype']}: {flops / 1e9:.2f} GFLOP per audio second; mirprobe "
                      f"{audio / r['mirprobe_s']:.1f} audio s/s ({flops * audio / r['mirprobe_s'] / 1e9:.0f} "
                      f"GFLOP/s), naive {audio / r['naive_s']:.1f} audio s/s; per CPU second: mirprobe "
                      f"{audio / min(CPU_TIMES['mirprobe_extract' + r['dtype']]):.1f}, naive "
                      f"{audio / min(CPU_TIMES['naive_extract']):.1f} audio s")
                d, stock = devs[r["dtype"]]
                tol = TOLERANCE[r["dtype"]]
                print(f"  {model} {r['dtype']}: forward pass vs the stock float32 one (same windows, frame "
                      f"level, largest per layer): fast routes {d:.1e}, stock routes {stock:.1e}; "
                      f"tolerance {tol:.0e}: {'within' if d < tol else 'OUTSIDE'}")
        print(f"load average after the timed rounds {os.getloadavg()[0]:.1f}")
        print("\nceiling: products (convolutions, linears, attention) by their fastest routes, as if "
              "nothing else took time (ms per window)")
        for model, extractor, rows in bounds:
            ceiling(model, extractor, rows, args.repeat)
        if args.skip_memory:
            return
        short = make_track(work / "short.wav", 10.0, 100)
        long = make_track(work / "long.wav", args.long_minutes * 60, 101)
        print(f"\nresident memory, {args.memory_model}, clip view, batch {args.memory_batch}, "
              "fresh process per track (MB):")
        for label, path in (("10 s", short), (f"{args.long_minutes:g} min", long)):
            m = memory(args.memory_model, path, work, args.memory_batch)
            print(f"  {label:>7}: model loaded {m['before_mb']:.0f}, peak while extracting {m['after_mb']:.0f} "
                  f"(+{m['after_mb'] - m['before_mb']:.0f})")


if __name__ == "__main__":
    main()

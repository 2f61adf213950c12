"""Scale-out: one process against two over the same items, and GPU throughput against the FLOP bound.

CPU (default): the same tracks (stereo 44.1 kHz WAV, so every process decodes and resamples)
are extracted into a fresh cache three times — one process with every core, one process with
one thread, two processes with one thread each (torchrun, gloo) — and the caches are compared
byte for byte. Throughput is seconds of audio per second of wall time, timed inside the
processes between two barriers (start-up and imports excluded; they are reported apart).

    python perf/scale.py                          # small random model, 16 × 30 s
    python perf/scale.py --model mert-v1-95m --tracks 8 --seconds 20

GPU (``--gpu``, on a machine with CUDA): the random-init MERT-v1-95M architecture, bf16 autocast.
``compute``: forward passes on batches of 5 s windows already on the device (the model alone);
``pipeline``: ``FeatureStore.extract`` from WAV files with decode/resample workers (the real
path). Both are compared with the FLOP bound: the device's peak (``--peak-tflops``, default
989 TFLOP/s, H100 SXM dense bf16) divided by the model's FLOPs per second of audio, counted
with ``torch.utils.flop_counter`` (about 21 GFLOP for MERT-v1-95M: convolutions 8, transformer 13).

    python perf/scale.py --gpu --tracks 256 --seconds 30 --workers 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
FILE_RATE = 44100


def make_tracks(folder: Path, n: int, seconds: float) -> list[str]:
    """Stereo 16-bit 44.1 kHz WAVs of a few partials and noise (content does not matter)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        t = np.arange(int(seconds * FILE_RATE)) / FILE_RATE
        f0 = rng.uniform(110, 440)
        mono = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)) * 0.2
        stereo = np.stack([mono, np.roll(mono, 7)], axis=1) + 0.01 * rng.standard_normal((len(t), 2))
        path = folder / f"track{i:04d}.wav"
        sf.write(path, stereo.astype(np.float32), FILE_RATE, subtype="PCM_16")
        paths.append(str(path))
    return paths


def build(model: str) -> object:
    if model == "small":
        from mirprobe.models.random import SmallRandomExtractor

        return SmallRandomExtractor()
    from mirprobe.models.mert import random_architecture

    return random_architecture(model, seed=0)


# --------------------------------------------------------------------------- worker (one rank)


def worker(ns: argparse.Namespace) -> None:
    """One rank: extract the entry with every other rank; rank 0 writes the timings."""
    from mirprobe.distributed import launch
    from mirprobe.features import FeatureStore

    dist = launch("auto", "auto", "cpu")  # one process, or what torchrun started
    keys = json.loads(Path(ns.keys).read_text())
    extractor = build(ns.model)
    dist.barrier()
    start = time.perf_counter()
    entry = FeatureStore(Path(ns.root)).extract(
        extractor, keys, batch_size=ns.batch_size, num_workers=ns.workers, chunk_items=ns.chunk_items,
        progress=False, rank=dist.rank, world_size=dist.world_size,
        barrier=dist.barrier if dist.world_size > 1 else None)
    seconds = time.perf_counter() - start
    if dist.is_main:
        assert entry is not None
        Path(ns.report).write_text(json.dumps({"seconds": seconds, "world_size": dist.world_size,
                                               "threads": torch.get_num_threads(), "entry": str(entry.path)}))


def run_case(name: str, procs: int, threads: int, keys_file: Path, work: Path,
             ns: argparse.Namespace) -> dict:
    report = work / f"{name}.json"
    args = [str(Path(__file__).resolve()), "--worker", "--keys", str(keys_file), "--root",
            str(work / name), "--report", str(report), "--model", ns.model,
            "--batch-size", str(ns.batch_size), "--workers", str(ns.workers),
            "--chunk-items", str(ns.chunk_items)]
    cmd = ([sys.executable, *args] if procs == 1 else
           [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), *args])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    out = json.loads(report.read_text())
    out["wall_s"] = time.perf_counter() - started
    out["name"] = name
    return out


def same_cache(a: Path, b: Path) -> tuple[bool, float]:
    """(byte-identical, largest absolute difference of the features)."""
    same = all((a / f).read_bytes() == (b / f).read_bytes() for f in ("features.npy", "offsets.npy", "failed.json"))
    fa = np.load(a / "features.npy", allow_pickle=False).astype(np.float32)
    fb = np.load(b / "features.npy", allow_pickle=False).astype(np.float32)
    return same, float(np.abs(fa - fb).max()) if fa.shape == fb.shape else float("nan")


def cpu_benchmark(ns: argparse.Namespace) -> dict:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        keys = make_tracks(work / "audio", ns.tracks, ns.seconds)
        keys_file = work / "keys.json"
        keys_file.write_text(json.dumps(keys))
        audio_s = ns.tracks * ns.seconds
        cases = [("one-process-all-cores", 1, cores), ("one-process-one-thread", 1, 1),
                 ("two-processes-one-thread", 2, 1)]
        results = [run_case(name, procs, threads, keys_file, work, ns) for name, procs, threads in cases]
        ref = Path(results[1]["entry"])
        for r in results:
            r["identical_to_one_thread"], r["max_abs_diff"] = same_cache(ref, Path(r["entry"]))
            r["audio_s_per_s"] = audio_s / r["seconds"]
            r.pop("entry")
    print(f"{ns.tracks} tracks × {ns.seconds:g} s = {audio_s:g} s of audio, model {ns.model}, {cores} cores")
    print(f"{'case':28s} {'procs':>5s} {'thr':>4s} {'extract s':>10s} {'audio s/s':>10s} {'wall s':>8s}  same cache as one process, one thread")
    for r in results:
        same = "byte-identical" if r["identical_to_one_thread"] else f"differs (max {r['max_abs_diff']:.2g})"
        print(f"{r['name']:28s} {r['world_size']:5d} {r['threads']:4d} {r['seconds']:10.2f} "
              f"{r['audio_s_per_s']:10.1f} {r['wall_s']:8.2f}  {same}")
    return {"audio_s": audio_s, "model": ns.model, "cores": cores, "cases": results}


# --------------------------------------------------------------------------- GPU


def flops_per_audio_second(extractor: object, seconds: float = 5.0) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    wave = torch.randn(1, int(seconds * extractor.sample_rate))  # type: ignore[attr-defined]
    # no_grad, not inference_mode: weight-norm parametrisations fail under the counter in the latter
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        extractor.forward(wave)  # type: ignore[attr-defined]
    return counter.get_total_flops() / seconds


def gpu_benchmark(ns: argparse.Namespace) -> dict:
    if not torch.cuda.is_available():
        sys.exit("--gpu needs a CUDA device")
    from mirprobe.extraction import autocast
    from mirprobe.features import FeatureStore

    extractor = build(ns.model)
    flops = flops_per_audio_second(extractor)  # on CPU, before moving
    bound = ns.peak_tflops * 1e12 / flops
    device = torch.device("cuda")
    extractor.to(device)  # type: ignore[attr-defined]
    if ns.compile:
        from mirprobe.extraction import compile_extractor

        compile_extractor(extractor)
    window = int(5 * extractor.sample_rate)  # type: ignore[attr-defined]
    compute = {}
    for batch in ns.gpu_batches:
        waves = torch.randn(batch, window, device=device)
        with torch.inference_mode(), autocast(device, "bfloat16"):
            for _ in range(3):  # warm-up (allocator, kernels, compilation)
                extractor.forward(waves)  # type: ignore[attr-defined]
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(ns.repeats):
                extractor.forward(waves)  # type: ignore[attr-defined]
            torch.cuda.synchronize()
        compute[batch] = batch * 5 * ns.repeats / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        keys = make_tracks(Path(tmp) / "audio", ns.tracks, ns.seconds)
        store = FeatureStore(Path(tmp) / "features")
        store.extract(extractor, keys[:2], batch_size=ns.batch_size, num_workers=0, progress=False)  # warm-up
        start = time.perf_counter()
        store.extract(extractor, keys, batch_size=ns.batch_size, num_workers=ns.workers,
                      chunk_items=ns.chunk_items, dtype="bfloat16", progress=False)
        pipeline = ns.tracks * ns.seconds / (time.perf_counter() - start)
    name = torch.cuda.get_device_name()
    print(f"{name}: {ns.model} random init, {flops / 1e9:.1f} GFLOP per audio second; "
          f"bound at {ns.peak_tflops:g} TFLOP/s: {bound:,.0f} audio s/s")
    for batch, rate in compute.items():
        print(f"  compute, batch {batch:4d} × 5 s: {rate:10,.0f} audio s/s ({rate / bound:.0%} of the bound)")
    print(f"  pipeline (WAV 44.1 kHz stereo, {ns.workers} workers, batch {ns.batch_size}): "
          f"{pipeline:,.0f} audio s/s ({pipeline / bound:.0%} of the bound)")
    return {"device": name, "model": ns.model, "gflop_per_audio_s": flops / 1e9, "bound_audio_s_per_s": bound,
            "compute_audio_s_per_s": compute, "pipeline_audio_s_per_s": pipeline}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small", help="small (random HuBERT-style) or an architecture, e.g. mert-v1-95m")
    p.add_argument("--tracks", type=int, default=16)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=0, help="decode/resample workers per process")
    p.add_argument("--chunk-items", type=int, default=2)
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--gpu", action="store_true", help="GPU throughput against the FLOP bound")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="device peak (dense bf16)")
    p.add_argument("--gpu-batches", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--keys", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    if ns.worker:
        return worker(ns)
    if ns.gpu and ns.model == "small":
        ns.model = "mert-v1-95m"
    result = gpu_benchmark(ns) if ns.gpu else cpu_benchmark(ns)
    if ns.out:
        Path(ns.out).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()

"""The GPU check: one command that runs mirprobe's whole path on a CUDA device and measures it.

    python perf/gpu_check.py --out gpu-report        # on a CUDA machine: about 6-8 min on an H200
    python perf/gpu_check.py --cpu --out /tmp/dry    # dry mode: the same steps, tiny, on CPU (CI)

Steps (each timed, each recorded in ``<out>/report.json``, with ``<out>/summary.md``):

1. ``tests``: the device-sensitive tests (``pytest -m device --device cuda``: probe engine against
   the plain loop, extraction against CPU, a one-process distributed run, the tiny suite end to end).
2. ``quickstart``: the quickstart on the device and on the CPU, both with fp32 extraction (so both
   use the same cache ids), in fresh work folders; the feature entries are compared (largest
   difference relative to the largest value, ``--feature-tol``, default 1e-2: cuDNN convolutions
   run in TF32) and every leaderboard cell (``--table-tol`` points, default 5: probes trained with
   other float rounding take other early-stopping paths; the size of the differences is reported).
3. ``extract``: audio seconds per second of the random-init MERT-v1-95M and MERT-v1-330M
   architectures in bf16 on batches of 5 s windows already on the device (``--batches``), without
   and with ``torch.compile``, against the bf16 FLOP bound (the device's dense bf16 peak divided
   by the FLOPs per audio second, counted with ``torch.utils.flop_counter``); then the real
   pipeline (``FeatureStore.extract`` from 44.1 kHz stereo WAV files with decode workers).
4. ``probe``: ``perf/probe.py``'s default case (13 layers + weighted sum × MARBLE's six learning
   rates, MLP heads, 1,000 tracks, 13 × 768) batched against one configuration at a time, both on
   the device; and the ridge protocol (``probe.heads=[ridge]``) on the same features if it exists.

A GPU environment brings its own torch, transformers and lightning; carry the rest as wheels
(``perf/gpu_requirements.txt``, ``--print-wheels``) and install them with ``pip install --no-index
--find-links WHEELS -r perf/gpu_requirements.txt`` and ``pip install --no-deps -e .``.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mirprobe.record import Record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # the sibling speed scripts

# Dense bf16 peaks (TFLOP/s) by device name; other devices: --peak-tflops.
PEAKS = {"H200": 989.4, "H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "A100": 312.0,
         "L40S": 362.0, "A10": 125.0}
ARCHS = ("mert-v1-95m", "mert-v1-330m")


# --------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def device_peak(device: torch.device, given: float | None) -> tuple[float, str]:
    """The dense bf16 peak in TFLOP/s and where it comes from."""
    if given:
        return given, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAKS.items():
            if all(part in name for part in key.split()):
                return peak, f"datasheet ({key})"
        sys.exit(f"unknown device {name!r}: give its dense bf16 peak with --peak-tflops")
    return cpu_matmul_peak(torch.bfloat16) / 1e12, "measured bf16 matmul on this CPU"


def cpu_matmul_peak(dtype: torch.dtype, n: int = 2048) -> float:
    """This CPU's dense matmul rate (FLOP/s) at ``dtype``: the best of a few large products."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def mirprobe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mirprobe.cli", *args]


# --------------------------------------------------------------------------- 1. tests


def step_tests(ns: argparse.Namespace, device: torch.device) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "device", "--device", device.type,
           "-n", "0", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_device.py")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:]
    print(f"  {' '.join(cmd[2:6])} ... -> exit {proc.returncode}: {tail[0] if tail else ''}")
    if proc.returncode:
        print(proc.stdout[-4000:] + proc.stderr[-2000:])
    return {"command": " ".join(cmd), "returncode": proc.returncode, "summary": tail}


# --------------------------------------------------------------------------- 2. quickstart


def run_quickstart(home: Path, device: str, size: str, extra: list[str]) -> dict:
    env = {**os.environ, "MIRPROBE_HOME": str(home)}
    cmd = mirprobe_cmd("run", "quickstart", f"device={device}", f"synthetic.size={size}", f"scores.size={size}",
                       "extract.dtype=float32", "progress=false", *extra)
    seconds, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True, env=env),
                          torch.device("cpu"))
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {"seconds": seconds, "stages": proc.stdout.strip().splitlines()[-1]}


def leaderboard(home: Path) -> dict[tuple[str, str], float]:
    """(model, task) → displayed test score of the selected layer (the leaderboard CSV)."""
    with (home / "runs" / "quickstart" / "leaderboard.csv").open() as f:
        return {(row["model"], row["task"]): float(row["score"]) for row in csv.DictReader(f)}


def entries(home: Path) -> dict[tuple[str, str], Path]:
    """(model, task) → the feature entry its run record was trained on."""
    out = {}
    for path in (home / "records").glob("*.json"):
        rec = Record.read(path)
        out[(rec.model, str(rec.task))] = home / "features" / rec.feature_entry
    return out


def feature_diffs(a: Path, b: Path) -> dict[str, float]:
    """Model × task → largest |a − b| relative to the largest |a| of the two runs' features (the
    entry ids differ: each work folder synthesises its own copy of the suite)."""
    ours, ref = entries(a), entries(b)
    out = {}
    for key in sorted(ours.keys() & ref.keys()):
        x, y = (np.load(e / "features.npy", mmap_mode="r", allow_pickle=False).astype(np.float32)
                for e in (ours[key], ref[key]))
        out[" × ".join(key)] = (float(np.abs(x - y).max() / max(1e-12, float(np.abs(x).max())))
                                if x.shape == y.shape else float("inf"))
    return out


def step_quickstart(ns: argparse.Namespace, device: torch.device, work: Path) -> dict:
    size = "tiny" if ns.cpu else ns.quickstart_size
    extra = ["probe.max_epochs=3", "probe.lr=[1e-3]", "models=[random]"] if ns.cpu else []
    runs = {name: run_quickstart(work / name, dev, size, extra)
            for name, dev in (("device", device.type), ("cpu", "cpu"))}
    ours, ref = leaderboard(work / "device"), leaderboard(work / "cpu")
    cell_diff = {f"{m} × {t}": abs(ours[(m, t)] - ref[(m, t)]) for (m, t) in ref if (m, t) in ours}
    feats = feature_diffs(work / "device", work / "cpu")
    worst_cell = max(cell_diff.values(), default=float("nan"))
    worst_feat = max(feats.values(), default=float("nan"))
    ok = (len(cell_diff) == len(ref) and worst_cell <= ns.table_tol and len(feats) > 0
          and worst_feat <= ns.feature_tol)
    for name, r in runs.items():
        print(f"  quickstart ({size}) on {name}: {r['seconds']:.1f} s — {r['stages']}")
    print(f"  {len(feats)} feature entries compared: largest relative difference {worst_feat:.2e} "
          f"(tolerance {ns.feature_tol:g}); {len(cell_diff)} leaderboard cells: largest difference "
          f"{worst_cell:.1f} points (tolerance {ns.table_tol:g}) -> {'ok' if ok else 'FAILED'}")
    return {"size": size, "runs": runs, "cell_diff": cell_diff, "feature_rel_diff": feats,
            "worst_cell": worst_cell, "worst_feature": worst_feat, "ok": ok}


# --------------------------------------------------------------------------- 3. extraction


def build_model(arch: str):  # noqa: ANN201 - an Extractor
    if arch == "small":
        from mirprobe.models.random import SmallRandomExtractor

        return SmallRandomExtractor()
    from mirprobe.models.mert import random_architecture

    return random_architecture(arch, seed=0)


def compute_rate(extractor: Any, device: torch.device, batch: int, repeats: int, dtype: str) -> float:
    """Audio seconds per second on ``batch`` 5 s windows already on the device."""
    from mirprobe.extraction import autocast

    waves = torch.randn(batch, int(5 * extractor.sample_rate), device=device)
    with torch.inference_mode(), autocast(device, dtype):
        for _ in range(2):  # warm-up: allocator, kernel selection, compilation
            extractor.forward(waves)
        seconds, _ = timed(lambda: [extractor.forward(waves) for _ in range(repeats)], device)
    return batch * 5 * repeats / seconds


def pipeline_rate(extractor: Any, ns: argparse.Namespace, work: Path) -> dict:
    """The real path: WAV files decoded and resampled by workers into a fresh cache entry."""
    from scale import make_tracks  # perf/scale.py

    from mirprobe.features import FeatureStore

    keys = make_tracks(work / "audio", ns.tracks, ns.seconds)
    store = FeatureStore(work / "features")
    store.extract(extractor, keys[:2], batch_size=ns.pipeline_batch, dtype=ns.dtype, progress=False)
    seconds, _ = timed(lambda: store.extract(
        extractor, keys, batch_size=ns.pipeline_batch, num_workers=ns.workers,
        dtype=ns.dtype, progress=False), torch.device("cpu"))
    return {"tracks": ns.tracks, "seconds_each": ns.seconds, "workers": ns.workers,
            "batch": ns.pipeline_batch, "audio_s_per_s": ns.tracks * ns.seconds / seconds}


def measure_model(arch: str, ns: argparse.Namespace, device: torch.device, peak: float,
                  work: Path) -> dict[str, Any]:
    """One architecture: FLOPs, eager and compiled rates on device-resident windows, pipeline."""
    from scale import flops_per_audio_second  # perf/scale.py

    extractor = build_model(arch)
    flops = flops_per_audio_second(extractor)  # on CPU, before the move
    extractor.to(device)
    row: dict[str, Any] = {"gflop_per_audio_s": flops / 1e9, "bound_audio_s_per_s": peak * 1e12 / flops,
                           "eager": {b: compute_rate(extractor, device, b, ns.repeats, ns.dtype)
                                     for b in ns.batches},
                           "compiled": {}}
    row["pipeline"] = pipeline_rate(extractor, ns, work / arch)  # eager: tails vary in length
    if ns.compile:
        from mirprobe.distributed import compile_extractor

        start = time.perf_counter()
        compiled = compile_extractor(extractor)
        row["compiled"] = {b: compute_rate(compiled, device, b, ns.repeats, ns.dtype)
                              for b in ns.compile_batches}
        row["compile_and_measure_s"] = time.perf_counter() - start
    return row


def print_model(arch: str, row: dict[str, Any], peak: float, source: str) -> None:
    bound = row["bound_audio_s_per_s"]
    print(f"  {arch}: {row['gflop_per_audio_s']:.1f} GFLOP per audio second; bf16 bound {bound:,.0f} "
          f"audio s/s ({peak:g} TFLOP/s, {source})")
    for mode in ("eager", "compiled"):
        for b, rate in row[mode].items():
            print(f"    {mode:8s} batch {b:4d} × 5 s: {rate:12,.0f} audio s/s ({rate / bound:6.1%} of the bound)")
    p = row["pipeline"]
    print(f"    pipeline ({p['tracks']} WAV × {p['seconds_each']:g} s, {p['workers']} workers, batch "
          f"{p['batch']}): {p['audio_s_per_s']:,.0f} audio s/s ({p['audio_s_per_s'] / bound:.1%})")


def step_extract(ns: argparse.Namespace, device: torch.device, work: Path) -> dict:
    peak, source = device_peak(device, ns.peak_tflops)
    out: dict[str, Any] = {"peak_tflops_bf16": peak, "peak_source": source, "models": {}}
    for arch in (["small"] if ns.cpu else ARCHS):
        out["models"][arch] = measure_model(arch, ns, device, peak, work)
        print_model(arch, out["models"][arch], peak, source)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------- 4. probes


def step_probe(ns: argparse.Namespace, device: torch.device) -> dict:
    from probe import planted_job  # perf/probe.py

    from mirprobe.probes import ProbeConfig, run_probe
    from mirprobe.probes.plain import run_plain

    case = argparse.Namespace(tracks=200 if ns.cpu else 1000, layers=4 if ns.cpu else 13,
                              dim=64 if ns.cpu else 768, windows=1, seed=0)
    task, entry, splits = planted_job("genre", case)
    cfg = (ProbeConfig(heads=["mlp"], lr=[1e-3, 1e-2], max_epochs=5) if ns.cpu
           else ProbeConfig(heads=["mlp"], max_epochs=ns.max_epochs))
    t_batched, batched = timed(lambda: run_probe(task, entry, splits, cfg, device=device,
                                                 progress=False), device)
    plain_kw = {"device": device} if "device" in inspect.signature(run_plain).parameters else {}
    plain = run_plain(task, entry, splits, cfg, **plain_kw)
    metric = task.selection_metric
    best_plain = max(plain["per_layer"].values(), key=lambda r: r["val"][metric])
    out = {"case": vars(case), "heads": batched.num_heads, "batched_s": t_batched,
           "plain_s": plain["seconds"], "plain_device": str(plain_kw.get("device", "cpu")),
           "ratio": plain["seconds"] / t_batched,
           "best_batched": 100 * batched.best.test[metric],
           "best_plain": 100 * best_plain["test"][metric]}
    print(f"  MLP grid ({batched.num_heads} heads, {case.tracks} tracks, {case.layers} × {case.dim}): "
          f"batched {t_batched:.1f} s, one at a time {plain['seconds']:.1f} s on {out['plain_device']} "
          f"-> {out['ratio']:.1f}x; selected test {out['best_batched']:.2f} vs {out['best_plain']:.2f}")
    from mirprobe.probes.spec import HEAD_KINDS

    if "ridge" in HEAD_KINDS:
        ridge_cfg = ProbeConfig(heads=["ridge"])
        t_ridge, ridge = timed(lambda: run_probe(task, entry, splits, ridge_cfg, device=device,
                                                 progress=False), device)
        out.update(ridge_s=t_ridge, best_ridge=100 * ridge.best.test[metric])
        print(f"  ridge protocol: {t_ridge:.2f} s, selected test {out['best_ridge']:.2f}")
    return out


# --------------------------------------------------------------------------- main


STEPS = {"tests": step_tests, "quickstart": step_quickstart, "extract": step_extract,
         "probe": step_probe}


def summary(report: dict) -> str:
    lines = [f"# GPU check: {report['device']}", "",
             f"torch {report['torch']}, Python {report['python']}, {report['total_s']:.0f} s in all", ""]
    for name, step in report["steps"].items():
        status = "failed: " + step["error"] if "error" in step else f"{step['seconds']:.0f} s"
        lines.append(f"- **{name}**: {status}")
    ext = report["steps"].get("extract", {}).get("result", {})
    for arch, row in ext.get("models", {}).items():
        best = max([*row["eager"].values(), *row["compiled"].values()])
        lines.append(f"  - {arch}: best {best:,.0f} audio s/s = {best / row['bound_audio_s_per_s']:.1%} "
                     f"of the bf16 bound; pipeline {row['pipeline']['audio_s_per_s']:,.0f} audio s/s")
    probe = report["steps"].get("probe", {}).get("result")
    if probe:
        lines.append(f"  - probe grid: batched {probe['ratio']:.1f}x the one-at-a-time loop")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="dry mode: every step, tiny, on the CPU")
    ap.add_argument("--out", default="gpu-report", help="folder for report.json and summary.md")
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ",".join(STEPS))
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the device")
    ap.add_argument("--batches", default="64,128,256,512", help="windows per batch (eager)")
    ap.add_argument("--compile-batches", default="256", help="windows per batch (torch.compile)")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--repeats", type=int, default=5, help="timed forward passes per batch size")
    ap.add_argument("--tracks", type=int, default=128, help="WAV files for the pipeline measurement")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each WAV file")
    ap.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)))
    ap.add_argument("--pipeline-batch", type=int, default=256)
    ap.add_argument("--max-epochs", type=int, default=30, help="probe grid epoch limit")
    ap.add_argument("--quickstart-size", default="quick")
    ap.add_argument("--table-tol", type=float, default=5.0)
    ap.add_argument("--feature-tol", type=float, default=1e-2)
    ap.add_argument("--print-wheels", action="store_true", help="list the wheels to carry, and exit")
    ns = ap.parse_args()
    if ns.print_wheels:
        print((HERE / "gpu_requirements.txt").read_text(), end="")
        return
    if ns.cpu:
        ns.batches, ns.compile_batches, ns.repeats = "2", "2", 2
        ns.tracks, ns.seconds, ns.workers, ns.pipeline_batch = 3, 4.0, 1, 2
        ns.compile = False
    # bf16 on the device; the dry mode runs fp32, as bf16 matrix products on a CPU without bf16
    # units are emulated and take minutes even for the small model.
    ns.dtype = "float32" if ns.cpu else "bfloat16"
    ns.batches = [int(b) for b in ns.batches.split(",")]
    ns.compile_batches = [int(b) for b in ns.compile_batches.split(",")]
    if not ns.cpu and not torch.cuda.is_available():
        sys.exit("no CUDA device is visible; use --cpu for the dry mode")
    device = torch.device("cpu" if ns.cpu else "cuda")
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "device": "cpu (dry mode)" if ns.cpu else torch.cuda.get_device_name(device),
        "torch": torch.__version__, "python": platform.python_version(), "args": {
            k: v for k, v in vars(ns).items() if k != "print_wheels"}, "steps": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ns.steps.split(","):
            print(f"== {name}", flush=True)
            fn = STEPS[name]
            args = (ns, device) if name in ("tests", "probe") else (ns, device, Path(tmp) / name)
            t = time.perf_counter()
            try:
                report["steps"][name] = {"result": fn(*args)}
            except Exception as e:  # noqa: BLE001 - one failed step must not hide the others
                report["steps"][name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
                print(f"  FAILED: {type(e).__name__}: {e}")
            report["steps"][name]["seconds"] = time.perf_counter() - t
    report["total_s"] = time.perf_counter() - started
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "summary.md").write_text(summary(report))
    print("\n" + summary(report) + f"\nwritten: {out / 'report.json'}, {out / 'summary.md'}")
    failed = [n for n, s in report["steps"].items()
              if "error" in s or s["result"].get("ok") is False
              or (n == "tests" and s["result"]["returncode"])]
    sys.exit(f"failed steps: {', '.join(failed)}" if failed else 0)


if __name__ == "__main__":
    main()

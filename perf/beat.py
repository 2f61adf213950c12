"""Beat decoding time per track: the DBN (``mirprobe.tasks.beat_dbn``) against the DP tracker,
and against madmom's own DBN when a Python with madmom is at hand.

    python perf/beat.py                                   # 30 s at 75 fps, 20 rounds
    python perf/beat.py --seconds 30 --fps 75 --rounds 20
    python perf/beat.py --madmom-python /path/to/venv/bin/python   # madmom timed in that Python

Activations are beat-like (Gaussian bumps at a drifting tempo, a fifth missing, uniform
noise), one per round. Each decoder runs on the same activations in the same process, rounds
interleaved, one core (the kernels are single-threaded). The script prints the median time per
track with the spread over rounds, the ratio to the DBN, madmom's figure from its published
speed (11 ms per 10 s at 75 fps, PROTOCOL.md) scaled to the track length, madmom measured live
when importable (here or via ``--madmom-python``), and the DBN's one-off JIT compile time and
on-disk cache load time, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

MADMOM_PUBLISHED_MS_PER_10S = 11.0  # PROTOCOL.md: madmom's Cython, 10 s at 75 fps

# A worker in a Python that has madmom: decodes activation i for each line "i" it reads.
MADMOM_WORKER = """
import json, sys, time
import numpy as np
from madmom.features.beats import DBNBeatTrackingProcessor
acts = np.load(sys.argv[1])
proc = DBNBeatTrackingProcessor(fps=float(sys.argv[2]))
proc(acts[0])
print("ready", flush=True)
for line in sys.stdin:
    a = acts[int(line)]
    t = time.perf_counter(); b = proc(a); took = time.perf_counter() - t
    print(json.dumps({"time": took, "beats": b.tolist()}), flush=True)
"""

COLD_SNIPPET = """
import sys, time
t = time.perf_counter()
import numpy as np
from mirprobe.tasks.beat_dbn import BeatDBN
imported = time.perf_counter()
BeatDBN(75.0)(np.linspace(0.01, 0.99, 300))
print(imported - t, time.perf_counter() - imported)
"""


def activations(rounds: int, seconds: float, fps: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * fps)
    t = np.arange(n) / fps
    out = np.empty((rounds, n))
    for r in range(rounds):
        bpm = rng.uniform(80, 160) + rng.uniform(-10, 10) * t / seconds
        beats = np.flatnonzero(np.diff(np.floor(np.cumsum(bpm / 60 / fps))) > 0) / fps
        beats = beats[rng.random(beats.size) > 0.2]
        act = np.zeros(n)
        for b in beats:
            act = np.maximum(act, np.exp(-0.5 * ((t - b) * fps / 1.5) ** 2))
        out[r] = np.clip(act + 0.3 * rng.random(n), 0, 1) * 0.98 + 0.01
    return out


def timed(fn, acts: np.ndarray) -> list[float]:  # noqa: ANN001
    times = []
    for a in acts:
        start = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - start)
    return times


class MadmomWorker:
    """madmom's DBN in another process (this Python or ``python``), fed one activation at a
    time so that its rounds interleave with mirprobe's."""

    def __init__(self, acts: np.ndarray, fps: float, python: str | None) -> None:
        self.proc, self.python = None, None
        self._tmp = tempfile.TemporaryDirectory()
        path = os.path.join(self._tmp.name, "acts.npy")
        np.save(path, acts)
        for exe in [sys.executable] + ([python] if python else []):
            proc = subprocess.Popen([exe, "-c", MADMOM_WORKER, path, str(fps)], text=True,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
            if proc.stdout.readline().strip() == "ready":
                self.proc, self.python = proc, exe
                return
            proc.wait()

    def __call__(self, index: int) -> tuple[float, list[float]]:
        self.proc.stdin.write(f"{index}\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        return out["time"], out["beats"]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()
        self._tmp.cleanup()


def compile_times() -> tuple[float, float, float]:
    """(import s, first call s with an empty numba cache, first call s with the cache filled)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = [subprocess.run([sys.executable, "-c", COLD_SNIPPET], env=env, check=True,
                               capture_output=True, text=True).stdout.split() for _ in range(2)]
    return float(runs[1][0]), float(runs[0][1]), float(runs[1][1])


def row(name: str, times: list[float], base: float, seconds: float) -> str:
    ms = np.array(times) * 1e3 * 30.0 / seconds  # per 30 s of activation
    med = float(np.median(ms))
    return (f"| {name} | {med:.1f} | {ms.min():.1f}–{np.percentile(ms, 90):.1f} | "
            f"{med / base:.2f}× |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--fps", type=float, default=75.0)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--madmom-python", default=None,
                    help="a Python interpreter that can import madmom (a scratch venv)")
    args = ap.parse_args()

    from mirprobe.plugins import get_task
    from mirprobe.tasks.beat import decode_beats
    from mirprobe.tasks.beat_dbn import BeatDBN

    import_s, cold_s, warm_s = compile_times()
    acts = activations(args.rounds, args.seconds, args.fps)
    dbn = BeatDBN(args.fps)
    dbn(acts[0])  # load the compiled kernel, build the state space
    madmom = MadmomWorker(acts, args.fps, args.madmom_python)
    task = get_task("beat")
    decode_beats(acts[0], args.fps, method="dp")  # librosa compiles its own numba code
    task.predictions([np.zeros((int(args.fps), 2))], frame_rate=args.fps)
    results: dict[str, list[float]] = {"dbn": [], "dp": [], "madmom": [], "task": []}
    same = 0
    for i, a in enumerate(acts):  # interleaved, so that machine load hits all alike
        results["dbn"] += timed(dbn, a[None])
        results["dp"] += timed(lambda x: decode_beats(x, args.fps, method="dp"), a[None])
        logits = np.log(a / (1 - a))[:, None].repeat(2, 1)
        results["task"] += timed(lambda x: task.predictions([x], frame_rate=args.fps), logits[None])
        if madmom.proc is not None:
            took, beats = madmom(i)
            results["madmom"].append(took)
            same += np.array_equal(np.round(np.array(beats) * args.fps), dbn.frames(a))
    madmom.close()

    base = float(np.median(results["dbn"])) * 1e3 * 30.0 / args.seconds
    print(f"Beat decoding, {args.seconds:g} s at {args.fps:g} fps, {args.rounds} rounds, "
          f"ms per 30 s of activation (median, min–p90, ratio to the DBN):\n")
    print("| decoder | median ms | spread | ratio |\n|---|---:|---:|---:|")
    print(row("mirprobe DBN (numba)", results["dbn"], base, args.seconds))
    print(row("mirprobe DP (librosa)", results["dp"], base, args.seconds))
    print(row("task predictions: beats + downbeats, track + clips", results["task"], base,
              args.seconds))
    if args.fps == 75:
        published = MADMOM_PUBLISHED_MS_PER_10S * 3.0
        print(f"| madmom DBN (Cython), published: 11 ms per 10 s | {published:.1f} | – | "
              f"{published / base:.2f}× |")
    if results["madmom"]:
        print(row("madmom DBN (Cython), measured here", results["madmom"], base, args.seconds))
        print(f"\nmadmom ran in {madmom.python}; same beats as mirprobe's DBN on "
              f"{same}/{len(acts)} activations")
    print(f"\nDBN JIT: import {import_s:.2f} s; first call compiling (empty numba cache) "
          f"{cold_s:.2f} s; first call loading the cache {warm_s:.2f} s")


if __name__ == "__main__":
    main()

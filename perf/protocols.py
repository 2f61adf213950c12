"""Time the protocols beyond one probe on features that already exist: ``mirprobe run knn``,
``run fewshot``, ``run data-efficiency`` (the three default models together, as a user runs
them) and ``mirprobe similarity`` (each default model, on one task), each as its own command.

    mirprobe extract quickstart                # the features and the suites, once (not timed)
    python perf/protocols.py                   # every protocol once
    python perf/protocols.py --rounds 2 --baseline /path/to/pkg   # alternating with a baseline

Each run command gets an empty records folder (the work folder's own is moved aside and put
back), so every job is probed; the work folder's features and generated suites are the real
ones (item paths are part of a feature entry's identity, so the suites cannot be copied).
``--baseline DIR`` runs every command also with ``DIR`` first on ``PYTHONPATH`` (a folder
holding another ``mirprobe`` package), alternating baseline and this tree in each round, and
checks that both wrote the same records: every field but ``created``, ``timings`` and
``versions``, and the same saved predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RUNS = ("knn", "fewshot", "data-efficiency")
VOLATILE = ("created", "timings", "versions")
MAIN = "import sys; from mirprobe.cli import main; sys.exit(main(sys.argv[1:]))"


def command(args: list[str], work: Path, pythonpath: str | None) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one ``mirprobe`` command in a fresh
    interpreter."""
    env = dict(os.environ, MIRPROBE_HOME=str(work))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MAIN, *args, "progress=false", "device=cpu"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"mirprobe {' '.join(args)} failed:\n{done.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def records(folder: Path) -> dict[str, tuple[dict, dict[str, np.ndarray]]]:
    """Record id → (its JSON less the volatile fields, its saved predictions)."""
    out = {}
    for path in folder.glob("*.json"):
        body = json.loads(path.read_text())
        for key in VOLATILE:
            body.pop(key, None)
        with np.load(folder / body["predictions"], allow_pickle=False) as z:
            out[body["id"]] = (body, {k: z[k] for k in z.files})
    return out


def same(a: dict, b: dict) -> bool:
    """Whether two :func:`records` results are identical (ids, fields, predictions)."""
    if a.keys() != b.keys():
        return False
    for rid, (body, preds) in a.items():
        other, theirs = b[rid]
        if body != other or preds.keys() != theirs.keys():
            return False
        if not all(np.array_equal(preds[k], theirs[k]) for k in preds):
            return False
    return True


def timed_run(config: str, models: str, work: Path, pythonpath: str | None,
              keep: Path | None) -> tuple[float, float]:
    """One ``mirprobe run CONFIG`` (probe stage on) with an empty records folder; its records
    are moved to ``keep`` (or deleted)."""
    rec, aside = work / "records", work / f"records.aside-{os.getpid()}"
    if rec.exists():
        rec.rename(aside)
    try:
        wall = command(["run", config, f"models=[{models}]"], work, pythonpath)
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(rec, keep)
    finally:
        shutil.rmtree(rec, ignore_errors=True)
        if aside.exists():
            aside.rename(rec)
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="handcrafted,random,musicnn-mtt")
    p.add_argument("--work-dir", type=Path, default=os.environ.get("MIRPROBE_HOME"),
                   help="work folder with the features (default: $MIRPROBE_HOME)")
    p.add_argument("--task", default="scores-genre", help="task whose items CKA compares")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--baseline", default=None, help="folder holding a baseline mirprobe package")
    p.add_argument("--only", default=",".join((*RUNS, "similarity")))
    a = p.parse_args()
    if a.work_dir is None:
        raise SystemExit("give --work-dir or set MIRPROBE_HOME")
    work = Path(a.work_dir).resolve()
    versions = {"this tree": None} | ({"baseline": a.baseline} if a.baseline else {})
    only = a.only.split(",")
    tmp = work / f"perf-records-{os.getpid()}"
    print(f"load average at start: {os.getloadavg()}", flush=True)
    for proto in [r for r in RUNS if r in only]:
        for rnd in range(a.rounds):
            order = list(versions.items())[:: 1 if rnd % 2 == 0 else -1]  # alternate who goes first
            walls = {}
            for name, path in order:
                walls[name] = timed_run(proto, a.models, work, path, tmp / name)
            line = " | ".join(f"{n} {w:.1f} s (CPU {c:.1f} s)" for n, (w, c) in walls.items())
            check = ""
            if a.baseline:
                check = " | records identical: " + str(same(records(tmp / "this tree"),
                                                            records(tmp / "baseline")))
            print(f"run {proto} ({a.models}), round {rnd + 1}: {line}{check} | "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    if "similarity" in only:
        for rnd in range(a.rounds):
            for name, path in versions.items():
                times = [command(["similarity", m, "--task", a.task], work, path)
                         for m in a.models.split(",")]
                print(f"similarity ({a.task}) {name}, round {rnd + 1}: "
                      + ", ".join(f"{m} {w:.1f} s" for m, (w, _) in zip(a.models.split(","), times,
                                                                          strict=True))
                      + f", all {sum(w for w, _ in times):.1f} s "
                      f"(CPU {sum(c for _, c in times):.1f} s) | load {os.getloadavg()[0]:.1f}",
                      flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

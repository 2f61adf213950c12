"""Time the protocols beyond one probe on features that already exist: k-NN, few-shot, data
efficiency (ridge heads at four train shares) and CKA similarity, per model.

    mirprobe extract quickstart                # the features, once (not timed here)
    python perf/protocols.py                   # the default models on the default suite
    python perf/protocols.py --models handcrafted --work-dir /tmp/mp

Each protocol runs in a fresh work folder whose ``features`` is the real one (a symbolic
link), so that no run record is reused and every job is probed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

from mirprobe.config import load_run_config
from mirprobe.pipeline import run
from mirprobe.similarity_cli import similarity
from mirprobe.workfolder import WorkFolder

PROTOCOLS = ("knn", "fewshot", "data-efficiency")


def timed_run(config: str, model: str, work: Path, features: Path) -> float:
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        (Path(tmp) / "features").symlink_to(features)
        cfg = load_run_config(config, [f"models=[{model}]", f"work_dir={tmp}", "progress=false",
                                       "device=cpu"])
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            run(cfg, stages=("probe", "report"))
        return time.perf_counter() - t0


def timed_similarity(models: list[str], task: str, work: Path) -> float:
    t0 = time.perf_counter()
    similarity(models, [f"work_dir={work}", "progress=false", "device=cpu"], None, task, "all",
               256 << 20)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="handcrafted,random,musicnn-mtt")
    p.add_argument("--work-dir", default=None, help="work folder with the features "
                   "(default: $MIRPROBE_HOME)")
    p.add_argument("--task", default="genre", help="task whose items CKA compares")
    a = p.parse_args()
    work = WorkFolder.at(a.work_dir)
    models = a.models.split(",")
    print("| protocol | " + " | ".join(models) + " | all |")
    print("|---|" + "---|" * (len(models) + 1))
    for proto in PROTOCOLS:
        secs = [timed_run(proto, m, work.root, work.features) for m in models]
        print(f"| `{proto}` | " + " | ".join(f"{s:.1f} s" for s in secs)
              + f" | {sum(secs):.1f} s |", flush=True)
    secs = [timed_similarity([m], a.task, work.root) for m in models]
    print(f"| `similarity` ({a.task}) | " + " | ".join(f"{s:.1f} s" for s in secs)
          + f" | {sum(secs):.1f} s |")
    pair = timed_similarity(models[:2], a.task, work.root) if len(models) > 1 else float("nan")
    print(f"\nsimilarity {models[0]} vs {models[1] if len(models) > 1 else '-'}: {pair:.1f} s")


if __name__ == "__main__":
    main()

"""Sharing a work folder: record identity, concurrent runs, killed lock holders, `mirprobe cache`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirprobe.config import load_run_config
from mirprobe.errors import UserError
from mirprobe.locks import hold, lock_path, try_hold
from mirprobe.pipeline import run
from mirprobe.record import Record

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["synthetic.size=tiny", "tasks=[key,genre,tagging,emotion,beat]", "probe.heads=[linear]", "probe.lr=[1e-2]", "probe.max_epochs=3",
         "probe.patience=2", "probe.weighted_sum=false"]


def _run(work: Path, *extra: str) -> list[dict]:
    return run(load_run_config("quickstart", [*SMALL, "progress=false", f"work_dir={work}", *extra]))


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def _mirprobe(*args: str) -> list[str]:
    return [sys.executable, "-m", "mirprobe.cli", *args]


def test_changed_extraction_precision_is_a_new_record(tmp_path: Path) -> None:
    base = ["models=[random]", "tasks=[genre]"]
    fp32 = _run(tmp_path, *base, "extract.dtype=float32")
    bf16 = _run(tmp_path, *base, "extract.dtype=bfloat16")
    assert fp32[0].id != bf16[0].id, "a record is never reused for other features"
    assert fp32[0].feature_entry != bf16[0].feature_entry
    assert bf16[0].config["extract_precision"] == "bfloat16"
    assert fp32[0].config["probe_precision"] == "float32" and fp32[0].config["device"] == "cpu"
    assert len(list((tmp_path / "records").glob("*.json"))) == 2
    assert len(list((tmp_path / "features").glob("*/meta.json"))) == 2
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "records").glob("*.json")}
    again = _run(tmp_path, *base, "extract.dtype=bfloat16")
    assert again[0].id == bf16[0].id
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "records").glob("*.json")} == stamps
    assert len(list((tmp_path / "features").glob("*/meta.json"))) == 2, "nothing extracted again"


def test_concurrent_runs_share_one_work_folder(tmp_path: Path) -> None:
    """3 identical runs and 2 overlapping ones at once on a fresh folder = one lone run each."""
    work, alone = tmp_path / "shared", tmp_path / "alone"
    configs = {"a": ["models=[random]", "tasks=[genre,key]"],
               "b": ["models=[handcrafted,random]", "tasks=[genre]"],
               "c": ["models=[random]", "tasks=[key,emotion]"]}
    launches = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("c", 0)]
    procs = [subprocess.Popen(_mirprobe("run", "quickstart", *SMALL, *configs[name], f"name={name}"),
                              cwd=ROOT, env=_env(MIRPROBE_HOME=str(work)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name, _ in launches]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    assert not [p for p in work.rglob("*") if ".partial" in p.name], "no unfinished folder is left"
    pairs = {("random", "genre"), ("random", "key"), ("handcrafted", "genre"), ("random", "emotion")}
    recs = [Record.read(p) for p in (work / "records").glob("*.json")]
    assert sorted((r.model, str(r.task)) for r in recs) == sorted(pairs), "each record once"
    # random: one clip entry shared by genre, key and emotion (same items); handcrafted: one
    assert len(list((work / "features").glob("*/meta.json"))) == 2
    assert len(list((work / "synthetic").iterdir())) == 2  # the suite and its lock file
    subprocess.run(_mirprobe("run", "quickstart", *SMALL, *configs["a"], "name=a", "progress=false"),
                   cwd=ROOT, env=_env(MIRPROBE_HOME=str(alone)), check=True, capture_output=True)
    for table in ("leaderboard.csv", "layers.csv"):
        assert (work / "runs" / "a" / table).read_bytes() == (alone / "runs" / "a" / table).read_bytes()


_HOLDER = """
import sys, time
from pathlib import Path
from mirprobe.locks import hold
with hold(Path(sys.argv[1]), "a test product"):
    Path(sys.argv[2]).write_text("held")
    time.sleep(600)
"""


def test_a_killed_holder_does_not_block_and_a_live_one_times_out_naming_the_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, flag = tmp_path / "product", tmp_path / "flag"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(target), str(flag)], cwd=ROOT,
                            env=_env())
    try:
        deadline = time.time() + 60
        while not flag.exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        with try_hold(target) as free:
            assert not free
        monkeypatch.setenv("MIRPROBE_LOCK_TIMEOUT", "0.5")
        with pytest.raises(UserError, match=str(lock_path(target))), hold(target, "it"):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    monkeypatch.setenv("MIRPROBE_LOCK_TIMEOUT", "10")
    started = time.perf_counter()
    with hold(target, "it"):
        assert time.perf_counter() - started < 5, "the kernel dropped the dead holder's lock"


def test_weights_are_checked_before_any_long_work(tmp_path: Path) -> None:
    env = _env(MIRPROBE_HOME=str(tmp_path / "w"), HF_HUB_CACHE=str(tmp_path / "hub"),
               MIRPROBE_MODELS=str(tmp_path / "models"))
    started = time.perf_counter()
    proc = subprocess.run(_mirprobe("run", "quickstart", "models=[mert-v1-95m]"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "m-a-p/MERT-v1-95M" in proc.stderr and "not found offline" in proc.stderr
    assert "hf download" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "w" / "synthetic").exists(), "no suite synthesised before failing"
    assert time.perf_counter() - started < 60


def test_missing_audio_names_the_row_path_and_every_place_looked(tmp_path: Path) -> None:
    from tests.conftest import write_jsonl, write_tone

    data = tmp_path / "HoldBad"
    rows = {s: [{"audio_path": str(write_tone(data / "audio" / f"{s}{i}.wav", 1.0, freq=200 + 40 * i)),
                 "label": ["a", "b"][i % 2]} for i in range(6)] for s in ("train", "val", "test")}
    rows["test"].append({"audio_path": "HoldBad/audio/x.wav", "label": "a"})
    for s, r in rows.items():
        write_jsonl(data / f"G.{s}.jsonl", r)
    task = f"{{name: g, plugin: multiclass, data: {data}, jsonl: G}}"
    [rec] = _run(tmp_path / "w", "models=[handcrafted]", f"tasks=[{task}]")
    [problem] = rec.excluded["test"]
    reason = problem.reason
    assert problem.line == 7 and "'HoldBad/audio/x.wav'" in reason
    for place in (data / "HoldBad/audio/x.wav", tmp_path / "HoldBad/audio/x.wav",
                  Path("/HoldBad/audio/x.wav")):
        assert str(place) in reason, reason


def test_cache_lists_and_removes_only_on_request(tmp_path: Path) -> None:
    from mirprobe.features import FeatureStore

    work = tmp_path / "w"
    [rec] = _run(work, "models=[random]", "tasks=[genre]")
    # an entry no record uses, and the unfinished folder of a dead process
    _run(work, "models=[handcrafted]", "tasks=[genre]")
    handcrafted = next(r for r in (json.loads(p.read_text()) for p in (work / "records").glob("*.json"))
                       if r["model"] == "handcrafted")
    for p in (work / "records").glob(f"{handcrafted['id']}.*"):
        p.unlink()
    store = FeatureStore(work / "features")
    dead = store.partial_path("0" * 20)
    dead.mkdir()
    (dead / "chunk00000.npz").write_bytes(b"x")
    live = store.partial_path("1" * 20)
    live.mkdir()

    with hold(store.final_path("1" * 20), "a test"):  # a running process's entry
        listing = subprocess.run(_mirprobe("cache", "--work-dir", str(work)), cwd=ROOT, env=_env(),
                                 capture_output=True, text=True, check=True).stdout
        assert rec.feature_entry in listing and "random" in listing and rec.id in listing
        assert "used by 1 record(s)" in listing and "used by 0 record(s)" in listing
        assert "in use by a running process" in listing and "no process holds it" in listing
        assert dead.exists() and live.exists(), "listing removes nothing"
        removed = subprocess.run(_mirprobe("cache", "--work-dir", str(work), "--remove-partial",
                                           "--remove-unused"), cwd=ROOT, env=_env(),
                                 capture_output=True, text=True, check=True).stdout
    assert f"removed {dead}" in removed and not dead.exists() and live.exists()
    assert store.get(handcrafted["feature_entry"]) is None, "the unused entry is removed"
    assert store.get(rec.feature_entry) is not None, "the used one is kept"
    assert [r.id for r in _run(work, "models=[random]", "tasks=[genre]")] == [rec.id]

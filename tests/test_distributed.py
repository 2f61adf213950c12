"""Several processes on CPU (gloo): the same cache as one process, a killed rank resumes, launchers.

Processes are real: Lightning Fabric's own launcher, torchrun, and two processes given the
environment ``srun`` sets. Every process runs with one thread (``OMP_NUM_THREADS=1``), the
one-process reference too: CPU float results depend on the thread count, not on the sharding.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mirprobe.distributed import detect_environment, launch, plan
from mirprobe.errors import UserError
from mirprobe.features import FeatureStore, entry_id, entry_identity
from mirprobe.models.base import Extractor
from mirprobe.models.random import SmallRandomExtractor
from mirprobe.record import Record
from tests.conftest import write_tone

ROOT = Path(__file__).resolve().parent.parent
TINY = ["synthetic.size=tiny", "tasks=[key,genre,tagging,emotion,beat]", "progress=false", "device=cpu", "models=[random]", "probe.hidden=16",
        "probe.lr=[1e-2]", "probe.max_epochs=2", "probe.heads=[linear]", "extract.chunk_items=4"]
SLURM_KEYS = ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES", "SLURM_JOB_NAME", "SLURM_PROCID",
              "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NODELIST", "SLURM_JOB_ID")
TORCHRUN_KEYS = ("TORCHELASTIC_RUN_ID", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                 "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")

# Extracts one entry under whatever launcher started it; rank 1 can be slowed down to be killed.
EXTRACT_DRIVER = """
import json, os, sys, time
from pathlib import Path
from mirprobe.distributed import launch
from mirprobe.features import FeatureStore
from mirprobe.models.base import Extractor
from mirprobe.models.random import SmallRandomExtractor
keys_file, root, note, delay = sys.argv[1:]
dist = launch("auto", "auto", "cpu")
Path(note, f"rank{dist.rank}.pid").write_text(str(os.getpid()))

class Slow(SmallRandomExtractor):
    def forward(self, waves):
        if dist.rank == 1:
            time.sleep(float(delay))
        return super().forward(waves)

FeatureStore(Path(root)).extract(Slow(), json.loads(Path(keys_file).read_text()), batch_size=2,
                                 chunk_items=2, progress=False, rank=dist.rank,
                                 world_size=dist.world_size, barrier=dist.barrier)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SLURM_KEYS + TORCHRUN_KEYS}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mirprobe.synth import generate_suite

    return generate_suite(tmp_path_factory.mktemp("suite") / "tiny-seed0", size="tiny", progress=False)


def _work(tmp_path: Path, suite: Path) -> Path:
    """A work folder holding a copy of the tiny suite (the pipeline finds and reuses it)."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(suite, work / "synthetic" / "tiny-seed0")
    return work


def _same_entries(a: Path, b: Path) -> int:
    """Assert two feature folders hold the same entries, byte for byte; returns how many."""
    names = sorted(p.name for p in a.iterdir() if p.is_dir())  # entries, not their lock files
    assert names == sorted(p.name for p in b.iterdir() if p.is_dir()) and names
    for name in names:
        for f in ("features.npy", "offsets.npy", "failed.json"):
            assert (a / name / f).read_bytes() == (b / name / f).read_bytes(), f"{name}/{f} differs"
        meta_a, meta_b = (json.loads((d / name / "meta.json").read_text()) for d in (a, b))
        meta_a.pop("versions"), meta_b.pop("versions")
        assert meta_a == meta_b
    return len(names)


# --------------------------------------------------------------------------- launch plan


def test_plan_agrees_with_fabric_cluster_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    for key in SLURM_KEYS + TORCHRUN_KEYS:
        monkeypatch.delenv(key, raising=False)
    cases = {
        "local": {},
        "torchrun": {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "8", "RANK": "5",
                     "LOCAL_RANK": "1", "GROUP_RANK": "1", "MASTER_ADDR": "n0", "MASTER_PORT": "29500"},
        "slurm": {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2",
                  "SLURM_JOB_NAME": "mirprobe", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
                  "SLURM_NODEID": "1", "SLURM_NODELIST": "n[0-1]", "SLURM_JOB_ID": "42"},
        "interactive": {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "interactive", "SLURM_NNODES": "1"},
    }
    for name, env in cases.items():
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            fabric_says = ("torchrun" if TorchElasticEnvironment.detect() else
                           "slurm" if SLURMEnvironment.detect() else "local")
            assert detect_environment() == fabric_says == (name if name != "interactive" else "local")
            if name in ("local", "interactive"):
                assert plan().single
                continue
            p = plan()  # devices/num_nodes left at their defaults: the launcher decides
            assert (p.devices, p.num_nodes) == (4, 2)
            if name == "slurm":  # Fabric's own check of the values it will be given
                SLURMEnvironment().validate_settings(p.devices, p.num_nodes)
                with pytest.raises(ValueError):
                    SLURMEnvironment().validate_settings(2, p.num_nodes)
            assert plan("auto", "auto", "cuda").devices == 4
            with pytest.raises(UserError, match="launch.devices=2"):
                plan(2, 1, "cpu")


def test_plan_local_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in SLURM_KEYS + TORCHRUN_KEYS:
        monkeypatch.delenv(key, raising=False)
    assert plan(1, 1, "cpu").single and not plan(3, 1, "cpu").single
    assert plan("auto", 1, "cpu").devices == 1 and plan("auto", 1, "cuda").devices == "auto"
    for bad, key in ((0, "launch.devices"), ("two", "launch.devices"), (1.5, "launch.devices")):
        with pytest.raises(UserError, match=key):
            plan(bad, 1, "cpu")
    with pytest.raises(UserError, match="launch.num_nodes=2 needs a cluster launcher"):
        plan(1, 2, "cpu")
    with pytest.raises(UserError, match="'device'"):
        plan(1, 1, "tpu")
    if not torch.cuda.is_available():  # Fabric's refusal becomes a one-line error with the fix
        with pytest.raises(UserError, match="launch.devices"):
            launch(2, 1, "cuda")


# --------------------------------------------------------------------------- same cache


def _one_thread_run(overrides: list[str]) -> None:
    from mirprobe.config import load_run_config
    from mirprobe.pipeline import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each of the processes
    try:
        run(load_run_config("quickstart", overrides), stages=("extract", "probe"))
    finally:
        torch.set_num_threads(threads)


def test_two_processes_give_the_cache_and_records_of_one(tmp_path: Path, suite: Path) -> None:
    """The one-process reference runs here; the two processes are the README's command, with
    Fabric as the launcher (mirprobe starts the second process itself)."""
    work = _work(tmp_path, suite)
    overrides = [*TINY, "tasks=[genre,beat]", f"work_dir={work}"]
    _one_thread_run(overrides)
    for name in ("features", "records"):
        (work / name).rename(work / f"{name}.one")
    (command,) = [c for c in _doc_commands(README_SECTION) if "launch.devices=2" in c]
    proc = subprocess.run(_as_local(command, work, overrides), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    _check(proc)
    assert proc.stdout.count("tables written to") == 1, "rank 0 alone prints the tables"
    assert "rank 1 of 2" in proc.stdout + proc.stderr, "a second process ran"

    assert _same_entries(work / "features.one", work / "features") == 2  # clip and frame view
    one = {p.stem: json.loads(p.read_text()) for p in (work / "records.one").glob("*.json")}
    two = {p.stem: json.loads(p.read_text()) for p in (work / "records").glob("*.json")}
    assert sorted(one) == sorted(two) and len(one) == 2
    for rid in one:
        for key in ("feature_entry", "per_layer", "selection", "counts"):
            assert one[rid][key] == two[rid][key], f"record {rid}: {key} differs"
        with np.load(work / "records.one" / f"{rid}.npz") as a, np.load(work / "records" / f"{rid}.npz") as b:
            assert sorted(a.files) == sorted(b.files)
            for f in a.files:
                np.testing.assert_array_equal(a[f], b[f])


# --------------------------------------------------------------------------- killed rank


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            *args]


def test_killed_rank_resumes_without_redoing_finished_chunks(tmp_path: Path) -> None:
    keys = [str(write_tone(tmp_path / "audio" / f"t{i:02d}.wav", 6.0, sr=16000, freq=200 + 40 * i, seed=i))
            for i in range(12)]  # 2 windows each (5 s + 1 s); 6 chunks of 2 items: 3 per rank
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(keys))
    root, notes = tmp_path / "features", tmp_path / "notes"
    notes.mkdir()
    driver = _script(tmp_path, "extract_driver.py", EXTRACT_DRIVER)
    eid = entry_id(entry_identity(SmallRandomExtractor(), keys, "clip", 5.0))
    partial = FeatureStore(root).partial_path(eid)

    proc = subprocess.Popen(_torchrun(str(driver), str(keys_file), str(root), str(notes), "1.0"),
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    odd = []
    while time.time() < deadline and not odd:  # rank 1 (slowed) has finished one of its chunks
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
        odd = [p for p in partial.glob("chunk*.npz") if int(p.stem[5:]) % 2 == 1]
        time.sleep(0.05)
    os.kill(int((notes / "rank1.pid").read_text()), signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0, "torchrun reports the killed rank"
    done = sorted(int(p.stem[5:]) for p in partial.glob("chunk*.npz"))
    assert FeatureStore(root).get(eid) is None and 1 in done and len(done) < 6

    class Counting(SmallRandomExtractor):
        windows = 0

        def forward(self, waves: torch.Tensor) -> torch.Tensor:
            Counting.windows += len(waves)
            return super().forward(waves)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the processes
    try:  # the re-run: one process here (any number resumes the same chunks)
        entry = FeatureStore(root).extract(Counting(), keys, batch_size=2, chunk_items=2, progress=False)
        reference = FeatureStore(tmp_path / "reference").extract(
            SmallRandomExtractor(), keys, batch_size=2, chunk_items=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert entry is not None and entry.items == keys and not entry.failed
    missing_rows = sum(entry.offsets[2 * k + 2] - entry.offsets[2 * k] for k in range(6) if k not in done)
    assert Counting.windows == missing_rows > 0, "only the chunks not on disk were extracted again"
    assert reference is not None
    _same_entries(tmp_path / "reference", root)


# --------------------------------------------------------------------------- documented commands


def _doc_commands(path: Path) -> list[str]:
    """Command lines of a doc (``mirprobe …``/``torchrun …`` lines in code blocks, ``srun …`` lines);
    of the README, only its "Running on a cluster" section."""
    text = path.read_text()
    if path.name == "README.md":
        text = text.split("\n## Running on a cluster\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
             for ln in block.splitlines()] if path.suffix == ".md" else text.splitlines()
    return [ln for ln in (ln.strip() for ln in lines) if re.match(r"(srun .*)?(mirprobe|torchrun|sbatch) ", ln)]


def _as_local(command: str, work: Path, overrides: list[str] | None = None) -> list[str]:
    """A documented command line → the same command, runnable here, on the tiny suite."""
    words = shlex.split(command)
    words = words[words.index("mirprobe") if "mirprobe" in words else words.index("torchrun"):]
    words = [w for w in words if not w.startswith("$")]  # "$@" and other variables of the script
    head = {"mirprobe": [sys.executable, "-m", "mirprobe.cli"],
            "torchrun": [sys.executable, "-m", "torch.distributed.run"]}[words[0]]
    return [*head, *words[1:], *(overrides or [*TINY, "tasks=[genre,key]", f"work_dir={work}"])]


README_SECTION = ROOT / "README.md"
SBATCH = ROOT / "examples" / "slurm" / "mirprobe.sbatch"


def test_readme_torchrun_command_runs_on_two_cpu_processes(tmp_path: Path, suite: Path) -> None:
    """(The README's Fabric-launched command runs in the cache-identity test above.)"""
    (command,) = [c for c in _doc_commands(README_SECTION) if "nproc_per_node 2" in c]
    work = _work(tmp_path, suite)
    proc = subprocess.run(_as_local(command, work), cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
    _check(proc)
    assert proc.stdout.count("tables written to") == 1 and "rank 1 of 2" in proc.stderr
    records = [Record.read(p) for p in (work / "records").glob("*.json")]
    assert sorted(str(r.task) for r in records) == ["genre", "key"]


def test_sbatch_command_runs_as_two_slurm_tasks(tmp_path: Path, suite: Path) -> None:
    """The srun line of the example script, as the two tasks srun would start on one node."""
    (command,) = [c for c in _doc_commands(SBATCH) if c.startswith("srun ")]
    work = _work(tmp_path, suite)
    base = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1",
            "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1", "SLURM_JOB_ID": "4242",
            "SLURM_JOB_NAME": "mirprobe", "MASTER_PORT": str(_free_port())}
    procs = [subprocess.Popen(_as_local(command, work), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_env(**base, SLURM_PROCID=str(r), SLURM_LOCALID=str(r)))
             for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "tables written to" in outs[0][0] and "tables written to" not in outs[1][0]
    assert "rank 1 of 2" in outs[1][1] and "(slurm)" in outs[1][1]
    assert len(list((work / "records").glob("*.json"))) == 2


def test_every_documented_command_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dry run of the commands that need GPUs or nodes: launcher arguments, CLI, config, plan."""
    from torch.distributed.run import get_args_parser

    from mirprobe.cli import _split, build_parser
    from mirprobe.config import load_run_config

    for key in SLURM_KEYS + TORCHRUN_KEYS:
        monkeypatch.delenv(key, raising=False)
    commands = _doc_commands(README_SECTION) + _doc_commands(SBATCH)
    assert len(commands) >= 5, commands
    for command in commands:
        words = shlex.split(command)
        if words[0] == "torchrun":
            launcher = get_args_parser().parse_args(words[1:])
            assert launcher.module and launcher.training_script == "mirprobe.cli", command
            words = ["mirprobe", *launcher.training_script_args]
        elif words[0] == "sbatch":
            assert (ROOT / words[1]).resolve() == SBATCH.resolve(), command
            words = ["mirprobe", "run", *words[2:]]
        words = [w for w in words[words.index("mirprobe") + 1:] if not w.startswith("$")]
        ns = build_parser().parse_args(words)
        cfg = load_run_config(*_split(ns.args))
        launch = plan(cfg.launch.devices, cfg.launch.num_nodes, str(cfg.device))
        assert (launch.devices, launch.num_nodes) == (cfg.launch.devices, 1), command
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)


class BatchMixing(Extractor):
    """Each window's output mixes in its batch's mean: an exaggerated batch-shape-dependent kernel."""

    sample_rate, frame_rate, num_layers, dim, context_s = 8000, 10.0, 1, 2, 1.0

    def __init__(self) -> None:
        super().__init__("batch-mixing")

    def identity(self) -> dict:
        return {"kind": "batch-mixing"}

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        out = torch.empty(1, len(waves), self.num_frames(waves.shape[1]), 2)
        out[..., 0] = waves.abs().mean(dim=1)[None, :, None]
        out[..., 1] = waves.abs().mean()
        return out


def test_chunk_rows_do_not_depend_on_the_other_chunks_of_a_process(tmp_path: Path) -> None:
    """Ranks 0 and 1 of 2 (each its own chunks) give the rows of one process running them all."""
    keys = [str(write_tone(tmp_path / "audio" / f"t{i}.wav", 2.5, sr=8000, freq=100 + 90 * i, seed=i))
            for i in range(6)]  # windows of 1 s, 1 s, 0.5 s; chunks of 2 items; batches of 4
    options = {"batch_size": 4, "chunk_items": 2, "progress": False}
    one = FeatureStore(tmp_path / "one").extract(BatchMixing(), keys, **options)
    two = FeatureStore(tmp_path / "two")
    for rank in (0, 1):
        assert two.extract(BatchMixing(), keys, rank=rank, world_size=2, **options) is None
    joined = two.extract(BatchMixing(), keys, **options)  # every chunk on disk: only publishes
    assert one is not None and joined is not None
    assert _same_entries(tmp_path / "one", tmp_path / "two") == 1

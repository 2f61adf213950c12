"""Device-sensitive paths on the device given by ``--device`` (default cpu).

On a GPU machine: ``pytest -m device --device cuda`` (``perf/gpu_check.py`` runs it). On CPU these
tests run in every CI run, so the GPU path cannot rot unnoticed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mirprobe.cli import main
from mirprobe.features import FeatureEntry, FeatureStore
from mirprobe.models.random import SmallRandomExtractor
from mirprobe.plugins import get_task
from mirprobe.probes import ProbeConfig, SplitData, run_probe
from mirprobe.probes.plain import run_plain
from mirprobe.record import WEIGHTED, Record
from tests.conftest import write_tone

pytestmark = pytest.mark.device

TINY = ["synthetic.size=tiny", "tasks=[key,genre,tagging,emotion,beat]", "progress=false", "models=[random]", "probe.heads=[linear]",
        "probe.lr=[1e-2]", "probe.max_epochs=3", "extract.dtype=float32"]


def planted_genre(tracks: int = 240, layers: int = 3, dim: int = 24, seed: int = 0):  # noqa: ANN201
    """Clip features with a class signal in layer 1 only, and their splits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, tracks)
    x = rng.normal(size=(tracks, layers, dim)).astype(np.float32)
    x[:, 1, :4] += 4.0 * np.eye(4)[y]
    entry = FeatureEntry.from_arrays(x.astype(np.float16), np.arange(tracks + 1), frame_rate=1.0)
    cuts = {"train": np.arange(0, 160), "val": np.arange(160, 200), "test": np.arange(200, tracks)}
    splits = {s: SplitData(i, [f"g{y[k]}" for k in i], [f"t{k}" for k in i]) for s, i in cuts.items()}
    return entry, splits


def test_probe_engine_on_device_matches_the_plain_loop(device: torch.device) -> None:
    entry, splits = planted_genre()
    cfg = ProbeConfig(heads=["linear"], lr=[1e-3, 1e-2], max_epochs=15, patience=5, lr_patience=2)
    batched = run_probe(get_task("genre"), entry, splits, cfg, device=device, progress=False)
    plain = run_plain(get_task("genre"), entry, splits, cfg)  # CPU, torch.nn modules: the yardstick
    for row in batched.per_layer:
        ref = plain["per_layer"][-1 if row.weighted else row.index]
        assert abs(row.test["accuracy"] - ref["test"]["accuracy"]) <= 0.05, row.layer
    assert batched.best.layer in ("layer1", WEIGHTED), "the planted layer (or the sum) wins"
    assert batched.best.test["accuracy"] > 0.8


def test_extraction_on_device_matches_cpu(device: torch.device, tmp_path: Path) -> None:
    keys = [str(write_tone(tmp_path / f"a{i}.wav", 2.5 + i, freq=220.0 * (i + 1))) for i in range(3)]
    entries = {}
    for dev in ("cpu", device.type):
        store = FeatureStore(tmp_path / f"features-{dev}")
        entries[dev] = store.extract(SmallRandomExtractor().to(torch.device(dev)), keys, view="frame",
                                     batch_size=2, dtype="float32", progress=False)
    cpu, other = (np.asarray(entries[d].features, dtype=np.float32) for d in ("cpu", device.type))
    assert cpu.shape == other.shape
    assert np.abs(cpu - other).max() <= 1e-2 * max(1.0, np.abs(cpu).max())


def _records(home: Path) -> list[Record]:
    return [Record.read(p) for p in sorted((home / "records").glob("*.json"))]


def test_one_process_distributed_run_on_device(device: torch.device, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for dev in ("cpu", device.type):  # the CLI's run: Fabric's launch plan, one process
        monkeypatch.setenv("MIRPROBE_HOME", str(tmp_path / dev))
        assert main(["run", "quickstart", *TINY, "tasks=[genre]", f"device={dev}",
                     "launch.devices=1"]) == 0
    cpu, other = (_records(tmp_path / d)[0] for d in ("cpu", device.type))
    assert str(other.config.get("device", "")).startswith(device.type)
    assert cpu.layers == other.layers
    assert cpu.counts == other.counts, "the same tracks whatever the device"


def test_tiny_suite_end_to_end_on_device(device: torch.device, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.setenv("MIRPROBE_HOME", str(tmp_path))
    assert main(["run", "quickstart", *TINY, f"device={device.type}"]) == 0
    records = _records(tmp_path)
    assert sorted(str(r.task) for r in records) == ["beat", "emotion", "genre", "key", "tagging"]
    for r in records:
        assert np.isfinite(r.best.test[r.selection_metric]), r.task
    assert "Leaderboard" in capsys.readouterr().out

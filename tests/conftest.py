"""Shared fixtures: short synthesized audio and a tiny MARBLE-format dataset, made per test."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

# Test modules call librosa's numba functions directly, outside mirprobe's compile lock
# (mirprobe/tasks/numba_cache.py): each parallel worker gets a numba cache of its own.
if "PYTEST_XDIST_WORKER" in os.environ:
    _key = hashlib.sha1(sys.prefix.encode()).hexdigest()[:10]
    os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"mirprobe-tests-numba-{_key}"
                                        / os.environ["PYTEST_XDIST_WORKER"])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu",
                     help="device for the device-sensitive tests (-m device): cpu, cuda, mps")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device of the device-sensitive tests; skips when it is not available here."""
    dev = torch.device(request.config.getoption("--device"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda but no CUDA device is visible")
    return dev


def write_tone(path: Path, seconds: float, sr: int = 22050, freq: float = 440.0,
               channels: int = 1, seed: int = 0) -> Path:
    """A sine plus a little noise, written as 16-bit WAV."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    data = np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sr, subtype="PCM_16")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write into the user's real work folder from a test."""
    monkeypatch.setenv("MIRPROBE_HOME", str(tmp_path_factory.mktemp("mirprobe_home")))

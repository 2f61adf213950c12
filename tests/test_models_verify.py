"""The HEAR-style validator and the ``models`` CLI: passes a sound model, catches broken ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_models import (
    KERNELS,
    STRIDES,
    read_checkpoint,
    reference_hidden_states,
    write_checkpoint,
)

from mirprobe.cli import main
from mirprobe.models.mert import load_mert
from mirprobe.models.verify import DEFAULT_LENGTHS, Check, embed_windows, probe_signal, verify


def conv_frames(n: int) -> int:
    """Frames of the wav2vec2 conv stack for ``n`` samples, by hand."""
    for k, s in zip(KERNELS, STRIDES, strict=True):
        n = (n - k) // s + 1
    return max(n, 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("v") / "tiny", "postln16")


def test_sound_model_passes_every_check(tiny: Path) -> None:
    checks = verify(load_mert("tiny", checkpoint=str(tiny)))
    assert len(checks) == 4 * len(DEFAULT_LENGTHS) + 2  # + batched = alone, clip view
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_windows_match_reference_and_frame_counts(tiny: Path) -> None:
    ex = load_mert("tiny", checkpoint=str(tiny))
    cfg, sd = read_checkpoint(tiny)
    wave = probe_signal(11.0, 16000)  # two 5 s windows and a 1 s tail
    out, bounds = embed_windows(ex, wave)
    assert bounds == [(0, 80000), (80000, 160000), (160000, 176000)]
    assert out.shape == (3, 2 * conv_frames(80000) + conv_frames(16000), 32)
    ref = [reference_hidden_states(cfg, sd, torch.from_numpy(ex.prepare(wave[a:b]))[None])[:, 0]
           for a, b in bounds]
    np.testing.assert_allclose(out, torch.cat(ref, dim=1).numpy(), rtol=1e-5, atol=1e-5)
    tail, tail_bounds = embed_windows(ex, wave[: 80000 + 300])  # 300 samples: too short for a frame
    assert tail_bounds == [(0, 80000)] and tail.shape[1] == conv_frames(80000)


def _broken(tiny: Path, fault: str):
    ex = load_mert("broken", checkpoint=str(tiny))
    forward, num_frames = ex.forward, ex.num_frames
    if fault == "nan":
        ex.forward = lambda w: forward(w) * (float("nan") if w.shape[1] < 10000 else 1.0)
    elif fault == "frames":
        ex.num_frames = lambda n: num_frames(n) + 1 if num_frames(n) else 0
    elif fault == "crash":
        def crash(w: torch.Tensor) -> torch.Tensor:
            if w.shape[1] < 8000:
                raise RuntimeError("input too short")
            return forward(w)
        ex.forward = crash
    elif fault == "batch":  # a window's features depend on what else is in the batch
        ex.forward = lambda w: forward(w) + (w.shape[0] - 1)
    elif fault == "rate":
        ex.frame_rate = 60.0
    return ex


@pytest.mark.parametrize("fault,failing", [
    ("nan", "finite"), ("frames", "shape"), ("crash", "0.3 s: runs"),
    ("batch", "batched = alone"), ("rate", "frames vs duration"),
])
def test_broken_models_fail_the_right_check(tiny: Path, fault: str, failing: str) -> None:
    checks: list[Check] = verify(_broken(tiny, fault), (0.3, 6.0))
    failed = [c.name for c in checks if not c.ok]
    assert failed and all(failing in name for name in failed), failed


def test_cli_verify_and_list(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "verify", str(tiny), "--lengths", "0.3", "5.01"]) == 0
    out = capsys.readouterr().out
    assert "HubertModel (post layer norm, 2 x 32)" in out and "sample_rate   16000" in out
    assert out.count("PASS") == 10 and "FAIL" not in out
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    for name in ("mert-v1-330m", "mert-v1-95m", "mert-v0-public", "mert-v0", "music2vec-v1"):
        assert name in listing


def test_cli_verify_exits_nonzero_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nan_hear.py").write_text('''
import torch
class Model(torch.nn.Module):
    sample_rate = 16000
    timestamp_embedding_size = 4
def load_model(model_file_path=""):
    return Model()
def get_timestamp_embeddings(audio, model):
    n = audio.shape[1] // 160 + 1
    emb = torch.zeros(audio.shape[0], n, 4)
    emb[:, -1] = float("nan")
    return emb, (torch.arange(n) * 10.0).expand(audio.shape[0], n)
def get_scene_embeddings(audio, model):
    return get_timestamp_embeddings(audio, model)[0].mean(1)
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["models", "verify", "nan_hear", "--kind", "hear", "--lengths", "0.3"]) == 1
    assert "FAIL  0.3 s: finite" in capsys.readouterr().out
    assert main(["models", "verify", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err

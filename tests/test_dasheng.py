"""Dasheng: every layer equals the original package's (fixtures made once with ``dasheng`` 0.0.9,
see tests/fixtures/dasheng/README.md), across its 10.08 s chunks; damaged checkpoints are
one-line errors; the per-window dB floor makes a window's features independent of its batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mirprobe.errors import UserError
from mirprobe.models import detect_kind, load_model
from mirprobe.models.dasheng import ARCHITECTURES, load_dasheng, random_dasheng
from tests.conftest import write_tone
from tests.fixtures_models import assert_ranks_equal_one_process

FIXTURE = Path(__file__).parent / "fixtures" / "dasheng"
WEIGHTS = FIXTURE / "dasheng_tiny.pt"


@pytest.mark.parametrize("clip", ["short", "long"])
def test_every_layer_matches_the_original(clip: str) -> None:
    with np.load(FIXTURE / "reference.npz") as z:
        wave = torch.from_numpy(z[f"pcm_{clip}"].astype(np.float32) / 32768)[None]
        ref = z[f"hidden_{clip}"]
    ex = load_dasheng("d", checkpoint=str(WEIGHTS))
    out = ex.forward(wave).numpy()
    frames = {"short": 100, "long": 300}[clip]  # 4 s; 12 s = two chunks (252 + 48 tokens)
    assert out.shape == ref.shape == (4, 1, frames, 64) == (4, 1, ex.num_frames(wave.shape[1]), 64)
    assert (ex.sample_rate, ex.frame_rate, ex.num_layers, ex.dim, ex.context_s) == (16000, 25.0, 4, 64, 10.08)
    for layer in range(len(ref)):
        rel = np.abs(out[layer] - ref[layer]).max() / np.abs(ref[layer]).max()
        assert rel < 1e-4, f"{clip} layer {layer}: relative deviation {rel:.2e}"
    assert np.abs(ref[1] - ref[2]).max() > 0.1


def test_a_window_does_not_depend_on_its_batch() -> None:
    """The package floors the dB at 120 below the batch's peak; here each window at its own."""
    ex = load_dasheng("d", checkpoint=str(WEIGHTS))
    gen = torch.Generator().manual_seed(0)
    quiet, loud = 1e-5 * torch.randn(1, 16000, generator=gen), torch.randn(1, 16000, generator=gen)
    alone = ex.forward(quiet)
    together = ex.forward(torch.cat([loud, quiet]))[:, 1:]
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)


def test_damaged_checkpoints_and_variants(tmp_path: Path) -> None:
    dump = torch.load(WEIGHTS, weights_only=True)
    bad = tmp_path / "dasheng_base.pt"
    del dump["model"]["blocks.2.attn.proj.bias"]
    torch.save(dump, bad)
    with pytest.raises(UserError) as err:
        load_dasheng("d", checkpoint=str(bad))
    assert "blocks.2.attn.proj.bias" in str(err.value) and str(bad) in str(err.value)
    dump = torch.load(WEIGHTS, weights_only=True)
    dump["model"]["norm.weight"] = torch.ones(65)
    torch.save(dump, bad)
    with pytest.raises(UserError, match=r"wrong shape.*norm\.weight"):
        load_dasheng("d", checkpoint=str(bad))
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(UserError, match="dasheng package's checkpoint layout"):
        load_dasheng("d", checkpoint=str(bad))
    with pytest.raises(UserError, match="base, 0.6b, 1.2b"):
        load_dasheng("d", variant="2b")
    with pytest.raises(UserError, match=r"dasheng_06b\.pt.*zenodo\.org/records/11511780"):
        load_dasheng("d", variant="0.6b", checkpoint=str(tmp_path))
    assert detect_kind(str(WEIGHTS)) == {"kind": "dasheng"}


def test_published_sizes() -> None:
    ex = random_dasheng("dasheng-base")
    assert (ex.num_layers, ex.dim, ex.frame_rate, ex.context_s) == (13, 768, 25.0, 10.08)
    assert 85e6 < ex.num_parameters < 87e6  # ViT-B
    assert set(ARCHITECTURES) == {"dasheng-base", "dasheng-0.6b", "dasheng-1.2b"}


def test_embed_extraction_and_ranks(tmp_path: Path) -> None:
    ex = load_model(str(WEIGHTS))
    assert ex.kind == "dasheng"
    import soundfile as sf

    audio, sr = sf.read(write_tone(tmp_path / "a.wav", 12.0, sr=22050, freq=330, seed=1), dtype="float32")
    emb = ex.embed(audio, sr)
    assert emb.shape == (4, 300, 64) and np.isfinite(emb).all()  # windows of 10.08 s and 1.92 s
    keys = [str(write_tone(tmp_path / f"t{i}.wav", 2.5 + i, sr=44100, freq=200 + 60 * i, seed=i))
            for i in range(4)]
    assert assert_ranks_equal_one_process(ex, keys, tmp_path, "clip").shape == (4, 4, 64)

"""OMAR-RQ: every layer equals the original package's (fixtures made once with ``omar-rq`` 0.2.1,
see tests/fixtures/omar_rq/README.md) for a mel-input and a waveform-input model; the gin parser
reads the package's config syntax; damaged checkpoints are one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from mirprobe.errors import UserError
from mirprobe.models import detect_kind, load_model
from mirprobe.models.melspec import mel_filterbank
from mirprobe.models.omar_rq import load_omar_rq, parse_gin, random_omar_rq
from tests.conftest import write_tone
from tests.fixtures_models import assert_ranks_equal_one_process

FIXTURES = Path(__file__).parent / "fixtures" / "omar_rq"


@pytest.mark.parametrize("variant, rate, frames", [("mel", 15.625, 62), ("audio", 25.0, 100)])
def test_every_layer_matches_the_original(variant: str, rate: float, frames: int) -> None:
    with np.load(FIXTURES / variant / "reference.npz") as z:
        waves = torch.from_numpy(z["pcm"].astype(np.float32) / 32768)
        ref, eps = z["hidden_states"], float(z["eps"])
    ex = load_omar_rq("o", checkpoint=str(FIXTURES / variant))
    out = ex.forward(waves).numpy()
    assert out.shape == ref.shape == (4, 2, frames, 64)
    assert ex.frame_rate == eps == rate and ex.num_frames(waves.shape[1]) == frames
    for layer in range(len(ref)):
        rel = np.abs(out[layer] - ref[layer]).max() / np.abs(ref[layer]).max()
        assert rel < 1e-4, f"{variant} layer {layer}: relative deviation {rel:.2e}"
    assert np.abs(ref[1] - ref[2]).max() > 0.1


def test_attention_is_causal() -> None:
    """A change late in the clip leaves the earlier frames alone (causal attention; the conv
    module sees 15 frames ahead, so frames well before the change are compared)."""
    ex = load_omar_rq("o", checkpoint=str(FIXTURES / "audio"))
    gen = torch.Generator().manual_seed(0)
    a = 0.1 * torch.randn(1, 96000, generator=gen)
    b = a.clone()
    b[:, 80000:] = 0.1 * torch.randn(1, 16000, generator=gen)
    oa, ob = ex.forward(a), ex.forward(b)
    cut = 80000 // 960 - 16 * 3  # three layers of 15-frame conv look-ahead
    torch.testing.assert_close(oa[:, :, :cut], ob[:, :, :cut])
    assert (oa[:, :, -1] - ob[:, :, -1]).abs().max() > 1e-3


def test_gin_syntax() -> None:
    text = """
    new_freq = 24000  # a macro
    build_module.representation = [@nets.cqt.CQT, @nets.waveform.Waveform]
    nets.waveform.Waveform.sr = %new_freq
    nets.waveform.Waveform.patch_size = (1, 960) # 40ms
    train.params = {
        "devices": 4,   # on two lines
        "name": "a # b",
    }
    scope/nets.conformer.Conformer.use_rope = True
    """
    got = parse_gin(text, Path("config.gin"))
    assert got["build_module.representation"] == ["@CQT", "@Waveform"]
    assert got["Waveform.sr"] == 24000 and got["Waveform.patch_size"] == (1, 960)
    assert got["train.params"] == {"devices": 4, "name": "a # b"}
    assert got["Conformer.use_rope"] is True
    with pytest.raises(UserError, match=r"config\.gin: cannot read the binding a\.b"):
        parse_gin("a.b = open('x')", Path("config.gin"))


def test_slaney_filter_bank_matches_librosa() -> None:
    ours = mel_filterbank(16000, 512, 96, scale="slaney", norm="slaney")
    np.testing.assert_allclose(ours, librosa.filters.mel(sr=16000, n_fft=512, n_mels=96), atol=1e-7)


def test_damaged_checkpoints_and_variants(tmp_path: Path) -> None:
    folder = tmp_path / "omar"
    shutil.copytree(FIXTURES / "mel", folder)
    state = torch.load(folder / "model.ckpt", weights_only=True)
    del state["net.layers.2.conv_block.module.2.weight"]
    torch.save(state, folder / "model.ckpt")
    with pytest.raises(UserError) as err:
        load_omar_rq("o", checkpoint=str(folder))
    assert "net.layers.2.conv_block.module.2.weight" in str(err.value)
    assert str(folder / "model.ckpt") in str(err.value) and "\n" not in str(err.value)
    shutil.copy(FIXTURES / "mel" / "model.ckpt", folder / "model.ckpt")
    text = (folder / "config.gin").read_text()
    (folder / "config.gin").write_text(text.replace("embed_dim = 64", "embed_dim = 128"))
    with pytest.raises(UserError, match="wrong shape"):
        load_omar_rq("o", checkpoint=str(folder))
    (folder / "config.gin").write_text(text.replace("@nets.melspectrogram.MelSpectrogram\n",
                                                    "@nets.cqt.CQT\n"))
    with pytest.raises(UserError, match="input representation '@CQT' is not supported"):
        load_omar_rq("o", checkpoint=str(folder))
    (folder / "model.ckpt").unlink()
    with pytest.raises(UserError, match=r"model\.ckpt: not found beside config\.gin"):
        load_omar_rq("o", checkpoint=str(folder))
    with pytest.raises(UserError, match="base, multicodebook, multifeature"):
        load_omar_rq("o", variant="huge")
    assert detect_kind(str(FIXTURES / "mel")) == {"kind": "omar-rq"}
    assert detect_kind("mtg-upf/omar-rq-base") == {"kind": "omar-rq"}


def test_published_size() -> None:
    ex = random_omar_rq("omar-rq-base")
    assert (ex.num_layers, ex.dim, ex.frame_rate, ex.sample_rate) == (25, 1024, 15.625, 16000)
    d, h = 1024, 4096  # counted by hand, per layer:
    feed_forward = 2 * d + (d * h + h) + (h * d + d)  # LayerNorm, two linear layers
    attention = 3 * d * d + (d * d + d) + (d // 8) // 2  # qkv (no bias), projection, rotary freqs
    conv = (d * 2 * d + 2 * d) + (31 * d + d) + 2 * d + (d * d + d) + 2 * d  # + BN, LayerNorm
    layer = 2 * feed_forward + attention + conv + 2 * 2 * d  # DeepNorm's and the final LayerNorm
    assert ex.num_parameters == 24 * layer + (96 * 4 * d + d)  # + the patch embedding: ~580 M


def test_embed_extraction_and_ranks(tmp_path: Path) -> None:
    ex = load_model(str(FIXTURES / "audio"), context_s=2.0)
    assert ex.kind == "omar-rq"
    audio, sr = sf.read(write_tone(tmp_path / "a.wav", 5.0, sr=16000, freq=330, seed=1), dtype="float32")
    emb = ex.embed(audio, sr)
    assert emb.shape == (4, 125, 64) and np.isfinite(emb).all()  # windows of 2 s, 2 s, 1 s
    keys = [str(write_tone(tmp_path / f"t{i}.wav", 2.5 + i, sr=22050, freq=200 + 60 * i, seed=i))
            for i in range(4)]
    assert assert_ranks_equal_one_process(ex, keys, tmp_path, "frame").shape[1:] == (4, 64)

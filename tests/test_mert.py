"""Native MERT-family loading: every layer against an independent plain-torch forward."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_models import (
    VARIANTS,
    make_state_dict,
    read_checkpoint,
    reference_hidden_states,
    tiny_config,
    write_checkpoint,
    write_hear_module,
)

from mirprobe.errors import UserError
from mirprobe.models.hear import load_hear
from mirprobe.models.hf import load_hf
from mirprobe.models.hub import resolve_checkpoint
from mirprobe.models.mert import ARCHITECTURES, load_mert, random_architecture

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {v: write_checkpoint(root / v, v) for v in VARIANTS}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_layer_matches_reference(checkpoints: dict[str, Path], variant: str) -> None:
    folder = checkpoints[variant]
    ex = load_mert(variant, checkpoint=str(folder))
    cfg, sd = read_checkpoint(folder)
    _, rate, normalize, _ = VARIANTS[variant]
    assert (ex.sample_rate, ex.normalize, ex.num_layers, ex.dim) == (rate, normalize, 3, 32)
    assert ex.frame_rate == rate / 320
    waves = torch.randn(2, int(1.3 * rate), generator=torch.Generator().manual_seed(1))
    out = ex.forward(waves)
    ref = reference_hidden_states(cfg, sd, waves)
    assert out.shape == ref.shape == (3, 2, ex.num_frames(waves.shape[1]), 32)
    for layer in range(ex.num_layers):
        torch.testing.assert_close(out[layer], ref[layer], **TOL, msg=f"layer {layer}")


def test_stable_ln_last_layer_is_after_final_norm(checkpoints: dict[str, Path]) -> None:
    """The 4.x convention; the state before the final norm differs (so this test can fail)."""
    folder = checkpoints["stableln24"]
    cfg, sd = read_checkpoint(folder)
    waves = torch.randn(1, 24000, generator=torch.Generator().manual_seed(2))
    out = load_mert("s", checkpoint=str(folder)).forward(waves)
    torch.testing.assert_close(out[-1], reference_hidden_states(cfg, sd, waves)[-1], **TOL)
    before_norm = reference_hidden_states(cfg, sd, waves, final_norm=False)[-1]
    assert (out[-1] - before_norm).abs().max() > 0.1


def test_layer_selection(checkpoints: dict[str, Path]) -> None:
    folder = checkpoints["stableln24"]
    cfg, sd = read_checkpoint(folder)
    ex = load_mert("s", checkpoint=str(folder), layers=[0, 2])
    waves = torch.randn(1, 12000, generator=torch.Generator().manual_seed(3))
    out = ex.forward(waves)
    ref = reference_hidden_states(cfg, sd, waves)
    assert ex.num_layers == 2 and ex.layer_names() == ["layer0", "layer2"]
    torch.testing.assert_close(out, ref[[0, 2]], **TOL)
    with pytest.raises(UserError, match="layers"):
        load_mert("s", checkpoint=str(folder), layers=[0, 7])


def test_five_second_clip_alone_equals_batched(checkpoints: dict[str, Path]) -> None:
    ex = load_mert("p", checkpoint=str(checkpoints["postln24"]))
    gen = torch.Generator().manual_seed(4)
    clips = torch.randn(3, 5 * 24000, generator=gen)
    clips = torch.from_numpy(np.stack([ex.prepare(c.numpy()) for c in clips]))
    batched = ex.forward(clips)
    alone = ex.forward(clips[1:2])
    assert batched.shape[2] == 374  # 5 s at 24 kHz: the real conv strides
    torch.testing.assert_close(alone[:, 0], batched[:, 1], rtol=1e-5, atol=1e-5)


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(folder)[1]


def test_missing_weight_fails_naming_it(tmp_path: Path) -> None:
    sd = make_state_dict(tiny_config("postln24"))
    del sd["encoder.layers.1.feed_forward.output_dense.bias"]
    folder = write_checkpoint(tmp_path / "m", "postln24", state=sd)
    with pytest.raises(UserError, match=r"missing weights.*encoder\.layers\.1\.feed_forward\.output_dense\.bias"):
        load_mert("m", checkpoint=str(folder))


def test_missing_weight_norm_fails(tmp_path: Path) -> None:
    sd = make_state_dict(tiny_config("postln24"))
    del sd["encoder.pos_conv_embed.conv.weight_g"]
    folder = write_checkpoint(tmp_path / "g", "postln24", state=sd)
    with pytest.raises(UserError, match=r"pos_conv_embed\.conv\.parametrizations\.weight\.original0"):
        load_mert("g", checkpoint=str(folder))


def test_renamed_weight_fails_naming_both(tmp_path: Path) -> None:
    sd = make_state_dict(tiny_config("stableln24"))
    sd["encoder.layers.0.attention.query.weight"] = sd.pop("encoder.layers.0.attention.q_proj.weight")
    folder = write_checkpoint(tmp_path / "r", "stableln24", state=sd)
    with pytest.raises(UserError) as err:
        load_mert("r", checkpoint=str(folder))
    assert "encoder.layers.0.attention.q_proj.weight" in str(err.value)
    assert "encoder.layers.0.attention.query.weight" in str(err.value)
    assert str(folder) in str(err.value)


def test_wrong_shape_fails(tmp_path: Path) -> None:
    sd = make_state_dict(tiny_config("data2vec16"))
    sd["encoder.layer_norm.weight"] = torch.ones(33)
    folder = write_checkpoint(tmp_path / "w", "data2vec16", state=sd)
    with pytest.raises(UserError, match=r"wrong shape.*encoder\.layer_norm\.weight"):
        load_mert("w", checkpoint=str(folder))


@pytest.mark.parametrize("flag", ["feature_extractor_cqt", "deepnorm"])
def test_refuses_cqt_and_deepnorm(tmp_path: Path, flag: str) -> None:
    folder = write_checkpoint(tmp_path / flag, "postln24", **{flag: True})
    with pytest.raises(UserError, match=flag):
        load_mert(flag, checkpoint=str(folder))


def test_remote_code_is_never_run(checkpoints: dict[str, Path]) -> None:
    load_mert("p", checkpoint=str(checkpoints["postln24"]))
    assert "modeling_MERT" not in sys.modules and "configuration_MERT" not in sys.modules


def test_hub_name_resolves_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    repo = cache / "models--m-a-p--MERT-tiny"
    write_checkpoint(repo / "snapshots" / "abc123", "postln16")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("MIRPROBE_MODELS", raising=False)
    assert resolve_checkpoint("m-a-p/MERT-tiny") == repo / "snapshots" / "abc123"
    ex = load_mert("MERT-tiny", checkpoint="m-a-p/MERT-tiny")
    assert ex.sample_rate == 16000
    models = tmp_path / "models"
    write_checkpoint(models / "MERT-other", "postln24")
    monkeypatch.setenv("MIRPROBE_MODELS", str(models))
    assert load_mert("o", "m-a-p/MERT-other").sample_rate == 24000


def test_absent_weights_say_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("MIRPROBE_MODELS", str(tmp_path / "models"))
    with pytest.raises(UserError) as err:
        load_mert("x", checkpoint="m-a-p/MERT-v1-95M")
    msg = str(err.value)
    assert str(tmp_path / "hub" / "models--m-a-p--MERT-v1-95M") in msg
    assert str(tmp_path / "models") in msg and "download m-a-p/MERT-v1-95M" in msg
    folder = write_checkpoint(tmp_path / "noweights", "postln24")
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(UserError, match="no weights"):
        load_mert("x", checkpoint=str(folder))


def test_hub_blob_digest_is_the_file_sha256(tmp_path: Path) -> None:
    """In the hub cache a weight file links to a blob named by its SHA-256, used without reading."""
    import hashlib

    from mirprobe.models.hub import weight_files, weights_digest

    folder = write_checkpoint(tmp_path / "plain", "postln16")
    data = (folder / "pytorch_model.bin").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / sha).write_bytes(data)
    snap = write_checkpoint(tmp_path / "snap", "postln16")
    (snap / "pytorch_model.bin").unlink()
    (snap / "pytorch_model.bin").symlink_to(blobs / sha)
    assert weights_digest(weight_files(folder)) == sha == weights_digest(weight_files(snap))
    assert load_mert("a", checkpoint=str(folder)).fingerprint() == load_mert("b", checkpoint=str(snap)).fingerprint()


def test_safetensors_and_corrupt_weights(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = write_checkpoint(tmp_path / "st", "postln16")
    _, sd = read_checkpoint(folder)
    save_file({k: v.contiguous() for k, v in sd.items()}, folder / "model.safetensors")
    (folder / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    waves = torch.randn(1, 8000, generator=torch.Generator().manual_seed(8))
    ref = reference_hidden_states(tiny_config("postln16"), sd, waves)
    torch.testing.assert_close(load_mert("st", checkpoint=str(folder)).forward(waves), ref, **TOL)
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"pytorch_model\.bin: cannot read the weights"):
        load_mert("st", checkpoint=str(folder))


def test_identity_follows_weights(tmp_path: Path) -> None:
    a = write_checkpoint(tmp_path / "a", "postln24", seed=0)
    b = write_checkpoint(tmp_path / "b", "postln24", seed=0)
    c = write_checkpoint(tmp_path / "c", "postln24", seed=1)
    fp = [load_mert("m", checkpoint=str(f)).fingerprint() for f in (a, b, c)]
    assert fp[0] == fp[1] != fp[2]


def test_expected_facts_are_checked(checkpoints: dict[str, Path]) -> None:
    folder = str(checkpoints["postln24"])
    load_mert("m", checkpoint=folder, sample_rate=24000, frame_rate=75, num_layers=3, dim=32)
    with pytest.raises(UserError, match="dim 768"):
        load_mert("m", checkpoint=folder, dim=768)
    with pytest.raises(UserError, match="unknown option"):
        load_mert("m", checkpoint=folder, bogus=1)


def test_random_architecture_is_seeded() -> None:
    a, b, c = (random_architecture("tiny", s) for s in (0, 0, 1))
    waves = torch.randn(1, 8000, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.forward(waves), b.forward(waves))
    assert not torch.allclose(a.forward(waves), c.forward(waves))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert a.kind == "random" and a.num_layers == 3
    with pytest.raises(UserError, match="mert-v1-95m"):
        random_architecture("nope", 0)


def _hubert_parameters(h: int, layers: int, ffn: int, pos_kernel: int = 128, pos_groups: int = 16) -> int:
    """Parameter count of a HuBERT encoder with the 7-layer 512-channel conv front end, by hand."""
    conv = 512 * 10 + sum(512 * 512 * k for k in (3, 3, 3, 3, 2, 2)) + 2 * 512  # + group norm
    projection = 2 * 512 + 512 * h + h
    positional = h * (h // pos_groups) * pos_kernel + pos_kernel + h  # weight_v, weight_g, bias
    layer = 4 * (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 2 * 2 * h
    return conv + projection + positional + 2 * h + layers * layer


@pytest.mark.parametrize("arch,h,n,ffn", [("mert-v1-95m", 768, 12, 3072), ("tiny", 32, 2, 64)])
def test_random_architecture_sizes(arch: str, h: int, n: int, ffn: int) -> None:
    ex = random_architecture(arch, 0)
    if arch == "tiny":
        assert ex.num_parameters < 200_000
    else:
        assert ex.num_parameters == _hubert_parameters(h, n, ffn)
        assert (ex.num_layers, ex.dim, ex.sample_rate, ex.frame_rate) == (13, 768, 24000, 75.0)
    assert set(ARCHITECTURES) >= {"mert-v1-95m", "mert-v1-330m", "mert-v0", "music2vec-v1", "tiny"}


def test_hf_kind_wav2vec2_stable_ln(tmp_path: Path) -> None:
    """A plain transformers folder (save_pretrained) of a stable-LN wav2vec2, against the reference."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = tiny_config("stableln24")
    arch = {k: cfg[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                "intermediate_size", "conv_dim", "conv_stride", "conv_kernel",
                                "num_conv_pos_embeddings", "num_conv_pos_embedding_groups")}
    config = Wav2Vec2Config(**arch, do_stable_layer_norm=True, feat_extract_norm="group")
    torch.manual_seed(0)
    model = Wav2Vec2Model(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "w2v")
    (tmp_path / "w2v" / "preprocessor_config.json").write_text(
        json.dumps({"sampling_rate": 16000, "do_normalize": True}))
    ex = load_hf("w2v", checkpoint=str(tmp_path / "w2v"))
    sd = {k: v for k, v in model.state_dict().items()}
    sd["encoder.pos_conv_embed.conv.weight_g"] = sd.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original0")
    sd["encoder.pos_conv_embed.conv.weight_v"] = sd.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original1")
    ref_cfg = {**cfg, "model_type": "wav2vec2", "do_stable_layer_norm": True}
    waves = torch.randn(2, 16000, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(ex.forward(waves), reference_hidden_states(ref_cfg, sd, waves), **TOL)
    assert ex.kind == "hf" and ex.sample_rate == 16000 and ex.normalize
    with pytest.raises(UserError, match="kind: mert"):
        load_hf("m", checkpoint=str(write_checkpoint(tmp_path / "mert", "postln24")))


def test_hear_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = write_hear_module(tmp_path / "mods")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    ex = load_hear("tiny-hear", module=module)
    assert (ex.num_layers, ex.dim, ex.sample_rate) == (1, 8, 16000)
    assert ex.frame_rate == pytest.approx(40.0)
    waves = torch.randn(2, 16000, generator=torch.Generator().manual_seed(7))
    out = ex.forward(waves)
    mod = sys.modules[module]
    emb, _ = mod.get_timestamp_embeddings(waves, mod.load_model())
    torch.testing.assert_close(out[0], emb)
    assert out.shape[2] == ex.num_frames(16000)
    with pytest.raises(UserError, match="no_such_module"):
        load_hear("x", module="no_such_module")

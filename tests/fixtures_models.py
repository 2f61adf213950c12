"""Tiny MERT-shaped checkpoints in the real on-disk layout, and an independent reference forward.

``write_checkpoint`` writes what a Hugging Face snapshot of a MERT-family model holds:
``config.json`` (``model_type: mert_model`` with an ``auto_map`` to remote code, the HuBERT fields
and MERT's extra ones), ``preprocessor_config.json`` (a ``Wav2Vec2FeatureExtractor``),
``pytorch_model.bin`` (HuBERT parameter names, no prefix, the old weight-norm names
``weight_g``/``weight_v``) and remote-code files that must never run. The conv front end keeps the
real strides and kernels, so frame rates stay true; everything else is small.

``reference_hidden_states`` recomputes every hidden state from the state dict with plain
``torch.nn.functional`` calls — no transformers code — with the transformers 4.x convention:
layer 0 is the input of the first transformer layer, and the last state of a stable-layer-norm
model is taken after the final layer norm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

STRIDES = [5, 2, 2, 2, 2, 2, 2]
KERNELS = [10, 3, 3, 3, 3, 2, 2]

#: name → (model_type, sample rate, do_normalize, architecture overrides)
VARIANTS: dict[str, tuple[str, int, bool, dict[str, Any]]] = {
    "postln24": ("mert_model", 24000, True, {"do_stable_layer_norm": False}),
    "stableln24": ("mert_model", 24000, False, {"do_stable_layer_norm": True}),
    "postln16": ("mert_model", 16000, True, {"do_stable_layer_norm": False}),
    "data2vec16": ("data2vec-audio", 16000, True, {}),
}

_REMOTE_CODE = 'raise RuntimeError("remote code must not be executed by the loader")\n'


def tiny_config(variant: str, **overrides: Any) -> dict[str, Any]:
    """config.json contents of a tiny checkpoint of ``variant``."""
    model_type, rate, _, arch = VARIANTS[variant]
    common = {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "conv_dim": [16] * 7, "conv_stride": STRIDES, "conv_kernel": KERNELS, "conv_bias": False,
        "hidden_act": "gelu", "feat_extract_activation": "gelu", "layer_norm_eps": 1e-5,
        "num_conv_pos_embedding_groups": 4, "hidden_dropout": 0.1, "attention_dropout": 0.1,
        "activation_dropout": 0.1, "feat_proj_dropout": 0.0, "layerdrop": 0.1,
        "mask_time_prob": 0.05, "mask_time_length": 10, "vocab_size": 32,
        "transformers_version": "4.25.1", "torch_dtype": "float32",
    }
    if model_type == "data2vec-audio":
        cfg = {**common, "model_type": "data2vec-audio", "architectures": ["Data2VecAudioModel"],
               "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5}
    else:
        cfg = {**common, "model_type": "mert_model", "architectures": ["MERTModel"],
               "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig",
                            "AutoModel": "modeling_MERT.MERTModel"},
               "feat_extract_norm": "group", "feat_proj_layer_norm": True,
               "num_conv_pos_embeddings": 16, "conv_pos_batch_norm": False,
               "sample_rate": rate, "feature_extractor_cqt": False, "feature_extractor_cqt_bins": 336,
               "deepnorm": False, "attention_relax": 32.0 if arch.get("do_stable_layer_norm") else -1.0,
               **arch}
    cfg.update(overrides)
    return cfg


def _linear(gen: torch.Generator, out_dim: int, in_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.randn(out_dim, in_dim, generator=gen) / in_dim**0.5
    return w, 0.1 * torch.randn(out_dim, generator=gen)


def _norm(gen: torch.Generator, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    return 1 + 0.2 * torch.randn(dim, generator=gen), 0.2 * torch.randn(dim, generator=gen)


def make_state_dict(cfg: dict[str, Any], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the on-disk parameter names of ``cfg``'s architecture."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    data2vec = cfg["model_type"] == "data2vec-audio"
    h, inter, dims = cfg["hidden_size"], cfg["intermediate_size"], cfg["conv_dim"]
    prev = 1
    for i, (dim, k) in enumerate(zip(dims, cfg["conv_kernel"], strict=True)):
        sd[f"feature_extractor.conv_layers.{i}.conv.weight"] = torch.randn(dim, prev, k, generator=gen) / (prev * k) ** 0.5
        if data2vec or i == 0 or cfg.get("feat_extract_norm") == "layer":
            w, b = _norm(gen, dim)
            sd[f"feature_extractor.conv_layers.{i}.layer_norm.weight"] = w
            sd[f"feature_extractor.conv_layers.{i}.layer_norm.bias"] = b
        prev = dim
    w, b = _norm(gen, dims[-1])
    sd["feature_projection.layer_norm.weight"], sd["feature_projection.layer_norm.bias"] = w, b
    sd["feature_projection.projection.weight"], sd["feature_projection.projection.bias"] = _linear(gen, h, dims[-1])
    groups = cfg["num_conv_pos_embedding_groups"]
    if data2vec:
        k = cfg["conv_pos_kernel_size"]
        for j in range(cfg["num_conv_pos_embeddings"]):
            sd[f"encoder.pos_conv_embed.layers.{j}.conv.weight"] = torch.randn(h, h // groups, k, generator=gen) / (h // groups * k) ** 0.5
            sd[f"encoder.pos_conv_embed.layers.{j}.conv.bias"] = 0.1 * torch.randn(h, generator=gen)
    else:
        k = cfg["num_conv_pos_embeddings"]
        sd["encoder.pos_conv_embed.conv.weight_g"] = 0.5 + torch.rand(1, 1, k, generator=gen)
        sd["encoder.pos_conv_embed.conv.weight_v"] = torch.randn(h, h // groups, k, generator=gen)
        sd["encoder.pos_conv_embed.conv.bias"] = 0.1 * torch.randn(h, generator=gen)
    sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"] = _norm(gen, h)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"encoder.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[p + f"attention.{proj}.weight"], sd[p + f"attention.{proj}.bias"] = _linear(gen, h, h)
        sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"] = _norm(gen, h)
        sd[p + "feed_forward.intermediate_dense.weight"], sd[p + "feed_forward.intermediate_dense.bias"] = _linear(gen, inter, h)
        sd[p + "feed_forward.output_dense.weight"], sd[p + "feed_forward.output_dense.bias"] = _linear(gen, h, inter)
        sd[p + "final_layer_norm.weight"], sd[p + "final_layer_norm.bias"] = _norm(gen, h)
    sd["masked_spec_embed"] = torch.rand(h, generator=gen)
    return sd


def write_checkpoint(folder: Path, variant: str, *, seed: int = 0, state: dict[str, torch.Tensor] | None = None,
                     **config_overrides: Any) -> Path:
    """Write a tiny checkpoint of ``variant`` in the Hugging Face snapshot layout; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(variant, **config_overrides)
    _, rate, normalize, _ = VARIANTS[variant]
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "padding_side": "right",
        "padding_value": 0.0, "return_attention_mask": True, "do_normalize": normalize,
        "sampling_rate": rate}, indent=2))
    if cfg["model_type"] == "mert_model":
        (folder / "configuration_MERT.py").write_text(_REMOTE_CODE)
        (folder / "modeling_MERT.py").write_text(_REMOTE_CODE)
    torch.save(state if state is not None else make_state_dict(cfg, seed), folder / "pytorch_model.bin")
    return folder


def read_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    cfg = json.loads((folder / "config.json").read_text())
    return cfg, torch.load(folder / "pytorch_model.bin", weights_only=True)


# -- independent reference forward ------------------------------------------------------------

def _attention(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str, heads: int) -> torch.Tensor:
    b, t, h = x.shape
    d = h // heads

    def split(name: str) -> torch.Tensor:
        y = F.linear(x, sd[p + f"{name}.weight"], sd[p + f"{name}.bias"])
        return y.view(b, t, heads, d).transpose(1, 2)

    q, k, v = split("q_proj"), split("k_proj"), split("v_proj")
    weights = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, t, h)
    return F.linear(out, sd[p + "out_proj.weight"], sd[p + "out_proj.bias"])


def _ln(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)


def _feed_forward(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    y = F.gelu(F.linear(x, sd[p + "intermediate_dense.weight"], sd[p + "intermediate_dense.bias"]))
    return F.linear(y, sd[p + "output_dense.weight"], sd[p + "output_dense.bias"])


def _front_end(wave: torch.Tensor, cfg: dict[str, Any], sd: dict[str, torch.Tensor]) -> torch.Tensor:
    data2vec = cfg["model_type"] == "data2vec-audio"
    eps = cfg["layer_norm_eps"]
    x = wave[:, None]
    for i, stride in enumerate(cfg["conv_stride"]):
        p = f"feature_extractor.conv_layers.{i}."
        x = F.conv1d(x, sd[p + "conv.weight"], sd.get(p + "conv.bias"), stride=stride)
        if data2vec or cfg.get("feat_extract_norm") == "layer":
            x = F.layer_norm(x.transpose(1, 2), x.shape[1:2], sd[p + "layer_norm.weight"],
                             sd[p + "layer_norm.bias"], eps).transpose(1, 2)
        elif i == 0:  # group norm with one group per channel, first layer only
            x = F.group_norm(x, x.shape[1], sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"], eps)
        x = F.gelu(x)
    x = x.transpose(1, 2)
    if data2vec or cfg.get("feat_proj_layer_norm", True):
        x = _ln(x, sd, "feature_projection.layer_norm", eps)
    return F.linear(x, sd["feature_projection.projection.weight"], sd["feature_projection.projection.bias"])


def _positional(x: torch.Tensor, cfg: dict[str, Any], sd: dict[str, torch.Tensor]) -> torch.Tensor:
    groups = cfg["num_conv_pos_embedding_groups"]
    y = x.transpose(1, 2)
    if cfg["model_type"] == "data2vec-audio":
        k = cfg["conv_pos_kernel_size"]
        for j in range(cfg["num_conv_pos_embeddings"]):
            p = f"encoder.pos_conv_embed.layers.{j}.conv."
            y = F.conv1d(y, sd[p + "weight"], sd[p + "bias"], padding=k // 2, groups=groups)
            y = y[..., :-1] if k % 2 == 0 else y
            y = F.gelu(F.layer_norm(y.transpose(1, 2), y.shape[1:2], eps=cfg["layer_norm_eps"]).transpose(1, 2))
        return y.transpose(1, 2)
    k = cfg["num_conv_pos_embeddings"]
    g, v = sd["encoder.pos_conv_embed.conv.weight_g"], sd["encoder.pos_conv_embed.conv.weight_v"]
    weight = g * v / v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()  # weight norm over dim 2
    y = F.conv1d(y, weight, sd["encoder.pos_conv_embed.conv.bias"], padding=k // 2, groups=groups)
    y = y[..., :-1] if k % 2 == 0 else y
    return F.gelu(y).transpose(1, 2)


@torch.no_grad()
def reference_hidden_states(cfg: dict[str, Any], sd: dict[str, torch.Tensor], wave: torch.Tensor,
                            final_norm: bool = True) -> torch.Tensor:
    """``[B, samples]`` → ``[layers, B, frames, dim]`` computed from the state dict alone.

    ``final_norm=False`` gives the last state of a stable-layer-norm model before its final norm
    (what transformers 5.x returns by default).
    """
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    x = _front_end(wave, cfg, sd)
    x = x + _positional(x, cfg, sd)
    states = []
    if cfg.get("do_stable_layer_norm"):
        states.append(x)
        for layer in range(cfg["num_hidden_layers"]):
            p = f"encoder.layers.{layer}."
            x = x + _attention(_ln(x, sd, p + "layer_norm", eps), sd, p + "attention.", heads)
            x = x + _feed_forward(_ln(x, sd, p + "final_layer_norm", eps), sd, p + "feed_forward.")
            states.append(x)
        if final_norm:
            states[-1] = _ln(x, sd, "encoder.layer_norm", eps)
    else:
        x = _ln(x, sd, "encoder.layer_norm", eps)
        states.append(x)
        for layer in range(cfg["num_hidden_layers"]):
            p = f"encoder.layers.{layer}."
            x = _ln(x + _attention(x, sd, p + "attention.", heads), sd, p + "layer_norm", eps)
            x = _ln(x + _feed_forward(x, sd, p + "feed_forward."), sd, p + "final_layer_norm", eps)
            states.append(x)
    return torch.stack(states)


def write_hear_module(folder: Path, module: str = "tiny_hear", dim: int = 8, hop_ms: float = 25.0) -> str:
    """A minimal module implementing the HEAR API (frame energies projected by a fixed matrix)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(f'''
import torch

class Model(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = {dim}
    timestamp_embedding_size = {dim}

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(4, {dim}, generator=gen))


def load_model(model_file_path=""):
    return Model()


def get_timestamp_embeddings(audio, model):
    hop = int(model.sample_rate * {hop_ms} / 1000)
    n = audio.shape[1] // hop + 1
    padded = torch.nn.functional.pad(audio, (0, n * hop - audio.shape[1] + hop))
    frames = padded[:, : n * hop].reshape(audio.shape[0], n, hop)
    feats = torch.stack([frames.mean(-1), frames.std(-1), frames.abs().amax(-1), frames.pow(2).mean(-1)], -1)
    emb = feats @ model.proj
    ts = torch.arange(n, dtype=torch.float32) * {hop_ms}
    return emb, ts.expand(audio.shape[0], n)


def get_scene_embeddings(audio, model):
    emb, _ = get_timestamp_embeddings(audio, model)
    return emb.mean(1)
''')
    return module


def assert_ranks_equal_one_process(extractor: Any, keys: list[str], root: Path, view: str) -> np.ndarray:
    """Ranks 0 and 1 of 2 (each its own chunks, then published) give the features of one process;
    returns them ``[rows, layers, width]``."""
    from mirprobe.features import FeatureStore

    options = {"view": view, "batch_size": 2, "chunk_items": 1, "progress": False}
    one = FeatureStore(root / "one").extract(extractor, keys, **options)
    two = FeatureStore(root / "two")
    for rank in (0, 1):
        assert two.extract(extractor, keys, rank=rank, world_size=2, **options) is None
    joined = two.extract(extractor, keys, **options)
    a, b = np.asarray(one.features), np.asarray(joined.features)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    return a

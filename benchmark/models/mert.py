"""The MERT family and music2vec, loaded natively with transformers 5.x (no remote code).

Every released MERT checkpoint has ``feature_extractor_cqt`` and ``deepnorm`` off; with both off
MERT's remote ``MERTModel`` computes exactly what transformers' ``HubertModel`` computes, so a
``HubertConfig`` is built from the HuBERT fields of ``config.json`` (``model_type`` ``mert_model``
or ``hubert``); ``data2vec-audio`` (music2vec-v1) becomes a ``Data2VecAudioModel``. The state
dict is read here (safetensors, or ``torch.load(weights_only=True)``), the old weight-norm names
``weight_g``/``weight_v`` are mapped to the parametrised ones, and any missing, unexpected or
mis-shaped weight is an error naming it — never a silently random layer.

``random_architecture`` builds the same networks with random weights: the standard control.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from mirprobe.errors import UserError
from mirprobe.models.hf import (
    TransformersExtractor,
    check_expected,
    read_json,
    read_preprocessing,
    split_options,
)
from mirprobe.models.hub import resolve_checkpoint, weight_files, weights_digest

HUBERT_TYPES = ("mert_model", "hubert")
DATA2VEC_TYPES = ("data2vec-audio",)
#: Config fields that only matter in training: zeroed so inference is deterministic and no
#: training-only parameter (``masked_spec_embed``) is created.
INFERENCE_OVERRIDES = {"mask_time_prob": 0.0, "mask_feature_prob": 0.0, "layerdrop": 0.0,
                       "hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
                       "feat_proj_dropout": 0.0, "final_dropout": 0.0}
#: Config fields that never reach the network (bookkeeping, labels, output switches).
IGNORED_FIELDS = {"transformers_version", "architectures", "output_hidden_states", "return_dict",
                  "dtype", "id2label", "label2id", "problem_type", "chunk_size_feed_forward",
                  "is_encoder_decoder"}
#: Weights saved by pre-training that inference does not use (dropped when present).
TRAINING_ONLY_WEIGHTS = ("masked_spec_embed",)
#: Features of MERT's remote code that HubertModel does not have: refuse rather than be wrong.
REFUSED_FLAGS = ("feature_extractor_cqt", "deepnorm")

_V1 = {"conv_dim": [512] * 7, "conv_stride": [5, 2, 2, 2, 2, 2, 2], "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
       "conv_bias": False, "feat_extract_norm": "group", "feat_proj_layer_norm": True,
       "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16, "hidden_act": "gelu"}
_BASE = {**_V1, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
         "intermediate_size": 3072, "do_stable_layer_norm": False}
#: Built-in architectures: model_type, config fields, sample rate, waveform normalisation.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "mert-v1-95m": {"model_type": "mert_model", "config": _BASE, "sample_rate": 24000, "normalize": True},
    "mert-v1-330m": {"model_type": "mert_model", "sample_rate": 24000, "normalize": False,
                     "config": {**_V1, "hidden_size": 1024, "num_hidden_layers": 24,
                                "num_attention_heads": 16, "intermediate_size": 4096,
                                "do_stable_layer_norm": True}},
    "mert-v0": {"model_type": "mert_model", "config": _BASE, "sample_rate": 16000, "normalize": True},
    "mert-v0-public": {"model_type": "mert_model", "config": _BASE, "sample_rate": 16000,
                       "normalize": True},
    "music2vec-v1": {"model_type": "data2vec-audio", "sample_rate": 16000, "normalize": True,
                     "config": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                                "intermediate_size": 3072, "conv_dim": [512] * 7,
                                "conv_stride": [5, 2, 2, 2, 2, 2, 2],
                                "conv_kernel": [10, 3, 3, 3, 3, 2, 2], "conv_bias": False,
                                "num_conv_pos_embeddings": 5, "conv_pos_kernel_size": 19,
                                "num_conv_pos_embedding_groups": 16}},
    "tiny": {"model_type": "mert_model", "sample_rate": 24000, "normalize": True,
             "config": {**_V1, "conv_dim": [32] * 7, "hidden_size": 32, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "intermediate_size": 64,
                        "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4,
                        "do_stable_layer_norm": False}},
}


def model_classes(model_type: str | None, source: Path) -> tuple[type, type]:
    """(config class, model class) for a checkpoint's ``model_type``."""
    from transformers import Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel

    if model_type in HUBERT_TYPES:
        return HubertConfig, HubertModel
    if model_type in DATA2VEC_TYPES:
        return Data2VecAudioConfig, Data2VecAudioModel
    raise UserError(f"{source}: model_type {model_type!r} is not a MERT-family checkpoint "
                    f"({', '.join(HUBERT_TYPES + DATA2VEC_TYPES)}); for other encoders use `kind: hf`")


def build_config(raw: dict[str, Any], source: Path) -> Any:
    """A transformers config from the architecture fields of a MERT-family ``config.json``."""
    for flag in REFUSED_FLAGS:
        if raw.get(flag):
            raise UserError(f"{source}: {flag} is true; the native loader computes the plain HuBERT "
                            f"network and would be silently wrong for this checkpoint — only "
                            f"checkpoints with {' and '.join(REFUSED_FLAGS)} false are supported")
    config_cls, _ = model_classes(raw.get("model_type"), source)
    known = {f.name for f in fields(config_cls)} - IGNORED_FIELDS
    kwargs = {k: v for k, v in raw.items() if k in known}
    kwargs.update({k: v for k, v in INFERENCE_OVERRIDES.items() if k in known})
    try:
        config = config_cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"{source}: invalid architecture fields ({e}); re-download config.json") from e
    config.tie_last_hidden_states = True
    return config


def read_state_dict(files: list[Path]) -> dict[str, torch.Tensor]:
    """Tensors of the weight file(s): safetensors, or a torch zip read with ``weights_only``."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            part = load_file(str(f)) if f.suffix == ".safetensors" else _torch_load(f)
        except Exception as e:  # corrupt download, pickled objects that weights_only refuses, …
            raise UserError(f"{f}: cannot read the weights ({str(e).splitlines()[0]}); "
                            "re-download the checkpoint") from e
        if not isinstance(part, dict):
            raise UserError(f"{f}: not a state dict; re-download the checkpoint")
        state.update(part)
    return state


def _torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only``; memory-mapped when the file is in the zip format."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # only the legacy (pre-zip) format cannot be memory-mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map old weight-norm names to parametrised ones and drop training-only weights."""
    legacy = {".weight_g": ".parametrizations.weight.original0",
              ".weight_v": ".parametrizations.weight.original1"}
    out = {}
    for key, value in state.items():
        if key in TRAINING_ONLY_WEIGHTS:
            continue
        for old, new in legacy.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        out[key] = value
    return out


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, *,
                 fix: str = "the weights do not match config.json — re-download the checkpoint or "
                            "fix config.json") -> None:
    """Copy ``state`` into ``model``; any missing, unexpected or mis-shaped weight is an error
    naming it and ``source``, then ``fix``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)} expected"
                        for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    problems = [f"{label} {names}" for label, names in
                (("missing weights", missing), ("unexpected weights", unexpected),
                 ("weights of the wrong shape", mismatched)) if names]
    if problems:
        raise UserError(f"{source}: {'; '.join(problems)}; {fix}")
    model.load_state_dict(state, strict=True)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_mert(name: str, path_or_name: str | None = None, *, checkpoint: str | None = None,
              layers: list[int] | None = None, dtype: str = "auto", context_s: float = 5.0,
              device: str = "cpu", **options: Any) -> TransformersExtractor:
    """A MERT-family checkpoint (folder or hub name resolved offline) as an extractor.

    ``options`` may state ``sample_rate``, ``frame_rate``, ``num_layers`` and ``dim``: they are
    checked against the checkpoint. ``layers`` keeps only those hidden states (fewer to store).
    """
    from transformers.initialization import no_init_weights
    from transformers.utils import logging as hf_logging

    expected = split_options(name, "mert", options)
    source = path_or_name or checkpoint
    if not source:
        raise UserError(f"model {name!r} (mert): give `checkpoint:` — a folder or a hub name "
                        "such as m-a-p/MERT-v1-95M")
    folder = resolve_checkpoint(str(source))
    raw = read_json(folder / "config.json")
    config = build_config(raw, folder / "config.json")
    files = weight_files(folder)
    _, model_cls = model_classes(raw.get("model_type"), folder)
    state = normalize_keys(read_state_dict(files))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with no_init_weights():  # every weight is loaded (and checked) below: skip random init
            model = model_cls(config)
    finally:
        hf_logging.set_verbosity(verbosity)
    load_weights(model, state, files[0] if len(files) == 1 else folder)
    rate, normalize = read_preprocessing(folder, raw)
    identity = {"model_type": raw.get("model_type"), "weights": weights_digest(files),
                "config": _digest({k: v for k, v in config.to_dict().items()
                                   if k not in ("transformers_version",)})}
    extractor = TransformersExtractor(name, model, kind="mert", sample_rate=rate, normalize=normalize,
                                      identity=identity, context_s=context_s, layers=layers, dtype=dtype)
    extractor.source = folder
    check_expected(extractor, folder, expected)
    return extractor.to(device)


def architecture_config(arch: str) -> tuple[Any, dict[str, Any]]:
    """(transformers config, table entry) of a built-in architecture."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    raw = {"model_type": spec["model_type"], **spec["config"]}
    return build_config(raw, Path(f"<architecture {arch}>")), spec


def random_architecture(arch: str, seed: int, *, name: str | None = None, context_s: float = 5.0,
                        layers: list[int] | None = None, dtype: str = "auto") -> TransformersExtractor:
    """A randomly initialised copy of a built-in architecture (same seed → same weights)."""
    config, spec = architecture_config(arch)
    _, model_cls = model_classes(spec["model_type"], Path(arch))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = model_cls(config)
    import transformers

    identity = {"architecture": arch, "seed": int(seed), "config": _digest(spec),
                "torch": torch.__version__, "transformers": transformers.__version__}
    return TransformersExtractor(name or f"random-{arch}", model, kind="random",
                                 sample_rate=spec["sample_rate"], normalize=spec["normalize"],
                                 identity=identity, context_s=context_s, layers=layers, dtype=dtype)

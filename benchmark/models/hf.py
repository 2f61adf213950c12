"""Transformers audio encoders: the extractor shared by the ``mert`` and ``hf`` kinds.

``TransformersExtractor`` runs one forward pass of a transformers model (HuBERT, wav2vec 2.0,
data2vec-audio, WavLM, MERT loaded natively) and returns every hidden state. The ``hf`` kind
loads any local transformers audio encoder folder whose ``model_type`` transformers knows.

transformers 5.x returns the last hidden state of a stable-layer-norm encoder *before* its final
layer norm unless ``config.tie_last_hidden_states`` is set; 4.x (what published MERT and MARBLE
numbers used) returned it after. Every model here is loaded with the flag on.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from mirprobe.errors import UserError
from mirprobe.models.base import Extractor
from mirprobe.models.fastops import accelerate
from mirprobe.models.hub import resolve_checkpoint, weight_files, weights_digest

#: model_type values the ``hf`` kind accepts (encoders with a conv front end and hidden states).
HF_MODEL_TYPES = ("wav2vec2", "hubert", "data2vec-audio", "wavlm", "wav2vec2-conformer",
                  "unispeech", "unispeech-sat", "sew", "sew-d")
DTYPES = ("auto", "float32", "bfloat16", "float16")


class TransformersExtractor(Extractor):
    """All hidden states of a transformers audio encoder, from one forward pass."""

    #: The checkpoint folder the weights came from (None for random weights).
    source: Path | None = None

    def __init__(self, name: str, model: torch.nn.Module, *, kind: str, sample_rate: int,
                 normalize: bool, identity: dict[str, Any], context_s: float = 5.0,
                 layers: list[int] | None = None, dtype: str = "auto") -> None:
        super().__init__(name)
        if dtype not in DTYPES:
            raise UserError(f"model {name!r}: dtype {dtype!r} is not allowed; use one of {', '.join(DTYPES)}")
        self.kind = kind
        self.model = accelerate(model.eval())  # oneDNN routes for linears and convs on CPUs
        self.model.requires_grad_(False)
        config = model.config
        config.tie_last_hidden_states = True  # 4.x semantics: last state after the final layer norm
        self.sample_rate = int(sample_rate)
        self.normalize = bool(normalize)
        self.context_s = float(context_s)
        self.dtype = dtype
        self.stride = math.prod(config.conv_stride)
        self.frame_rate = self.sample_rate / self.stride
        total = config.num_hidden_layers + 1
        self.layers = _check_layers(layers, total, name)
        self.num_layers = len(self.layers) if self.layers is not None else total
        self.dim = int(config.hidden_size)
        self._identity = identity

    # -- contract -------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {**self._identity, "kind": self.kind, "sample_rate": self.sample_rate,
                "normalize": self.normalize, "layers": self.layers,
                "dtype": self.dtype, "version": 1}

    def layer_names(self) -> list[str]:
        indices = self.layers if self.layers is not None else range(self.num_layers)
        return [f"layer{i}" for i in indices]

    def num_frames(self, num_samples: int) -> int:
        """Frames of the conv front end: ``floor((n - kernel) / stride) + 1`` per layer."""
        n = int(num_samples)
        for kernel, stride in zip(self.model.config.conv_kernel, self.model.config.conv_stride, strict=True):
            n = (n - kernel) // stride + 1
            if n < 1:
                return 0
        return n

    def to(self, device: torch.device | str) -> TransformersExtractor:
        super().to(device)
        self.model.to(self.device)
        return self

    def precision(self) -> contextlib.AbstractContextManager:
        """The ``dtype`` option: ``auto`` leaves precision to the caller's autocast; ``float32``
        forces full precision; ``bfloat16``/``float16`` autocast on CUDA (CPU always runs float32)."""
        if self.device.type != "cuda" or self.dtype == "auto":
            return contextlib.nullcontext()
        if self.dtype == "float32":
            return torch.autocast("cuda", enabled=False)
        return torch.autocast("cuda", dtype=getattr(torch, self.dtype))

    @torch.inference_mode()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` → ``[layers, B, frames, dim]``."""
        waves = waves.to(self.device, torch.float32)
        select = self.layers if self.layers is not None else True
        with self.precision():
            out = self.model(waves, output_hidden_states=select)
        return torch.stack([h for h in out.hidden_states if h is not None])

    # -- description ----------------------------------------------------------------------
    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def architecture(self) -> str:
        config = self.model.config
        norm = "stable layer norm" if getattr(config, "do_stable_layer_norm", False) else "post layer norm"
        return f"{type(self.model).__name__} ({norm}, {config.num_hidden_layers} x {config.hidden_size})"


def _check_layers(layers: list[int] | None, total: int, name: str) -> list[int] | None:
    if layers is None:
        return None
    picked = [int(i) for i in layers]
    bad = [i for i in picked if not 0 <= i < total]
    if bad or not picked or len(set(picked)) != len(picked) or picked != sorted(picked):
        raise UserError(f"model {name!r}: layers {list(layers)} must be distinct increasing indices "
                        f"in 0..{total - 1}")
    return picked


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a checkpoint folder, with an error naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read JSON ({e}); re-download the checkpoint") from e
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object; re-download the checkpoint")
    return data


def read_preprocessing(folder: Path, config: dict[str, Any]) -> tuple[int, bool]:
    """Sample rate and waveform normalisation from ``preprocessor_config.json``.

    Without that file: the ``sample_rate`` of ``config.json`` (MERT writes one) and no
    normalisation; neither present is an error.
    """
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        data = read_json(pre)
        if "sampling_rate" not in data:
            raise UserError(f"{pre}: no sampling_rate; re-download the checkpoint")
        return int(data["sampling_rate"]), bool(data.get("do_normalize", False))
    if "sample_rate" in config:
        return int(config["sample_rate"]), False
    raise UserError(f"{folder}: no preprocessor_config.json and no sample_rate in config.json; "
                    "copy the checkpoint's preprocessor_config.json into the folder")


def check_loading_info(info: dict[str, Any], source: Path, *, allow_unexpected: bool) -> None:
    """Fail on missing or mismatched keys (and unexpected ones unless allowed) in transformers' report."""
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing weights {sorted(info['missing_keys'])}")
    if info.get("mismatched_keys"):
        problems.append(f"weights of the wrong shape {sorted(str(k) for k in info['mismatched_keys'])}")
    if info.get("unexpected_keys") and not allow_unexpected:
        problems.append(f"unexpected weights {sorted(info['unexpected_keys'])}")
    if problems:
        raise UserError(f"{source}: {'; '.join(problems)}; the checkpoint does not match its config.json "
                        "— re-download it or fix config.json")


def load_hf(name: str, path_or_name: str | None = None, *, checkpoint: str | None = None,
            layers: list[int] | None = None, dtype: str = "auto", context_s: float = 5.0,
            device: str = "cpu", **options: Any) -> TransformersExtractor:
    """Any local transformers audio encoder (wav2vec2, HuBERT, data2vec-audio, WavLM, …) by folder.

    Missing or mismatched weights fail; unexpected ones (a CTC or pre-training head) are ignored.
    """
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    expected = split_options(name, "hf", options)
    source = path_or_name or checkpoint
    if not source:
        raise UserError(f"model {name!r} (hf): give `checkpoint:` — a folder holding config.json")
    folder = resolve_checkpoint(str(source))
    raw = read_json(folder / "config.json")
    model_type = raw.get("model_type")
    if model_type == "mert_model":
        raise UserError(f"{folder}: a MERT checkpoint; load it with `kind: mert`")
    if model_type not in HF_MODEL_TYPES:
        raise UserError(f"{folder / 'config.json'}: model_type {model_type!r} is not an audio encoder "
                        f"the hf kind loads; use one of {', '.join(HF_MODEL_TYPES)}")
    files = weight_files(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    config.tie_last_hidden_states = True
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModel.from_pretrained(folder, config=config, trust_remote_code=False,
                                                local_files_only=True, output_loading_info=True,
                                                dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    check_loading_info(info, folder, allow_unexpected=True)
    rate, normalize = read_preprocessing(folder, raw)
    identity = {"model_type": model_type, "weights": weights_digest(files),
                "config": _config_digest(raw)}
    extractor = TransformersExtractor(name, model, kind="hf", sample_rate=rate, normalize=normalize,
                                      identity=identity, context_s=context_s, layers=layers, dtype=dtype)
    extractor.source = folder
    check_expected(extractor, folder, expected)
    return extractor.to(device)


def _config_digest(raw: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


#: Facts a model config may state about its checkpoint; checked after loading.
EXPECTED_KEYS = ("sample_rate", "frame_rate", "num_layers", "dim")


def split_options(name: str, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The expected facts among ``options``; any key other than those and documentation is an error."""
    unknown = sorted(k for k in options if k not in (*EXPECTED_KEYS, "description", "kind", "name"))
    if unknown:
        raise UserError(f"model {name!r} ({kind}): unknown option(s) {', '.join(unknown)}; allowed: "
                        "checkpoint, layers, dtype, context_s, device, "
                        f"{', '.join(EXPECTED_KEYS)}, description")
    return {k: options[k] for k in EXPECTED_KEYS if options.get(k) is not None}


def check_expected(extractor: TransformersExtractor, source: Path, expected: dict[str, Any]) -> None:
    """A model config's stated facts must match the checkpoint (catches a wrong folder or name)."""
    config = extractor.model.config
    actual = {"sample_rate": extractor.sample_rate, "frame_rate": extractor.frame_rate,
              "num_layers": config.num_hidden_layers + 1, "dim": extractor.dim}
    for key, value in expected.items():
        if abs(float(value) - float(actual[key])) > 1e-6:
            raise UserError(f"model {extractor.name!r}: its config says {key} {value} but {source} has "
                            f"{actual[key]}; point the config at the right checkpoint or fix the value")

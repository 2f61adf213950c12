"""MuQ (Zhu et al. 2025) and MusicFM (Won et al. 2024): BEST-RQ conformers on a 24 kHz log-mel.

Both compute torchaudio's mel spectrogram (n_fft 2048, hop 240, 128 HTK bands, power, centred)
in dB with no floor, drop its last frame, standardise it with one mean and standard deviation from
the checkpoint's statistics, and run :class:`mirprobe.models.conformer.BestRQEncoder`: 13 hidden
states × 1024 at 25 Hz for the published large models (layer 0: the conv front end's output; the
last: after the final LayerNorm). The network's sizes come from the checkpoint (MuQ: its
``config.json``; MusicFM: the tensor shapes, with the 16 heads of its published conformer config).

On disk, as the authors publish them:

- **MuQ**: a Hugging Face folder (``OpenMuQ/MuQ-large-msd-iter``): ``config.json`` (the MuQ
  config, with ``stat`` and ``w2v2_config``) and ``model.safetensors`` (``model.<name>``);
- **MusicFM**: ``pretrained_msd.pt`` / ``pretrained_fma.pt`` (``{"state_dict": {"model.<name>":
  tensor}}``, read with ``torch.load(weights_only=True)``) beside ``msd_stats.json`` /
  ``fma_stats.json`` (hub repo ``minzwon/MusicFM``).

Tensors that inference does not use (the pre-training head ``linear``, ``cls_token``, the
quantizers' targets, torchaudio's stored window and filter bank, the conformer's unused
``pos_conv_embed``) are left out; any other missing, unexpected or mis-shaped tensor is an error
naming it and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mirprobe.errors import UserError
from mirprobe.models.base import Extractor
from mirprobe.models.conformer import BestRQEncoder
from mirprobe.models.fastops import accelerate
from mirprobe.models.hf import read_json
from mirprobe.models.hub import resolve_checkpoint, resolve_file, weight_files, weights_digest
from mirprobe.models.melspec import MelSpectrogram, power_to_db
from mirprobe.models.native import check_expected, check_variant, digest, expected_facts

SAMPLE_RATE, N_FFT = 24000, 2048
#: Tensors of the checkpoints that inference never reads.
UNUSED = ("linear.", "cls_token", "rvq.", "quantizer_", "preprocessor_", "conformer.pos_conv_embed.",
          "conformer.embed_positions.")
#: Published variants: the checkpoint a config names, and (MusicFM) the files of each.
MUQ_VARIANTS = {"large-msd": "OpenMuQ/MuQ-large-msd", "large-msd-iter": "OpenMuQ/MuQ-large-msd-iter"}
MUSICFM_HUB = "minzwon/MusicFM"
MUSICFM_VARIANTS = {"msd": ("pretrained_msd.pt", "msd_stats.json"),
                    "fma": ("pretrained_fma.pt", "fma_stats.json")}
#: Published sizes, for random-init copies (perf) and the model table.
ARCHITECTURES = {"muq-large": {"channels": 512, "dim": 1024, "depth": 12, "heads": 16, "ffn": 4096,
                               "kernel": 31, "n_mels": 128, "time_strides": (2, 2)},
                 "musicfm-25hz": {"channels": 512, "dim": 1024, "depth": 12, "heads": 16,
                                  "ffn": 4096, "kernel": 31, "n_mels": 128, "time_strides": (2, 2)}}


class BestRQExtractor(Extractor):
    """Every hidden state of a MuQ or MusicFM encoder, from one forward pass per window."""

    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, *, kind: str, net: BestRQEncoder, hop: int, mean: float, std: float,
                 identity: dict[str, Any], context_s: float = 30.0) -> None:
        super().__init__(name)
        self.kind = kind
        self.net = accelerate(net.eval().requires_grad_(False))  # oneDNN routes, weights cast once
        self.mel = MelSpectrogram(SAMPLE_RATE, N_FFT, hop, net.conv.n_mels)
        self.hop, self.mean, self.std = hop, float(mean), float(std)
        strides = net.conv.time_strides
        self.frame_rate = SAMPLE_RATE / hop / (strides[0] * strides[1])
        self.num_layers = len(net.conformer.layers) + 1
        self.dim = net.conv.linear.out_features
        self.context_s = float(context_s)
        self._identity = identity
        self.num_parameters = sum(p.numel() for p in net.parameters())
        self.architecture = (f"{kind}: conv front end + conformer ({len(net.conformer.layers)} x "
                             f"{self.dim}, {net.conformer.layers[0].self_attn.heads} heads)")

    def identity(self) -> dict[str, Any]:
        return {**self._identity, "kind": self.kind, "hop": self.hop, "mean": self.mean,
                "std": self.std, "version": 1}

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self.mel.min_samples():
            return 0
        return self.net.conv.num_frames(num_samples // self.hop)  # the last mel frame is dropped

    def to(self, device: torch.device | str) -> Extractor:
        super().to(device)
        self.net.to(self.device)
        self.mel.to(self.device)
        return self

    def logmel(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` → standardised dB mel ``[B, mels, samples // hop]``, in float32."""
        with torch.autocast(self.device.type, enabled=False):
            db = power_to_db(self.mel(waves.to(self.device, torch.float32)))[..., :-1]
        return (db - self.mean) / self.std

    @torch.inference_mode()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.net(self.logmel(waves)))


def build_net(sizes: dict[str, Any]) -> BestRQEncoder:
    try:
        return BestRQEncoder(**sizes)
    except (KeyError, ValueError) as e:
        raise UserError(f"invalid conformer sizes {sizes}: {e}") from e


def load_state(net: BestRQEncoder, state: dict[str, torch.Tensor], source: Path) -> None:
    """The ``model.`` tensors of a checkpoint into ``net``; unused ones left out, anything else
    missing, unexpected or mis-shaped an error naming it and ``source``."""
    from mirprobe.models.mert import load_weights

    inner = {k.removeprefix("model."): v for k, v in state.items()}
    kept = {k: v for k, v in inner.items() if not k.startswith(UNUSED)}
    load_weights(net, kept, source, fix="the file is not a complete checkpoint of this model — "
                                        "re-download it")


# -- MuQ ---------------------------------------------------------------------------------------

def muq_sizes(raw: dict[str, Any], source: Path) -> tuple[dict[str, Any], int, float, float]:
    """(network sizes, hop, mel mean, mel std) from a MuQ ``config.json``."""
    try:
        w2v = raw["w2v2_config"]
        if raw.get("is_flash"):
            raise UserError(f"{source}: is_flash is true; only the transformers conformer "
                            "(is_flash false, as published) is supported")
        if w2v.get("position_embeddings_type", "rotary") != "rotary":
            raise UserError(f"{source}: position_embeddings_type "
                            f"{w2v['position_embeddings_type']!r}; only rotary is supported")
        strides = {25: (2, 2), 50: (2, 1)}[int(raw.get("label_rate", 25))]
        sizes = {"channels": int(raw.get("conv_dim", 512)), "dim": int(raw.get("encoder_dim", 1024)),
                 "depth": int(raw.get("encoder_depth", 12)), "heads": int(w2v["num_attention_heads"]),
                 "ffn": int(w2v["intermediate_size"]), "kernel": int(w2v["conv_depthwise_kernel_size"]),
                 "n_mels": int(raw.get("n_mels", 128)), "time_strides": strides,
                 "act": str(w2v.get("hidden_act", "swish")), "eps": float(w2v.get("layer_norm_eps", 1e-5)),
                 "rotary_base": float(w2v.get("rotary_embedding_base", 10000))}
        stat = raw["stat"]
        return sizes, int(raw.get("hop_length", 240)), stat["melspec_2048_mean"], stat["melspec_2048_std"]
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{source}: not a MuQ config.json (missing or invalid {e}); "
                        "re-download the checkpoint") from e


def load_muq(name: str = "muq", variant: str = "large-msd-iter", checkpoint: str | None = None,
             context_s: float = 30.0, device: str = "cpu", **options: Any) -> BestRQExtractor:
    """A MuQ checkpoint folder (or hub name found offline) as an extractor."""
    check_variant("muq", variant, MUQ_VARIANTS)
    expected = expected_facts(name, "muq", options)
    folder = resolve_checkpoint(str(checkpoint or MUQ_VARIANTS[variant]))
    raw = read_json(folder / "config.json")
    if "w2v2_config" not in raw and "audio_model" in raw:
        raise UserError(f"{folder}: a MuQ-MuLan folder, whose audio tower is not supported; give "
                        "a MuQ checkpoint such as OpenMuQ/MuQ-large-msd-iter")
    sizes, hop, mean, std = muq_sizes(raw, folder / "config.json")
    net = build_net(sizes)
    files = weight_files(folder)
    from mirprobe.models.mert import read_state_dict

    load_state(net, read_state_dict(files), files[0] if len(files) == 1 else folder)
    identity = {"weights": weights_digest(files), "config": digest(sizes)}
    extractor = BestRQExtractor(name, kind="muq", net=net, hop=hop, mean=mean, std=std,
                                identity=identity, context_s=context_s)
    extractor.source = folder
    check_expected(extractor, folder, expected)
    return extractor.to(device)


# -- MusicFM -----------------------------------------------------------------------------------

def musicfm_sizes(state: dict[str, torch.Tensor], source: Path, heads: int) -> dict[str, Any]:
    """Network sizes read from the tensor shapes of a MusicFM state dict."""
    def shape(key: str) -> tuple[int, ...]:
        if f"model.{key}" not in state:
            raise UserError(f"{source}: tensor model.{key} missing; the file is not a MusicFM "
                            "checkpoint — re-download it")
        return tuple(state[f"model.{key}"].shape)

    dim, flat = shape("conv.linear.weight")
    channels = shape("conv.conv.0.conv1.weight")[0]
    depth = len({k.split(".")[3] for k in state if k.startswith("model.conformer.layers.")})
    return {"channels": channels, "dim": dim, "depth": depth, "heads": heads,
            "ffn": shape("conformer.layers.0.ffn1.intermediate_dense.weight")[0] if depth else 4 * dim,
            "kernel": shape("conformer.layers.0.conv_module.depthwise_conv.weight")[-1] if depth else 31,
            "n_mels": 4 * flat // channels, "time_strides": (2, 2)}


def read_stats(path: Path) -> tuple[float, float]:
    data = read_json(path)
    try:
        return float(data["melspec_2048_mean"]), float(data["melspec_2048_std"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: no melspec_2048_mean/melspec_2048_std ({e}); re-download the "
                        "statistics file") from e


def load_musicfm(name: str = "musicfm", variant: str = "msd", checkpoint: str | None = None,
                 stats: str | None = None, context_s: float = 30.0, device: str = "cpu",
                 **options: Any) -> BestRQExtractor:
    """A MusicFM checkpoint: ``pretrained_<variant>.pt`` (a file, its folder or ``minzwon/MusicFM``
    found offline) and its ``<variant>_stats.json`` (``stats``, else beside the weights)."""
    from mirprobe.models.mert import read_state_dict

    check_variant("musicfm", variant, MUSICFM_VARIANTS)
    expected = expected_facts(name, "musicfm", options)
    weights_name, stats_name = MUSICFM_VARIANTS[variant]
    weights = resolve_file(str(checkpoint or MUSICFM_HUB), weights_name,
                           how=f"`hf download {MUSICFM_HUB} {weights_name} {stats_name}`")
    stats_path = Path(stats).expanduser() if stats else weights.parent / stats_name
    if not stats_path.is_file():
        raise UserError(f"{stats_path}: MusicFM's statistics file not found; put {stats_name} "
                        f"beside {weights.name} or give `stats:`")
    mean, std = read_stats(stats_path)
    raw = read_state_dict([weights])
    state = raw.get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"{weights}: no state_dict in this file; is it a MusicFM checkpoint "
                        f"({', '.join(n for n, _ in MUSICFM_VARIANTS.values())})?")
    sizes = musicfm_sizes(state, weights, heads=16)  # as published: MusicFM's conformer config
    net = build_net(sizes)
    load_state(net, state, weights)
    identity = {"weights": weights_digest([weights]), "config": digest(sizes)}
    extractor = BestRQExtractor(name, kind="musicfm", net=net, hop=240, mean=mean, std=std,
                                identity=identity, context_s=context_s)
    extractor.source = weights
    check_expected(extractor, weights, expected)
    return extractor.to(device)


def random_bestrq(arch: str, seed: int = 0, *, name: str | None = None,
                  context_s: float = 30.0) -> BestRQExtractor:
    """A randomly initialised copy of a published size (``muq-large``, ``musicfm-25hz``)."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = build_net(ARCHITECTURES[arch])
    identity = {"architecture": arch, "seed": int(seed), "torch": torch.__version__}
    return BestRQExtractor(name or f"random-{arch}", kind="random", net=net, hop=240,
                           mean=6.768444971712967, std=18.417922652295623, identity=identity,
                           context_s=context_s)


def preflight(variant: str = "large-msd-iter", checkpoint: str | None = None, **_: Any) -> None:
    """MuQ: fail at once when the variant is unknown or the folder and its weights are not found."""
    check_variant("muq", variant, MUQ_VARIANTS)
    weight_files(resolve_checkpoint(str(checkpoint or MUQ_VARIANTS[variant])))


def musicfm_preflight(variant: str = "msd", checkpoint: str | None = None, **_: Any) -> None:
    check_variant("musicfm", variant, MUSICFM_VARIANTS)
    weights_name, stats_name = MUSICFM_VARIANTS[variant]
    resolve_file(str(checkpoint or MUSICFM_HUB), weights_name,
                 how=f"`hf download {MUSICFM_HUB} {weights_name} {stats_name}`")


load_muq.preflight = preflight  # type: ignore[attr-defined]
load_musicfm.preflight = musicfm_preflight  # type: ignore[attr-defined]

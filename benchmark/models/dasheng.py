"""Dasheng (Dinkel et al., Interspeech 2024): a ViT masked autoencoder on 16 kHz log-mel patches.

The published checkpoints (``dasheng_base.pt``, ``dasheng_06b.pt``, ``dasheng_12b.pt``) are one
file each, ``{"model": state_dict, "config": kwargs}``, read with ``torch.load(weights_only=True)``.
The network, as the ``dasheng`` package (0.0.9) computes it:

- input: torchaudio's mel spectrogram (n_fft 512, window 512, hop 160, 64 HTK bands 0–8 kHz,
  power, centred) in dB floored 120 dB below the peak, then a batch norm per mel band (``init_bn``);
- patches: a conv with kernel = stride = (64 bands, 4 frames): one 25 Hz token per 40 ms, plus a
  learned time position (``time_pos_embed``, 252 positions) and frequency position;
- the tokens go through the transformer in chunks of 252 (10.08 s, ``target_length`` 1008 frames),
  each chunk on its own: pre-norm blocks (LayerNorm ε 1e-6, multi-head attention with a qkv bias,
  GELU MLP, LayerScale when the checkpoint has it), then a final LayerNorm.

Hidden states: layer 0 is the patch embedding with positions (the first block's input), layers
1..L-1 each block's output, layer L the last block's output after the final LayerNorm (the
model's own output). Dasheng's package floors the dB at 120 below the loudest value of the whole
*batch*, so a clip's features depend on its batch-mates; here each window is floored at its own
peak — what the package computes for a batch of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mirprobe.errors import UserError
from mirprobe.models.base import Extractor
from mirprobe.models.fastops import accelerate
from mirprobe.models.hub import resolve_file, weights_digest
from mirprobe.models.melspec import MelSpectrogram, power_to_db
from mirprobe.models.native import check_expected, check_variant, digest, expected_facts

SAMPLE_RATE = 16000
#: Published variants: file name, heads (the package's loader passes them; the file may not).
VARIANTS = {"base": ("dasheng_base.pt", 12), "0.6b": ("dasheng_06b.pt", 16),
            "1.2b": ("dasheng_12b.pt", 24)}
#: Published sizes (the package's ``dasheng_base``/``dasheng_06B``/``dasheng_12B``).
ARCHITECTURES = {"dasheng-base": (768, 12, 12), "dasheng-0.6b": (1280, 32, 16),
                 "dasheng-1.2b": (1536, 40, 24)}
#: Front-end options of the package's encoder and their defaults.
FRONT_END = {"n_fft": 512, "n_mels": 64, "hop_size": 160, "win_size": 512, "f_min": 0,
             "f_max": 8000, "center": True, "top_db": 120, "target_length": 1008,
             "patch_size": [64, 4], "patch_stride": [64, 4], "pooling": "mean"}
#: A hub-style name looked up offline ($MIRPROBE_MODELS/dasheng/…): the files are on Zenodo.
HUB = "mispeech/dasheng"
ZENODO = "https://zenodo.org/records/11511780/files/{}"


class Block(nn.Module):
    """A pre-norm ViT block (names as in the checkpoints)."""

    def __init__(self, dim: int, heads: int, hidden: int, layer_scale: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.fc2 = nn.Linear(hidden, dim)
        if layer_scale:
            self.ls1, self.ls2 = nn.Module(), nn.Module()
            self.ls1.gamma = nn.Parameter(torch.ones(dim))
            self.ls2.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.attn.qkv(self.norm1(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = self.attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        x = x + (y * self.ls1.gamma if hasattr(self, "ls1") else y)
        y = self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))
        return x + (y * self.ls2.gamma if hasattr(self, "ls2") else y)


class DashengNet(nn.Module):
    """Normalised-mel patches → every hidden state, chunk by chunk."""

    def __init__(self, dim: int, depth: int, heads: int, hidden: int, *, n_mels: int,
                 patch: tuple[int, int], positions: int, chunk: int, layer_scale: bool) -> None:
        super().__init__()
        if dim % heads:
            raise UserError(f"dasheng: width {dim} does not split into {heads} heads")
        self.chunk = chunk
        self.init_bn = nn.Module()
        self.init_bn.add_module("1", nn.BatchNorm2d(n_mels))  # the package's Sequential index
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, dim, patch, stride=patch)
        self.time_pos_embed = nn.Parameter(torch.zeros(1, dim, 1, positions))
        self.freq_pos_embed = nn.Parameter(torch.zeros(1, dim, n_mels // patch[0], 1))
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, layer_scale) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, db: torch.Tensor) -> torch.Tensor:
        """``[B, mels, T]`` dB → ``[layers, B, T // 4, dim]``."""
        bn = getattr(self.init_bn, "1")
        x = self.patch_embed.proj(bn(db[:, :, None]).transpose(1, 2))  # [B, D, F', T']
        chunks = []
        for part in x.split(self.chunk, dim=-1):
            tokens = part + self.time_pos_embed[..., : part.shape[-1]] + self.freq_pos_embed
            h = tokens.flatten(2).transpose(1, 2)  # (f t) order, as the package
            states = [h]
            for block in self.blocks:
                h = block(h)
                states.append(h)
            states[-1] = self.norm(h)
            chunks.append(torch.stack(states))
        return torch.cat(chunks, dim=2)


class DashengExtractor(Extractor):
    """Every hidden state of a Dasheng encoder."""

    kind = "dasheng"
    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, net: DashengNet, front: dict[str, Any], identity: dict[str, Any],
                 context_s: float | None = None, kind: str = "dasheng") -> None:
        super().__init__(name)
        self.kind = kind
        self.net = accelerate(net.eval().requires_grad_(False))  # weights cast once under CPU autocast
        self.front = front
        self.mel = MelSpectrogram(SAMPLE_RATE, front["n_fft"], front["hop_size"], front["n_mels"],
                                  f_min=front["f_min"], f_max=front["f_max"],
                                  win_length=front["win_size"])
        self.patch_frames = int(front["patch_stride"][1])
        self.frame_rate = SAMPLE_RATE / front["hop_size"] / self.patch_frames
        self.num_layers = len(net.blocks) + 1
        self.dim = net.norm.normalized_shape[0]
        # the native context: one chunk of target_length frames (10.08 s)
        self.context_s = float(context_s or front["target_length"] * front["hop_size"] / SAMPLE_RATE)
        self._identity = identity
        self.num_parameters = sum(p.numel() for p in net.parameters())
        self.architecture = f"dasheng ViT ({len(net.blocks)} x {self.dim}, {net.blocks[0].heads} heads)"

    def identity(self) -> dict[str, Any]:
        return {**self._identity, "kind": self.kind, "front": self.front, "floor": "per window",
                "version": 1}

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self.mel.min_samples():
            return 0
        return (1 + num_samples // self.front["hop_size"]) // self.patch_frames

    def to(self, device: torch.device | str) -> Extractor:
        super().to(device)
        self.net.to(self.device)
        self.mel.to(self.device)
        return self

    @torch.inference_mode()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=False):  # the package keeps the mel in fp32
            db = power_to_db(self.mel(waves.to(self.device, torch.float32)), self.front["top_db"])
        return self.net(db)


def build(state: dict[str, torch.Tensor], config: dict[str, Any], heads: int, source: Path
          ) -> tuple[DashengNet, dict[str, Any]]:
    """The network described by a checkpoint's tensors and config, and its front-end options."""
    front = {k: config.get(k, v) for k, v in FRONT_END.items()}
    if front["pooling"] == "token":
        raise UserError(f"{source}: pooling 'token' (a class token) is not supported; the "
                        "published checkpoints pool by mean")
    for key in ("patch_embed.proj.weight", "time_pos_embed", "blocks.0.mlp.fc1.weight"):
        if key not in state:
            raise UserError(f"{source}: tensor {key} missing; not a Dasheng checkpoint — re-download it")
    dim, _, pf, pt = state["patch_embed.proj.weight"].shape
    if [pf, pt] != list(front["patch_size"]) or front["patch_size"] != front["patch_stride"]:
        raise UserError(f"{source}: patch size {[pf, pt]} / config {front['patch_size']} "
                        f"stride {front['patch_stride']}: only non-overlapping patches are supported")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    chunk = int(front["target_length"]) // pt
    net = DashengNet(dim, depth, int(config.get("num_heads", heads)), state["blocks.0.mlp.fc1.weight"].shape[0],
                     n_mels=int(front["n_mels"]), patch=(pf, pt),
                     positions=state["time_pos_embed"].shape[-1], chunk=chunk,
                     layer_scale="blocks.0.ls1.gamma" in state)
    return net, front


def load_state(net: DashengNet, state: dict[str, torch.Tensor], source: Path) -> None:
    from mirprobe.models.mert import load_weights

    kept = {k: v for k, v in state.items() if not k.startswith("front_end.")}  # torchaudio's buffers
    load_weights(net, kept, source, fix="the file is not a complete Dasheng checkpoint — re-download it")


def load_dasheng(name: str = "dasheng", variant: str = "base", checkpoint: str | None = None,
                 num_heads: int | None = None, context_s: float | None = None, device: str = "cpu",
                 **options: Any) -> DashengExtractor:
    """A Dasheng checkpoint: the ``.pt`` file, its folder, or a hub-style name found offline."""
    from mirprobe.models.mert import read_state_dict

    check_variant("dasheng", variant, VARIANTS)
    expected = expected_facts(name, "dasheng", options)
    filename, heads = VARIANTS[variant]
    weights = resolve_file(str(checkpoint or HUB), filename, how=f"`wget {ZENODO.format(filename)}`")
    dump = read_state_dict([weights])
    if not isinstance(dump.get("model"), dict) or not isinstance(dump.get("config", {}), dict):
        raise UserError(f"{weights}: expected {{'model': state dict, 'config': options}} (the dasheng "
                        "package's checkpoint layout); re-download it")
    state, config = dump["model"], dict(dump.get("config") or {})
    net, front = build(state, config, int(num_heads or heads), weights)
    load_state(net, state, weights)
    identity = {"weights": weights_digest([weights]), "config": digest(config)}
    extractor = DashengExtractor(name, net, front, identity, context_s=context_s)
    extractor.source = weights
    check_expected(extractor, weights, expected)
    return extractor.to(device)


def random_dasheng(arch: str, seed: int = 0, *, name: str | None = None,
                   context_s: float | None = None) -> DashengExtractor:
    """A randomly initialised copy of a published size (``dasheng-base``, ``-0.6b``, ``-1.2b``)."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    dim, depth, heads = ARCHITECTURES[arch]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = DashengNet(dim, depth, heads, 4 * dim, n_mels=64, patch=(64, 4), positions=252,
                         chunk=252, layer_scale=False)
    identity = {"architecture": arch, "seed": int(seed), "torch": torch.__version__}
    return DashengExtractor(name or f"random-{arch}", net, dict(FRONT_END), identity,
                            context_s=context_s, kind="random")


def preflight(variant: str = "base", checkpoint: str | None = None, **_: Any) -> None:
    """Fail at once when the variant is unknown or its file is not found."""
    check_variant("dasheng", variant, VARIANTS)
    filename = VARIANTS[variant][0]
    resolve_file(str(checkpoint or HUB), filename, how=f"`wget {ZENODO.format(filename)}`")


load_dasheng.preflight = preflight  # type: ignore[attr-defined]

"""OMAR-RQ (Alonso-Jiménez et al. 2025): a conformer trained by multi-codebook masked prediction.

A published checkpoint (``mtg-upf/omar-rq-base``, ``-multicodebook``, ``-multifeature``,
``-multifeature-25hz``, ``-multifeature-25hz-fsq``) is a folder with ``config.gin`` (gin bindings,
read here by a small parser: no gin, no code runs) and ``model.ckpt`` (a plain state dict, read
with ``torch.load(weights_only=True)``; as the package does, only its ``net.`` and
``embedding_layer.`` tensors are used). The network, as the ``omar-rq`` package (0.2.1) computes it:

- input: either a mel spectrogram (torchaudio ``Spectrogram`` + ``MelScale``: n_fft = window
  ``win_len``, hop ``hop_len``, power, centred, Slaney scale and norm as configured), compressed
  ``log10(1 + 10000·mel)`` and standardised (``norm_mean``, ``norm_std``), cut into patches of
  96 bands × 4 frames (the package's fixed patch size for a mel input) — or the standardised
  waveform in patches of ``Waveform.patch_size`` samples (the multi-feature models);
- a linear embedding of each flattened patch (``embedding_layer``);
- conformer blocks: ``x + r·FF(x)`` (FF: LayerNorm ε 6.1e-5 → Linear → GELU → Linear, ``r`` =
  ``mlp_residual_factor``), causal multi-head self-attention (no qkv bias, rotary positions on
  interleaved pairs of each head's query and key) joined as ``LayerNorm(α·x + attn(x))`` with
  DeepNorm (else ``x + attn(x)``), ``x + conv(x)`` (LayerNorm → pointwise conv to 2× → GLU →
  depthwise conv of 31 taps whatever ``conv_kernel_size`` says → BatchNorm → GELU → pointwise
  conv), ``x + r·FF(x)``, then a LayerNorm.

Hidden states: layer 0 is the patch embedding, layers 1..depth each block's output
(``extract_embeddings(layers=...)`` of the package).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mirprobe.errors import UserError
from mirprobe.models.base import Extractor
from mirprobe.models.fastops import accelerate
from mirprobe.models.hub import resolve_file, weights_digest
from mirprobe.models.melspec import MelSpectrogram
from mirprobe.models.native import check_expected, check_variant, digest, expected_facts

VARIANTS = ("base", "multicodebook", "multifeature", "multifeature-25hz", "multifeature-25hz-fsq")
MEL_PATCH = (96, 4)  # the package's get_patch_size for a mel input
ARCHITECTURES = {"omar-rq-base": {"embed_dim": 1024, "depth": 24, "num_heads": 8, "mlp_ratio": 4.0,
                                  "mlp_residual_factor": 4.0, "use_deepnorm": True,
                                  "alpha_deepnorm": 2.6321480259049848, "use_rope": True}}
BASE_MEL = {"sr": 16000, "win_len": 512, "hop_len": 256, "power": 2, "n_mel": 96, "norm": "slaney",
            "mel_scale": "slaney", "norm_mean": 2.06755686098554, "norm_std": 1.268292820667291}


# -- config.gin --------------------------------------------------------------------------------

def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None:
            return line[:i]
    return line


def parse_gin(text: str, source: Path) -> dict[str, Any]:
    """``Class.param`` (module path and scope dropped) → value of a gin bindings file. Values are
    Python literals; ``@module.Class`` references become the string ``"@Class"``; ``%macro``
    values are substituted."""
    statements, buffer = [], ""
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        buffer = f"{buffer} {line.strip()}" if buffer else line.strip()
        if buffer.endswith("\\"):
            buffer = buffer[:-1]
            continue
        if buffer and sum(buffer.count(o) - buffer.count(c) for o, c in ("()", "[]", "{}")) <= 0:
            statements.append(buffer)
            buffer = ""
    macros: dict[str, Any] = {}
    bindings: dict[str, Any] = {}
    for statement in statements:
        if statement.startswith(("import ", "include ")) or "=" not in statement:
            continue
        key, value = (s.strip() for s in statement.split("=", 1))
        value = re.sub(r"@([\w.]+)(\(\))?", lambda m: repr("@" + m.group(1).split(".")[-1]), value)
        value = re.sub(r"%([\w.]+)", lambda m: repr(macros.get(m.group(1))), value)
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError) as e:
            raise UserError(f"{source}: cannot read the binding {key} = {value} ({e}); "
                            "re-download config.gin") from e
        if "." not in key:
            macros[key] = parsed
        else:
            bindings[".".join(key.split("/")[-1].split(".")[-2:])] = parsed
    return bindings


# -- network -----------------------------------------------------------------------------------

def _feed_forward(dim: int, hidden: int) -> nn.Module:
    ff = nn.Module()
    ff.module = nn.ModuleDict({"0": nn.LayerNorm(dim, eps=6.1e-5), "1": nn.Linear(dim, hidden),
                               "4": nn.Linear(hidden, dim)})
    return ff


def _run_ff(ff: nn.Module, x: torch.Tensor) -> torch.Tensor:
    m = ff.module
    return m["4"](F.gelu(m["1"](m["0"](x))))


def _rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotary positions on interleaved pairs (x0, x1), (x2, x3), … of the last axis."""
    angles = torch.outer(torch.arange(x.shape[-2], device=x.device, dtype=freqs.dtype), freqs)
    angles = angles.repeat_interleave(2, dim=-1)
    pairs = x.unflatten(-1, (-1, 2))
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (x * angles.cos() + turned * angles.sin()).to(x.dtype)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, residual: float, deepnorm: bool,
                 alpha: float) -> None:
        super().__init__()
        self.heads, self.residual, self.alpha, self.deepnorm = heads, residual, alpha, deepnorm
        self.ff1 = _feed_forward(dim, hidden)
        self.attention = nn.Module()
        self.attention.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attention.proj = nn.Linear(dim, dim)
        self.attention.rotary_emb = nn.Module()
        self.attention.rotary_emb.freqs = nn.Parameter(torch.zeros(dim // heads // 2))
        self.conv_block = nn.Module()
        self.conv_block.layer_norm = nn.LayerNorm(dim, eps=6.1e-5)
        self.conv_block.module = nn.ModuleDict({
            "0": nn.Conv1d(dim, 2 * dim, 1), "2": nn.Conv1d(dim, dim, 31, padding=15, groups=dim),
            "3": nn.BatchNorm1d(dim, eps=6.1e-5), "5": nn.Conv1d(dim, dim, 1)})
        self.ff2 = _feed_forward(dim, hidden)
        if deepnorm:
            self.norm1 = nn.Module()
            self.norm1.layer_norm = nn.LayerNorm(dim)
        else:
            self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.attention.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        freqs = self.attention.rotary_emb.freqs
        out = F.scaled_dot_product_attention(_rotate(q, freqs), _rotate(k, freqs), v, is_causal=True)
        return self.attention.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.residual * _run_ff(self.ff1, x)
        y = self.attend(x)
        x = self.norm1.layer_norm(self.alpha * x + y) if self.deepnorm else x + y
        m = self.conv_block.module
        c = F.glu(m["0"](self.conv_block.layer_norm(x).transpose(1, 2)), dim=1)
        x = x + m["5"](F.gelu(m["3"](m["2"](c)))).transpose(1, 2)
        x = x + self.residual * _run_ff(self.ff2, x)
        return self.norm2(x)


class OmarNet(nn.Module):
    """Patches ``[B, N, patch]`` → every hidden state ``[layers, B, N, dim]``."""

    def __init__(self, patch: int, dim: int, depth: int, heads: int, hidden: int, residual: float,
                 deepnorm: bool, alpha: float) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise UserError(f"omar-rq: width {dim} does not split into {heads} heads of even size")
        self.embedding_layer = nn.Linear(patch, dim)
        self.net = nn.Module()
        self.net.layers = nn.ModuleList(Block(dim, heads, hidden, residual, deepnorm, alpha)
                                        for _ in range(depth))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.embedding_layer(patches)
        states = [x]
        for block in self.net.layers:
            x = block(x)
            states.append(x)
        return torch.stack(states)


class OmarExtractor(Extractor):
    """Every hidden state of an OMAR-RQ encoder."""

    def __init__(self, name: str, net: OmarNet, front: dict[str, Any], identity: dict[str, Any],
                 context_s: float = 30.0, kind: str = "omar-rq") -> None:
        super().__init__(name)
        self.kind = kind
        self.net = accelerate(net.eval().requires_grad_(False))  # weights cast once under CPU autocast
        self.front = front
        self.sample_rate = int(front["sr"])
        self.patch = tuple(front["patch_size"])
        if front["input"] == "mel":
            self.mel = MelSpectrogram(self.sample_rate, front["win_len"], front["hop_len"],
                                      front["n_mel"], scale=front["mel_scale"], norm=front["norm"])
        self.hop = int(front.get("hop_len", 1))
        self.frame_rate = self.sample_rate / (self.hop * self.patch[1])
        self.num_layers = len(net.net.layers) + 1
        self.dim = net.embedding_layer.out_features
        self.context_s = float(context_s)
        self._identity = identity
        self.num_parameters = sum(p.numel() for p in net.parameters())
        self.architecture = (f"omar-rq conformer ({len(net.net.layers)} x {self.dim}, "
                             f"{net.net.layers[0].heads} heads, {front['input']} input)")

    def identity(self) -> dict[str, Any]:
        return {**self._identity, "kind": self.kind, "front": self.front, "version": 1}

    def num_frames(self, num_samples: int) -> int:
        if self.front["input"] == "audio":
            return num_samples // self.patch[1]
        if num_samples <= self.mel.n_fft // 2:
            return 0
        return (1 + num_samples // self.hop) // self.patch[1]

    def to(self, device: torch.device | str) -> Extractor:
        super().to(device)
        self.net.to(self.device)
        if self.front["input"] == "mel":
            self.mel.to(self.device)
        return self

    def patches(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` → the standardised input cut into flattened patches ``[B, N, F·T]``."""
        f = self.front
        with torch.autocast(self.device.type, enabled=False):
            x = waves.to(self.device, torch.float32)
            x = torch.log10(1 + 10000 * self.mel(x)) if f["input"] == "mel" else x[:, None]
            if f["norm_mean"] is not None and f["norm_std"] is not None:
                x = (x - f["norm_mean"]) / f["norm_std"]
        bands, width = self.patch
        n = x.shape[-1] // width
        x = x[:, :bands, : n * width].unflatten(-1, (n, width))  # [B, F, N, T]
        return x.permute(0, 2, 1, 3).flatten(2)

    @torch.inference_mode()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.net(self.patches(waves))


# -- loading -----------------------------------------------------------------------------------

def front_end(bindings: dict[str, Any], source: Path) -> dict[str, Any]:
    """The input representation a config names, with its options."""
    rep = bindings.get("MaskingModel.input_representation") or bindings.get("build_module.representation")
    if rep == "@MelSpectrogram":
        keys = ("sr", "win_len", "hop_len", "power", "n_mel", "norm", "mel_scale", "norm_mean", "norm_std")
        front = {"input": "mel", "patch_size": list(MEL_PATCH),
                 **{k: bindings.get(f"MelSpectrogram.{k}") for k in keys}}
        if front["power"] != 2 or front["n_mel"] != MEL_PATCH[0]:
            raise UserError(f"{source}: MelSpectrogram power {front['power']}, n_mel {front['n_mel']}; "
                            f"the package patches a mel input by {MEL_PATCH[0]} bands, power 2")
    elif rep == "@Waveform":
        front = {"input": "audio", "sr": bindings.get("Waveform.sr"),
                 "norm_mean": bindings.get("Waveform.norm_mean"),
                 "norm_std": bindings.get("Waveform.norm_std"),
                 "patch_size": list(bindings.get("Waveform.patch_size") or ())}
    else:
        raise UserError(f"{source}: input representation {rep!r} is not supported; OMAR-RQ "
                        "checkpoints with a mel or waveform input are (@MelSpectrogram, @Waveform)")
    missing = [k for k, v in front.items() if v is None and not k.startswith("norm_")]
    if missing or len(front["patch_size"]) != 2:
        raise UserError(f"{source}: bindings missing for the input ({', '.join(missing) or 'patch_size'}); "
                        "re-download config.gin")
    return front


def build(bindings: dict[str, Any], front: dict[str, Any], source: Path) -> OmarNet:
    c = {k.split(".", 1)[1]: v for k, v in bindings.items() if k.startswith("Conformer.")}
    if bindings.get("build_module.net", "@Conformer") != "@Conformer":
        raise UserError(f"{source}: net {bindings['build_module.net']!r}; only @Conformer is supported")
    if not c.get("use_rope", False):
        raise UserError(f"{source}: use_rope is false; only rotary-position checkpoints (all "
                        "published ones) are supported")
    try:
        dim, depth, heads = int(c["embed_dim"]), int(c["depth"]), int(c["num_heads"])
        hidden = int(dim * float(c["mlp_ratio"]))
        deepnorm = bool(c.get("use_deepnorm", False))
        net = OmarNet(front["patch_size"][0] * front["patch_size"][1], dim, depth, heads, hidden,
                      float(c["mlp_residual_factor"]), deepnorm, float(c.get("alpha_deepnorm", 1.0)))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{source}: Conformer binding missing or invalid ({e}); re-download config.gin") from e
    return net


def load_omar_rq(name: str = "omar-rq", variant: str = "base", checkpoint: str | None = None,
                 context_s: float = 30.0, device: str = "cpu", **options: Any) -> OmarExtractor:
    """An OMAR-RQ checkpoint folder (``config.gin`` + ``model.ckpt``) or hub name found offline."""
    from mirprobe.models.mert import load_weights, read_state_dict

    check_variant("omar-rq", variant, VARIANTS)
    expected = expected_facts(name, "omar-rq", options)
    hub = f"mtg-upf/omar-rq-{variant}"
    config = resolve_file(str(checkpoint or hub), "config.gin",
                          how=f"`hf download {hub}`")
    weights = config.parent / "model.ckpt"
    if not weights.is_file():
        raise UserError(f"{weights}: not found beside config.gin; download it with `hf download {hub}`")
    bindings = parse_gin(config.read_text(), config)
    front = front_end(bindings, config)
    state = read_state_dict([weights])
    kept = {k: v for k, v in state.items() if k.startswith(("net.", "embedding_layer."))}
    net = build(bindings, front, config)
    load_weights(net, kept, weights, fix="the file does not match config.gin — re-download the checkpoint")
    identity = {"weights": weights_digest([weights]), "config": digest(bindings)}
    extractor = OmarExtractor(name, net, front, identity, context_s=context_s)
    extractor.source = config.parent
    check_expected(extractor, config.parent, expected)
    return extractor.to(device)


def random_omar_rq(arch: str, seed: int = 0, *, name: str | None = None,
                   context_s: float = 30.0) -> OmarExtractor:
    """A randomly initialised copy of a published size (``omar-rq-base``: mel input, 24 × 1024)."""
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    c = ARCHITECTURES[arch]
    front = {"input": "mel", "patch_size": list(MEL_PATCH), **BASE_MEL}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = OmarNet(MEL_PATCH[0] * MEL_PATCH[1], c["embed_dim"], c["depth"], c["num_heads"],
                      int(c["embed_dim"] * c["mlp_ratio"]), c["mlp_residual_factor"], True,
                      c["alpha_deepnorm"])
        head = c["embed_dim"] // c["num_heads"]
        for block in net.net.layers:  # the package's rotary frequencies
            block.attention.rotary_emb.freqs.data = 1.0 / 10000 ** (torch.arange(0, head, 2).float() / head)
    identity = {"architecture": arch, "seed": int(seed), "torch": torch.__version__}
    return OmarExtractor(name or f"random-{arch}", net, front, identity, context_s=context_s, kind="random")


def preflight(variant: str = "base", checkpoint: str | None = None, **_: Any) -> None:
    """Fail at once when the variant is unknown or the folder is not found."""
    check_variant("omar-rq", variant, VARIANTS)
    resolve_file(str(checkpoint or f"mtg-upf/omar-rq-{variant}"), "config.gin",
                 how=f"`hf download mtg-upf/omar-rq-{variant}`")


load_omar_rq.preflight = preflight  # type: ignore[attr-defined]

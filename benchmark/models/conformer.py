"""The BEST-RQ conformer shared by MuQ and MusicFM: a 2-D residual conv front end that takes the
mel spectrogram to 25 Hz, then transformers' ``Wav2Vec2ConformerEncoder`` with rotary positions.

Parameter names are those of the authors' checkpoints (after their ``model.`` prefix), so a state
dict loads as it is; the network is written here on current torch, from these facts of the
original code (transformers 4.x ``modeling_wav2vec2_conformer``, MusicFM's ``modules/conv.py``):

- front end (``conv``): two residual blocks, each conv3×3 → BN → ReLU → conv3×3 → BN plus a
  conv3×3 → BN shortcut, ReLU after the sum; stride (2 in frequency, 2 in time) for 25 Hz, (2, 1)
  for MuQ's 50 Hz variant; channels × frequency bands flattened per frame, then a linear layer;
- conformer layer: ½·FFN → self-attention → convolution module → ½·FFN → LayerNorm, each
  sub-block pre-normed with a residual; FFN ``Linear → swish → Linear``; convolution module
  ``LayerNorm → pointwise conv to 2× → GLU → depthwise conv (k, same padding) → BatchNorm →
  swish → pointwise conv``;
- rotary positions are applied to the normed layer input *before* the query/key projections
  (transformers' quirk), per head, rotating the two halves of each head's vector;
- hidden states: the encoder input (front-end output) first, then each layer's output, the last
  one after the encoder's final LayerNorm. The unused ``pos_conv_embed`` weights are not run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"swish": F.silu, "silu": F.silu, "gelu": F.gelu, "relu": F.relu}


class Res2d(nn.Module):
    """One residual block of the front end (names as in the checkpoints)."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv3 = nn.Conv2d(cin, cout, 3, padding=1, stride=stride)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(self.bn3(self.conv3(x)) + out)


class ConvSubsampling(nn.Module):
    """``[B, mels, T]`` → ``[B, T / time_stride, dim]``."""

    def __init__(self, channels: int, dim: int, n_mels: int, time_strides: tuple[int, int]) -> None:
        super().__init__()
        self.time_strides, self.n_mels = time_strides, n_mels
        self.conv = nn.Sequential(Res2d(1, channels, (2, time_strides[0])),
                                  Res2d(channels, channels, (2, time_strides[1])))
        self.linear = nn.Linear(channels * (n_mels // 4), dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv(mel[:, None])  # [B, C, F, T]
        return self.linear(x.permute(0, 3, 1, 2).flatten(2))

    def num_frames(self, mel_frames: int) -> int:
        for stride in self.time_strides:
            mel_frames = (mel_frames - 1) // stride + 1 if mel_frames > 0 else 0
        return mel_frames


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(dim, hidden)
        self.output_dense = nn.Linear(hidden, dim)
        self.act = ACTIVATIONS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(self.act(self.intermediate_dense(x)))


class ConvModule(nn.Module):
    def __init__(self, dim: int, kernel: int, act: str) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, padding=(kernel - 1) // 2, groups=dim, bias=False)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1, bias=False)
        self.act = ACTIVATIONS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise_conv1(self.layer_norm(x).transpose(1, 2)), dim=1)
        y = self.act(self.batch_norm(self.depthwise_conv(y)))
        return self.pointwise_conv2(y).transpose(1, 2)


class RotaryAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        heads = x.view(b, t, self.heads, d // self.heads)
        first, second = heads.chunk(2, dim=-1)
        rotated = (heads * cos + torch.cat((-second, first), dim=-1) * sin).reshape(b, t, d)

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, -1).transpose(1, 2)

        q, k, v = split(self.linear_q(rotated)), split(self.linear_k(rotated)), split(self.linear_v(x))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.linear_out(out.transpose(1, 2).reshape(b, t, d))


class ConformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, kernel: int, act: str) -> None:
        super().__init__()
        self.ffn1_layer_norm = nn.LayerNorm(dim)
        self.ffn1 = FeedForward(dim, ffn, act)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.self_attn = RotaryAttention(dim, heads)
        self.conv_module = ConvModule(dim, kernel, act)
        self.ffn2_layer_norm = nn.LayerNorm(dim)
        self.ffn2 = FeedForward(dim, ffn, act)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        x = x + self.self_attn(self.self_attn_layer_norm(x), cos, sin)
        x = x + self.conv_module(x)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x)


class ConformerEncoder(nn.Module):
    """The layers and the final LayerNorm; returns every hidden state."""

    def __init__(self, dim: int, depth: int, heads: int, ffn: int, kernel: int, act: str = "swish",
                 eps: float = 1e-5, rotary_base: float = 10000.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConformerLayer(dim, heads, ffn, kernel, act) for _ in range(depth))
        self.layer_norm = nn.LayerNorm(dim, eps=eps)
        head = dim // heads
        inv_freq = 1.0 / rotary_base ** (torch.arange(0, head, 2).float() / head)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotary(self, frames: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ``[frames, 1, head]`` (broadcast over heads): positions 0..frames-1."""
        angles = torch.outer(torch.arange(frames, device=self.inv_freq.device).float(), self.inv_freq)
        angles = torch.cat((angles, angles), dim=-1)[:, None]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        cos, sin = self.rotary(x.shape[1], x.dtype)
        states = [x]
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin)
            states.append(self.layer_norm(x) if i == len(self.layers) - 1 else x)
        if not self.layers:
            states[-1] = self.layer_norm(x)
        return states


class BestRQEncoder(nn.Module):
    """Front end + conformer: normalised log-mel ``[B, mels, T]`` → hidden states."""

    def __init__(self, *, channels: int, dim: int, depth: int, heads: int, ffn: int, kernel: int,
                 n_mels: int, time_strides: tuple[int, int], act: str = "swish", eps: float = 1e-5,
                 rotary_base: float = 10000.0) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"width {dim} does not split into {heads} heads of even size")
        self.conv = ConvSubsampling(channels, dim, n_mels, time_strides)
        self.conformer = ConformerEncoder(dim, depth, heads, ffn, kernel, act, eps, rotary_base)

    def forward(self, mel: torch.Tensor) -> list[torch.Tensor]:
        return self.conformer(self.conv(mel))

"""MusiCNN (Pons & Serra 2019), MARBLE's CNN baseline, in PyTorch from the weights PyPI ships.

``pip install --no-deps musicnn==0.1.0`` installs the TensorFlow-1 checkpoints ``MTT_musicnn``
(MagnaTagATune) and ``MSD_musicnn`` (Million Song Dataset); the package is never imported (it
imports TensorFlow and pins numpy<1.17): its folder is found with ``importlib.util.find_spec`` and
the tensor bundle is read by :mod:`mirprobe.models.tfbundle`.

The network, layer by layer as in the paper (TF variable names in brackets):

- input: 16 kHz, librosa's mel spectrogram (n_fft 512, hop 256, 96 slaney mels, power 2, centred,
  zero-padded; computed in torch, the filter bank from :mod:`mirprobe.dsp`, without importing
  librosa), ``log10(10000·mel + 1)`` in float32 (musicnn's own float16 log overflows), then a
  one-channel batch norm (``batch_normalization``);
- front end: timbral convs 7×38 and 7×67 (``conv2d``, ``conv2d_1``, 204 filters each, 'valid' in
  frequency, the input padded by 3 frames in time) and temporal convs 128×1, 64×1, 32×1
  (``conv2d_2..4``, 51 each, TF 'same'), each ReLU → batch norm → max over frequency: 561 per frame;
- mid end: three 1-D convs over time, 7 taps, 64 filters (``conv2d_5..7``), ReLU → batch norm, the
  second and third residual: ``cnn1``, ``cnn2``, ``cnn3``;
- back end, per patch: max and mean over time of [front end, cnn1..3] (753 each), interleaved
  feature by feature (TF's flatten of [753, 2]) → batch norm (1506) → dense 200, ReLU, batch norm
  → ``penultimate``; dense 50 → sigmoid → ``taggram``.

Layers differ in width and time resolution: ``forward`` returns the four frame-level layers at
62.5 Hz, zero-padded to 561; the clip view (:meth:`MusicnnExtractor.pool`) pools them per window
and runs the back end on the window, so it holds all eight layers, zero-padded to 753. A window is
the model's own patch, 187 frames (2.992 s); a longer window is pooled as one patch (the network is
convolutional up to the pooling), a shorter tail as its own shorter patch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mirprobe.dsp import mel_filterbank
from mirprobe.errors import UserError
from mirprobe.models.bandconv import BandPeaks
from mirprobe.models.base import Extractor
from mirprobe.models.fastops import conv1d_channels_last, routes_enabled

INSTALL = "pip install --no-deps musicnn==0.1.0"
CHECKPOINTS = ("MTT_musicnn", "MSD_musicnn")
SAMPLE_RATE, N_FFT, HOP, N_MELS, PATCH = 16000, 512, 256, 96, 187
EPS = 1e-3  # TF batch-norm epsilon
FRAME_LAYERS = {"frontend": 561, "cnn1": 64, "cnn2": 64, "cnn3": 64}
PATCH_LAYERS = {"mean_pool": 753, "max_pool": 753, "penultimate": 200, "taggram": 50}
TIMBRAL = (("conv2d", 1), ("conv2d_1", 2))  # (conv, its batch norm's index); 7 frames each
TEMPORAL = (("conv2d_2", 3), ("conv2d_3", 4), ("conv2d_4", 5))
MIDEND = (("conv2d_5", 6), ("conv2d_6", 7), ("conv2d_7", 8))
_BAND = "band_peaks"  # the timbral filters' BandPeaks, in the net's __dict__ (not state)


def package_folder() -> Path:
    """The installed ``musicnn`` package's folder, found without importing it."""
    spec = importlib.util.find_spec("musicnn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise UserError(f"musicnn weights: the musicnn package is not installed; run `{INSTALL}`")
    return Path(locations[0])


def _keep(name: str) -> bool:
    """Inference weights only: not Adam's moments nor its beta powers."""
    return not (name.endswith(("/Adam", "/Adam_1")) or name.startswith("beta"))


def load_weights(checkpoint: str) -> tuple[dict[str, np.ndarray], str]:
    """The weights of ``checkpoint`` (``MTT_musicnn``/``MSD_musicnn``) and the folder they came from."""
    from mirprobe.models.tfbundle import read_bundle

    if checkpoint not in CHECKPOINTS:
        raise UserError(f"musicnn: unknown checkpoint {checkpoint!r}; use one of {', '.join(CHECKPOINTS)}")
    folder = package_folder() / checkpoint
    fix = f"reinstall with `pip install --force-reinstall {INSTALL.split(' ', 2)[2]}`"
    weights = read_bundle(f"{folder}/", keep=_keep, fix=fix)  # the bundle's prefix is empty
    missing = [k for k in _expected() if k not in weights]
    if missing:
        raise UserError(f"{folder}/.index: weights {', '.join(missing[:3])} missing; {fix}")
    return weights, str(folder)


def _expected() -> list[str]:
    convs = [f"conv2d{'' if i == 0 else f'_{i}'}/{p}" for i in range(8) for p in ("kernel", "bias")]
    norms = [f"batch_normalization{'' if i == 0 else f'_{i}'}/{p}" for i in range(11)
             for p in ("gamma", "beta", "moving_mean", "moving_variance")]
    return convs + norms + [f"{d}/{p}" for d in ("dense", "dense_1") for p in ("kernel", "bias")]


class MusicnnNet(torch.nn.Module):
    """The network with its weights as buffers; batch norms folded to a scale and a shift."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        for name, w in weights.items():
            self.register_buffer(name.replace("/", "__"), torch.from_numpy(np.array(w, dtype=np.float32)))
        basis = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS)  # slaney, as musicnn's librosa
        self.register_buffer("mel_basis", torch.from_numpy(basis))
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True))
        self.register_load_state_dict_post_hook(lambda module, _: module.__dict__.pop(_BAND, None))

    def logmel(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, samples]`` → ``[B, frames, 96]``: librosa's ``melspectrogram`` (centred, zero-padded
        frames; the last, half-padded frame dropped) then ``log10(10000·mel + 1)``, in float32."""
        spec = torch.stft(waves.float(), N_FFT, HOP, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()  # [B, 257, frames + 1]
        mel = self.mel_basis @ power[..., : waves.shape[-1] // HOP]
        return torch.log10(10000.0 * mel + 1.0).transpose(1, 2)

    def _w(self, name: str) -> torch.Tensor:
        return getattr(self, name.replace("/", "__"))

    def _norm(self, x: torch.Tensor, index: int, dim: int = 1) -> torch.Tensor:
        """Inference batch norm ``index`` over axis ``dim`` of ``x``."""
        scale, shift = self._scale_shift(index)
        shape = [1] * x.dim()
        shape[dim] = -1
        return x * scale.view(shape) + shift.view(shape)

    def _scale_shift(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = f"batch_normalization{'' if index == 0 else f'_{index}'}"
        scale = self._w(f"{p}/gamma") * torch.rsqrt(self._w(f"{p}/moving_variance") + EPS)
        return scale, self._w(f"{p}/beta") - self._w(f"{p}/moving_mean") * scale

    def _branch(self, x: torch.Tensor, conv: str, norm: int, peak: torch.Tensor | None = None) -> torch.Tensor:
        """Conv (TF kernel ``[time, freq, in, out]`` on ``[B, in, time, freq]``, valid), ReLU, batch
        norm, max over frequency → ``[B, out, time]``. ReLU and a batch norm of positive scale are
        non-decreasing, so the max over frequency is taken first (of negative scale: the min),
        which spares three passes over the largest tensor of the network; the result is the same.
        The fast route negates the kernels of negative-scale filters, whose min is then the
        negated max: one reduction over the convolution's output instead of a max and a min
        (``peak``: that max, already taken by :meth:`_band_peaks`)."""
        scale, shift = self._scale_shift(norm)
        if peak is None and routes_enabled():
            kernel, sign = self._signed_kernel(conv, scale)
            peak = F.conv2d(x, kernel).amax(dim=3) * sign[:, None]
        elif peak is None:
            z = F.conv2d(x, self._kernel(conv))
            peak = torch.where((scale >= 0)[:, None], z.amax(dim=3), z.amin(dim=3))
        return torch.relu(peak + self._w(f"{conv}/bias")[:, None]) * scale[:, None] + shift[:, None]

    def _kernel(self, conv: str) -> torch.Tensor:
        return self._w(f"{conv}/kernel").permute(3, 2, 0, 1)  # [out, in, time, freq]

    def _signed_kernel(self, conv: str, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel with its negative-scale filters negated (their min over frequency is then
        the negated max) and the filters' signs."""
        sign = torch.where(scale >= 0, 1.0, -1.0)
        return self._kernel(conv) * sign[:, None, None, None], sign

    def _band_peaks(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        """The timbral branches' max over frequency (of the sign-folded filters, as in
        :meth:`_branch`) through :class:`BandPeaks` on the fast route in float32 on a CPU
        (2.5× faster than the convolutions; under autocast the bfloat16 convolutions are faster)."""
        if not (routes_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and not torch.is_grad_enabled()):
            return [None] * len(TIMBRAL)
        if self.__dict__.get(_BAND, (None,))[0] != self._band_stamp():
            signed = [self._signed_kernel(conv, self._scale_shift(norm)[0]) for conv, norm in TIMBRAL]
            self.__dict__[_BAND] = (self._band_stamp(), BandPeaks([k[:, 0] for k, _ in signed], x.shape[3]),
                                    [sign for _, sign in signed])
        _, band, signs = self.__dict__[_BAND]
        return [p * s[:, None] for p, s in zip(band(x[:, 0]), signs, strict=True)]

    def _band_stamp(self) -> tuple:
        """The timbral weights' tensors (moved, replaced or loaded weights make :class:`BandPeaks` again)."""
        names = [f"{c}/kernel" for c, _ in TIMBRAL] + [f"batch_normalization_{i}/{p}" for _, i in TIMBRAL
                                                      for p in ("gamma", "moving_variance")]
        return tuple((self._w(n).data_ptr(), self._w(n).device) for n in names)

    def frames(self, logmel: torch.Tensor) -> list[torch.Tensor]:
        """``[B, T, 96]`` log-mel → front end ``[B, 561, T]`` and cnn1..3 ``[B, 64, T]``."""
        x = self._norm(logmel[:, None], 0)  # [B, 1, T, 96]
        pads = {conv: (3, 3) for conv, _ in TIMBRAL}
        for conv, _ in TEMPORAL:
            k = self._w(f"{conv}/kernel").shape[0]
            pads[conv] = ((k - 1) // 2, k // 2)  # TF 'same': the extra frame after
        before, after = max(p[0] for p in pads.values()), max(p[1] for p in pads.values())
        padded = F.pad(x, (0, 0, before, after))  # once; each branch takes its slice of it
        end = before + x.shape[2]
        span = {conv: padded[:, :, before - pads[conv][0]: end + pads[conv][1]] for conv in pads}
        peaks = [*self._band_peaks(span[TIMBRAL[0][0]]), *[None] * len(TEMPORAL)]  # (same padding)
        front = torch.cat([self._branch(span[conv], conv, norm, p)
                           for (conv, norm), p in zip((*TIMBRAL, *TEMPORAL), peaks, strict=True)], dim=1)
        layers, h = [front], front
        # float32: the stock convolution (channels last was no faster here, and further from float64)
        conv1d = conv1d_channels_last if torch.is_autocast_enabled(h.device.type) else F.conv1d
        for i, (conv, norm) in enumerate(MIDEND):
            kernel = self._w(f"{conv}/kernel")[:, :, 0].permute(2, 1, 0)  # [out, in, taps]
            y = self._norm(torch.relu(conv1d(h, kernel, self._w(f"{conv}/bias"), padding=3)), norm)
            h = y if i == 0 else y + h
            layers.append(h)
        return layers

    def back(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[B, 753, T]`` → mean pool, max pool ``[B, 753]``, penultimate ``[B, 200]``, taggram."""
        mean, peak = features.mean(dim=2), features.amax(dim=2)
        flat = self._norm(torch.stack([peak, mean], dim=2).flatten(1), 9)
        dense = torch.relu(flat @ self._w("dense/kernel") + self._w("dense/bias"))
        penultimate = self._norm(dense, 10)
        logits = penultimate @ self._w("dense_1/kernel") + self._w("dense_1/bias")
        return mean, peak, penultimate, torch.sigmoid(logits)


class MusicnnExtractor(Extractor):
    """MusiCNN's eight layers: four frame-level (62.5 Hz), four per window (one patch)."""

    kind = "musicnn"
    sample_rate = SAMPLE_RATE
    frame_rate = SAMPLE_RATE / HOP
    context_s = PATCH * HOP / SAMPLE_RATE  # 2.992 s: 187 frames
    dim = max(FRAME_LAYERS.values())
    num_layers = len(FRAME_LAYERS)

    def __init__(self, name: str = "musicnn-mtt", checkpoint: str = "MTT_musicnn",
                 context_s: float | None = None) -> None:
        super().__init__(name)
        self.checkpoint = checkpoint
        weights, self.source = load_weights(checkpoint)
        self.digest = _digest(weights)
        self.net = MusicnnNet(weights).eval()
        self.num_parameters = sum(int(w.size) for w in weights.values())
        self.architecture = "musicnn"
        if context_s is not None:
            self.context_s = float(context_s)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "checkpoint": self.checkpoint, "weights": self.digest,
                "mel": {"n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS, "log": "log10(10000x+1)"},
                "version": 1}

    def layer_names(self) -> list[str]:
        return [*FRAME_LAYERS, *PATCH_LAYERS]

    def view_layers(self, view: str) -> list[str]:
        return list(FRAME_LAYERS) if view == "frame" else self.layer_names()

    def layer_dims(self, view: str) -> list[int]:
        widths = {**FRAME_LAYERS, **PATCH_LAYERS}
        return [widths[name] for name in self.view_layers(view)]

    def layer_rates(self) -> dict[str, float]:
        return {**dict.fromkeys(FRAME_LAYERS, self.frame_rate),
                **dict.fromkeys(PATCH_LAYERS, 1.0 / self.context_s)}

    @property
    def clip_dim(self) -> int:
        return max(PATCH_LAYERS.values())

    def num_frames(self, num_samples: int) -> int:
        return num_samples // HOP

    def to(self, device: torch.device | str) -> Extractor:
        super().to(device)
        self.net.to(self.device)
        return self

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=False):  # the log mel needs float32
            logmel = self.net.logmel(waves.to(self.device))
        layers = self.net.frames(logmel)
        out = waves.new_zeros((len(layers), waves.shape[0], layers[0].shape[2], self.dim))
        for i, h in enumerate(layers):
            out[i, ..., : h.shape[1]] = h.transpose(1, 2)
        return out

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[4, B, F, 561]`` frame layers → ``[8, B, 753]``: the frame layers' means, then the back
        end on the window (mean pool, max pool, penultimate, taggram), zero-padded to 753."""
        h = hidden.float()
        frames = [h[i, ..., :w].transpose(1, 2) for i, w in enumerate(FRAME_LAYERS.values())]
        back = self.net.back(torch.cat(frames, dim=1))
        layers = [f.mean(dim=2) for f in frames] + list(back)
        out = h.new_zeros((len(layers), h.shape[1], self.clip_dim))
        for i, x in enumerate(layers):
            out[i, :, : x.shape[1]] = x
        return out


def _digest(weights: dict[str, np.ndarray]) -> str:
    import hashlib

    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(np.ascontiguousarray(weights[name]).tobytes())
    return h.hexdigest()[:16]


def load_musicnn(name: str = "musicnn-mtt", checkpoint: str = "MTT_musicnn",
                 context_s: float | None = None, description: str | None = None) -> MusicnnExtractor:
    """Factory of the ``musicnn`` kind (``description`` documents the config)."""
    return MusicnnExtractor(name, checkpoint=checkpoint, context_s=context_s)


def preflight(checkpoint: str = "MTT_musicnn", **_: Any) -> None:
    """Fail at once, before a run's long work, when the checkpoint's files are not installed."""
    if checkpoint not in CHECKPOINTS:
        raise UserError(f"musicnn: unknown checkpoint {checkpoint!r}; use one of {', '.join(CHECKPOINTS)}")
    index = package_folder() / checkpoint / ".index"
    if not index.is_file():
        raise UserError(f"{index}: checkpoint index not found; run `pip install --force-reinstall "
                        f"{INSTALL.split(' ', 2)[2]}`")


load_musicnn.preflight = preflight  # type: ignore[attr-defined]


def weights_status(checkpoint: str) -> str:
    """What ``models list`` says about a musicnn checkpoint (found offline or not)."""
    try:
        folder = package_folder() / str(checkpoint)
    except UserError:
        return f"not found ({INSTALL})"
    return f"found: {folder}" if (folder / ".index").is_file() else f"not found ({INSTALL})"

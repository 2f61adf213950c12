"""Random-init control: an untrained copy of an architecture (the standard baseline in probing).

``architecture: small`` (the default, for the quickstart) is a 4-layer, 128-wide HuBERT with the
real wav2vec2 conv strides at 16 kHz (50 Hz frames). Real architectures (``mert-v1-95m``,
``mert-v1-330m``, ...) come from :func:`mirprobe.models.mert.random_architecture`, the published
sizes of MuQ and MusicFM (``muq-large``, ``musicfm-25hz``) and Dasheng (``dasheng-base``,
``dasheng-0.6b``, ``dasheng-1.2b``) and OMAR-RQ (``omar-rq-base``) from their own modules.
"""

from __future__ import annotations

from typing import Any

import torch

from mirprobe.models.base import Extractor
from mirprobe.models.fastops import accelerate

SMALL = {
    "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 256,
    "conv_dim": [128] * 7, "conv_stride": [5, 2, 2, 2, 2, 2, 2], "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "num_conv_pos_embeddings": 32, "num_conv_pos_embedding_groups": 8,
    "feat_extract_norm": "group", "do_stable_layer_norm": False,
}


class SmallRandomExtractor(Extractor):
    """A small randomly initialised HuBERT encoder (transformers), seeded."""

    kind = "random"
    sample_rate = 16000
    frame_rate = 50.0
    context_s = 5.0

    def __init__(self, name: str = "random", seed: int = 0, context_s: float = 5.0) -> None:
        from transformers import HubertConfig, HubertModel

        super().__init__(name)
        self.seed = int(seed)
        self.context_s = float(context_s)
        config = HubertConfig(**SMALL)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.model = accelerate(HubertModel(config).eval())  # oneDNN routes, weights cast once
        self.num_layers = config.num_hidden_layers + 1
        self.dim = config.hidden_size

    def identity(self) -> dict[str, Any]:
        import transformers

        return {"kind": self.kind, "architecture": "small", "config": SMALL, "seed": self.seed,
                "transformers": transformers.__version__, "torch": torch.__version__}

    def num_frames(self, num_samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(num_samples)))

    def to(self, device: torch.device | str) -> Extractor:
        super().to(device)
        self.model.to(self.device)
        return self

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        out = self.model(waves.to(self.device), output_hidden_states=True)
        return torch.stack(out.hidden_states)


def _builders() -> dict[str, Any]:
    """Random-init architecture name → ``builder(arch, seed, name=..., **options)``, beyond
    ``small``: the MERT family first, then the other published encoders."""
    from mirprobe.models.bestrq import ARCHITECTURES as BESTRQ
    from mirprobe.models.bestrq import random_bestrq
    from mirprobe.models.dasheng import ARCHITECTURES as DASHENG
    from mirprobe.models.dasheng import random_dasheng
    from mirprobe.models.mert import ARCHITECTURES as MERT
    from mirprobe.models.omar_rq import ARCHITECTURES as OMAR
    from mirprobe.models.omar_rq import random_omar_rq

    def mert(arch: str, seed: int, *, name: str, **options: Any) -> Extractor:
        from mirprobe.models.mert import random_architecture

        return random_architecture(arch, seed=seed, name=name, **options)

    families = ((MERT, mert), (BESTRQ, random_bestrq), (DASHENG, random_dasheng), (OMAR, random_omar_rq))
    return {arch: builder for names, builder in families for arch in names}


def architectures() -> list[str]:
    """Every architecture the ``random`` kind builds (``small`` aside)."""
    return list(_builders())


def RandomExtractor(name: str = "random", architecture: str = "small", seed: int = 0,  # noqa: N802
                    **options: Any) -> Extractor:
    """Factory of the ``random`` kind (a function named like the class it returns)."""
    if architecture == "small":
        return SmallRandomExtractor(name, seed=seed, **options)
    builders = _builders()
    if architecture not in builders:
        from mirprobe.errors import UserError

        raise UserError(f"unknown architecture {architecture!r}; use one of small, {', '.join(builders)}")
    return builders[architecture](architecture, seed, name=name, **options)

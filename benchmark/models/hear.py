"""The ``hear`` kind: any importable module implementing the HEAR 2021 API, as a one-layer model.

The module provides ``load_model(model_file_path)`` returning a torch module with
``sample_rate`` and ``timestamp_embedding_size``, ``get_timestamp_embeddings(audio, model)``
returning ``(embeddings [B, T, D], timestamps [B, T] in ms)`` and ``get_scene_embeddings``.
The frame rate is measured from the timestamps the module returns for a probe clip.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mirprobe.errors import UserError
from mirprobe.models.base import Extractor
from mirprobe.models.hub import file_digest

HEAR_FUNCTIONS = ("load_model", "get_timestamp_embeddings", "get_scene_embeddings")


class HearExtractor(Extractor):
    """Timestamp embeddings of a HEAR module as a single layer ``[1, B, T, D]``."""

    kind = "hear"
    normalize = False

    def __init__(self, name: str, module: Any, model: torch.nn.Module, *, model_file: str | None,
                 context_s: float = 5.0) -> None:
        super().__init__(name)
        self.module = module
        self.model = model.eval() if hasattr(model, "eval") else model
        self.model_file = model_file
        self.context_s = float(context_s)
        try:
            self.sample_rate = int(model.sample_rate)
            self.dim = int(model.timestamp_embedding_size)
        except AttributeError as e:
            raise UserError(f"HEAR module {module.__name__!r}: the model lacks {e.name!r}; "
                            "the HEAR API needs sample_rate and timestamp_embedding_size") from e
        self.num_layers = 1
        self._frames: dict[int, int] = {}
        self.frame_rate = self._measure_frame_rate()

    def _run(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, ts = self.module.get_timestamp_embeddings(waves, self.model)
        return torch.as_tensor(emb), torch.as_tensor(ts)

    @torch.inference_mode()
    def _measure_frame_rate(self) -> float:
        _, ts = self._run(torch.zeros(1, 2 * self.sample_rate, device=self.device))
        steps = np.diff(ts[0].float().cpu().numpy())
        if len(steps) == 0 or not np.all(steps > 0):
            raise UserError(f"HEAR module {self.module.__name__!r}: timestamps of a 2 s clip are not "
                            "increasing; cannot tell its frame rate")
        return float(1000.0 / np.median(steps))

    @torch.inference_mode()
    def num_frames(self, num_samples: int) -> int:
        """Frames the module returns for ``num_samples`` samples (asked once per length)."""
        n = int(num_samples)
        if n not in self._frames:
            self._frames[n] = int(self._run(torch.zeros(1, n, device=self.device))[0].shape[1]) if n else 0
        return self._frames[n]

    def to(self, device: torch.device | str) -> HearExtractor:
        super().to(device)
        if hasattr(self.model, "to"):
            self.model.to(self.device)
        return self

    @torch.inference_mode()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        emb, _ = self._run(waves.to(self.device, torch.float32))
        return emb.float()[None]

    def identity(self) -> dict[str, Any]:
        source = inspect.getsourcefile(self.module)
        return {"kind": self.kind, "module": self.module.__name__,
                "module_digest": _text_digest(source) if source else None,
                "version": getattr(self.module, "__version__", None),
                "model_file": file_digest(Path(self.model_file)) if self.model_file else None}

    @property
    def num_parameters(self) -> int:
        params = getattr(self.model, "parameters", None)
        return sum(p.numel() for p in params()) if params else 0

    @property
    def architecture(self) -> str:
        return f"HEAR module {self.module.__name__} ({type(self.model).__name__})"


def _text_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_hear(name: str, path_or_name: str | None = None, *, module: str | None = None,
              model_file: str | None = None, context_s: float = 5.0, device: str = "cpu",
              **options: Any) -> HearExtractor:
    """Import the HEAR module ``module`` (or ``path_or_name``) and load its model."""
    unknown = sorted(k for k in options if k not in ("description", "kind", "name"))
    if unknown:
        raise UserError(f"model {name!r} (hear): unknown option(s) {', '.join(unknown)}; allowed: "
                        "module, model_file, context_s, device, description")
    module_name = module or path_or_name
    if not module_name:
        raise UserError(f"model {name!r} (hear): give `module:` — an importable module with the HEAR API")
    try:
        mod = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"model {name!r} (hear): cannot import {module_name!r} ({e}); "
                        "install the package that provides it") from e
    missing = [f for f in HEAR_FUNCTIONS if not callable(getattr(mod, f, None))]
    if missing:
        raise UserError(f"HEAR module {module_name!r} lacks {', '.join(missing)}; it does not "
                        "implement the HEAR API")
    if model_file and not Path(model_file).expanduser().is_file():
        raise UserError(f"model {name!r} (hear): model_file {model_file} does not exist")
    model = mod.load_model(str(Path(model_file).expanduser())) if model_file else mod.load_model()
    return HearExtractor(name, mod, model, model_file=model_file, context_s=context_s).to(device)

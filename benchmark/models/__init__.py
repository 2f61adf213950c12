"""Model registry: ``load_model(name_or_path, **options)`` → an :class:`Extractor`.

A name refers to ``configs/models/<name>.yaml`` (which gives ``kind`` and options); a folder
with a ``config.json``, a checkpoint file or a hub-style name (``m-a-p/MERT-v1-95M``) is loaded
with the kind :func:`detect_kind` finds (``mert`` unless it is MuQ's or MusicFM's), resolved
offline. Kinds register through the entry-point group ``mirprobe.models`` (the
built-ins are this package's own entry points).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mirprobe.errors import UserError
from mirprobe.models.base import Extractor
from mirprobe.plugins import available_kinds, load


def model_options(name_or_path: str) -> dict[str, Any]:
    """Options of a named model config, or the options that load a checkpoint folder / hub name."""
    from mirprobe.config import available, named_section

    if name_or_path in available("models"):
        return named_section(name_or_path, "models")[1]
    path = Path(name_or_path).expanduser()
    if path.exists() or "/" in name_or_path:
        return {**detect_kind(name_or_path), "checkpoint": name_or_path}
    raise UserError(f"unknown model {name_or_path!r}; use one of {', '.join(available('models'))}, "
                    f"a checkpoint folder, or a hub name such as m-a-p/MERT-v1-95M")


#: Hub organisations / repositories whose checkpoints a kind other than ``mert`` loads.
HUB_KINDS = {"OpenMuQ/": "muq", "minzwon/MusicFM": "musicfm", "mtg-upf/omar-rq": "omar-rq"}


def detect_kind(name_or_path: str) -> dict[str, Any]:
    """The kind (and variant) that loads a checkpoint folder, file or hub name: a folder whose
    ``config.json`` holds ``w2v2_config`` is MuQ, MusicFM's files are ``pretrained_<variant>.pt``,
Dasheng's ``dasheng*.pt``, a folder with ``config.gin`` is OMAR-RQ;
    anything else is taken for the MERT family."""
    import json

    path = Path(name_or_path).expanduser()
    if path.is_file() and path.name in ("pretrained_msd.pt", "pretrained_fma.pt"):
        return {"kind": "musicfm", "variant": path.stem.split("_")[1]}
    if path.is_file() and path.name.startswith("dasheng") and path.suffix == ".pt":
        return {"kind": "dasheng"}
    if (path / "config.gin").is_file():
        return {"kind": "omar-rq"}
    if (path / "config.json").is_file():
        try:
            raw = json.loads((path / "config.json").read_text())
        except (OSError, ValueError):
            raw = {}  # the kind's loader reports the unreadable file
        return {"kind": "muq" if isinstance(raw, dict) and "w2v2_config" in raw else "mert"}
    for prefix, kind in HUB_KINDS.items():
        if name_or_path.startswith(prefix):
            return {"kind": kind}
    return {"kind": "mert"}


def load_model(name_or_path: str, **options: Any) -> Extractor:
    """Build the extractor ``name_or_path``; ``options`` override those of its config."""
    merged = {**model_options(name_or_path), **options} if "kind" not in options else dict(options)
    kind = merged.pop("kind", None)
    kinds = available_kinds()
    if kind not in kinds:
        raise UserError(f"model {name_or_path!r}: unknown kind {kind!r}; use one of {', '.join(sorted(kinds))}")
    factory = load(kinds[kind])
    name = Path(name_or_path).name if Path(name_or_path).is_dir() else name_or_path
    try:
        return factory(name=name, **merged)
    except TypeError as e:  # an option the kind does not take
        raise UserError(f"model {name_or_path!r} ({kind}): {e}; check the model's options") from e


def check_model(name_or_path: str, **options: Any) -> None:
    """The cheap checks a kind offers before any long work (its factory's ``preflight``, e.g.
    musicnn's weights are installed), so that a run fails at once rather than after other models."""
    merged = {**model_options(name_or_path), **options} if "kind" not in options else dict(options)
    kinds = available_kinds()
    kind = merged.pop("kind", None)
    preflight = getattr(load(kinds[kind]), "preflight", None) if kind in kinds else None
    if preflight is not None:
        preflight(**merged)


__all__ = ["Extractor", "available_kinds", "check_model", "detect_kind", "load_model", "model_options"]

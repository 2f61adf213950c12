"""Finding the checkpoints of a pre-training run: a folder of step-named sub-folders, or a listing.

A folder holds one sub-folder per checkpoint with the training step in its name —
``checkpoint-12000/`` (Hugging Face Trainer), ``step_12000/``, ``epoch=3-step=12000/``
(Lightning), ``global_step12000/``, ``12000/`` — each in a layout mirprobe loads (a
``config.json`` and weights: the ``mert`` kind for MERT/HuBERT/data2vec-audio, ``muq`` for MuQ's
layout, ``hf`` for other transformers encoders; ``config.gin`` and ``model.ckpt``: ``omar-rq``).
Other kinds (``musicfm``, ``dasheng``: single files) are named in a listing. Sub-folders without a step in the name (``logs/``, ``runs/``)
and files are ignored. A YAML listing names folders and steps explicitly::

    name: my-run                  # optional; default: the file's name
    checkpoints:
      - {step: 12000, path: ckpt/a}            # relative to the listing's folder
      - {step: 24000, path: /abs/b, kind: hf}  # any model option (kind, layers, dtype, ...)

or, shorter, ``checkpoints: {12000: ckpt/a, 24000: /abs/b}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mirprobe.errors import UserError

#: ``step`` followed by the number (``step_12000``, ``epoch=3-step=12000``, ``global_step12000``).
_STEP = re.compile(r"step[_=-]?(\d+)(?!.*step)", re.IGNORECASE)
#: Else a name that is a word and a number (``checkpoint-12000``, ``ckpt12000``) or a number.
_WORD_NUMBER = re.compile(r"[A-Za-z]*[-_]?(\d+)")
_NAME = re.compile(r"[A-Za-z0-9._-]+")
MERT_TYPES = ("mert_model", "hubert", "data2vec-audio")
LISTING_SUFFIXES = (".yaml", ".yml")
HINT = "name them checkpoint-12000/, step_12000/ or 12000/, or list them in a YAML file"


class NoCheckpoints(UserError):
    """The folder holds no checkpoint (yet): an error, except to ``--watch``, which waits."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of a series: its training step, folder and model options."""

    step: int
    path: Path
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def model_name(self, series: str) -> str:
        """The checkpoint's model name in run records: ``<series>@step=<step>``."""
        return f"{series}@step={self.step}"

    def model_entry(self, series: str) -> dict[str, Any]:
        """An inline ``models`` entry of a run config that loads this checkpoint."""
        return {"name": self.model_name(series), "kind": detect_kind(self.path),
                "checkpoint": str(self.path), **self.options}

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """Names, sizes and modification times of the checkpoint's files: changes when it is
        (re)written, e.g. while a training job is still saving it."""
        if not self.path.is_dir():
            return ()
        files = sorted(p for p in self.path.rglob("*") if p.is_file())
        return tuple((str(p.relative_to(self.path)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in files)


def step_of(name: str) -> int | None:
    """The training step a folder name states, or None when it states none (or is ambiguous)."""
    m = _STEP.search(name)
    if m:
        return int(m.group(1))
    m = _WORD_NUMBER.fullmatch(name)
    return int(m.group(1)) if m else None


def detect_kind(folder: Path) -> str:
    """``muq`` and ``omar-rq`` for their folders (``mirprobe.models.detect_kind``), ``mert`` for
    MERT/HuBERT/data2vec-audio checkpoints (and unreadable ones: loading then says what is
    wrong), ``hf`` for other transformers audio encoders."""
    from mirprobe.models import detect_kind as native_kind

    kind = native_kind(str(folder))["kind"]
    if kind != "mert":
        return kind
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return "mert"
    return "mert" if model_type in MERT_TYPES or model_type is None else "hf"


def series_name(name: str) -> str:
    """A series name usable in model names and file names (letters, digits, ``._-``)."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "series"
    return clean


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UserError(f"series name {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def discover(source: Path) -> tuple[str, list[Checkpoint]]:
    """``(series name, checkpoints in step order)`` of a folder or a YAML listing."""
    source = Path(source).expanduser().resolve()
    if source.is_file() and source.suffix in LISTING_SUFFIXES:
        return read_listing(source)
    if not source.is_dir():
        raise UserError(f"{source}: no such folder; give the folder holding the checkpoints "
                        "(or a YAML file listing them)")
    found: dict[int, Path] = {}
    for sub in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        step = step_of(sub.name)
        if step is None:
            continue
        if step in found:
            raise UserError(f"{sub}: claims step {step}, as does {found[step]}; keep one of them "
                            "or list the checkpoints in a YAML file")
        found[step] = sub
    if not found:
        raise NoCheckpoints(f"{source}: no checkpoint sub-folder with a training step in its name; {HINT}")
    return series_name(source.name), [Checkpoint(s, found[s]) for s in sorted(found)]


def read_listing(path: Path) -> tuple[str, list[Checkpoint]]:
    """The checkpoints a YAML listing names (see the module docstring)."""
    try:
        raw = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - yaml errors of any kind: name the file
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from e
    entries = raw.get("checkpoints") if isinstance(raw, DictConfig) else None
    if isinstance(entries, DictConfig):
        entries = [{"step": k, "path": v} for k, v in entries.items()]
    elif isinstance(entries, ListConfig):
        entries = OmegaConf.to_container(entries, resolve=True)
    if not entries:
        raise UserError(f"{path}: no 'checkpoints' list; write checkpoints: [{{step: 12000, path: "
                        "ckpt/a}}, ...] or checkpoints: {12000: ckpt/a, ...}")
    seen: dict[int, Path] = {}
    out = []
    for entry in entries:
        step, folder, options = _listing_entry(path, entry)
        if step in seen:
            raise UserError(f"{path}: step {step} is listed twice ({seen[step]} and {folder}); "
                            "give each checkpoint its own step")
        seen[step] = folder
        out.append(Checkpoint(step, folder, options))
    name = raw.get("name") or path.stem
    return series_name(str(name)), sorted(out, key=lambda c: c.step)


def _listing_entry(path: Path, entry: Any) -> tuple[int, Path, dict[str, Any]]:
    if not isinstance(entry, dict) or "step" not in entry or "path" not in entry:
        raise UserError(f"{path}: checkpoint entry {entry!r} needs 'step' and 'path'")
    options = {k: v for k, v in entry.items() if k not in ("step", "path")}
    try:
        step = int(str(entry["step"]))
    except ValueError:
        raise UserError(f"{path}: step {entry['step']!r} is not a whole number") from None
    folder = Path(str(entry["path"])).expanduser()
    return step, (folder if folder.is_absolute() else path.parent / folder).resolve(), options

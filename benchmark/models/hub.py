"""Checkpoint resolution, offline: a local folder, or a hub name found in a local cache.

A hub name such as ``m-a-p/MERT-v1-95M`` is looked up, in order, under

* ``$MIRPROBE_MODELS/<org>/<name>``, ``$MIRPROBE_MODELS/<name>`` and
  ``$MIRPROBE_MODELS/models--<org>--<name>/snapshots/<rev>``;
* the Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``): ``models--<org>--<name>/snapshots/<rev>/``, the revision of
  ``refs/main`` first, else the newest snapshot holding a ``config.json``.

Nothing here reaches the network. When the weights are not found, the error lists every place
looked at and the command that downloads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from mirprobe.errors import UserError

#: Weight files a checkpoint folder may hold, in order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def hub_cache_dirs() -> list[Path]:
    """Hugging Face hub cache folders, as huggingface_hub would pick them (no network)."""
    if os.environ.get("HF_HUB_CACHE"):
        return [Path(os.environ["HF_HUB_CACHE"]).expanduser()]
    if os.environ.get("HF_HOME"):
        return [Path(os.environ["HF_HOME"]).expanduser() / "hub"]
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return [base / "huggingface" / "hub"]


def models_dirs() -> list[Path]:
    """Folders named by ``$MIRPROBE_MODELS`` (``os.pathsep``-separated)."""
    value = os.environ.get("MIRPROBE_MODELS", "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p]


def _snapshot(repo_dir: Path, marker: str = "config.json") -> Path | None:
    """The snapshot folder of a hub-cache repo holding ``marker``: ``refs/main`` first, else the
    newest one."""
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if (candidate / marker).is_file():
            return candidate
    found = [p for p in snapshots.glob("*") if (p / marker).is_file()] if snapshots.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def candidate_folders(name: str) -> list[Path]:
    """Every folder a hub name may resolve to, in lookup order (existing or not)."""
    repo_dir = "models--" + name.replace("/", "--")
    short = name.split("/")[-1]
    out: list[Path] = []
    for root in models_dirs():
        out += [root / name, root / short, root / repo_dir]
    out += [root / repo_dir for root in hub_cache_dirs()]
    return out


def resolve_checkpoint(path_or_name: str) -> Path:
    """A checkpoint folder holding ``config.json``: the folder given, or a hub name found offline."""
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: no config.json in this folder; point at the checkpoint folder "
                            "(the one holding config.json and the weights)")
        return path
    if path.suffix or path_or_name.startswith((".", "/", "~")) or path_or_name.count("/") != 1:
        raise UserError(f"checkpoint folder {path} does not exist; give a folder holding config.json "
                        "or a hub name such as m-a-p/MERT-v1-95M")
    looked = candidate_folders(path_or_name)
    for folder in looked:
        if folder.name.startswith("models--"):
            snap = _snapshot(folder)
            if snap is not None:
                return snap
        elif (folder / "config.json").is_file():
            return folder
    places = "; ".join(str(p) for p in looked)
    raise UserError(
        f"checkpoint {path_or_name!r} not found offline (looked in: {places}); download it with "
        f"`hf download {path_or_name}` (or `huggingface-cli download {path_or_name}`), or put the "
        "folder under $MIRPROBE_MODELS, or pass the folder path")


def resolve_file(source: str, filename: str, how: str | None = None) -> Path:
    """A checkpoint file published without a ``config.json`` (MusicFM, Dasheng): ``source`` is the
    file itself, a folder holding ``filename``, or a hub name whose offline copy holds it.
    ``how`` says where to download it (default: ``hf download <source> <filename>``)."""
    path = Path(source).expanduser()
    how = how or f"`hf download {source} {filename}`"
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / filename).is_file():
            raise UserError(f"{path}: no {filename} in this folder; put it there (download it with "
                            f"{how}) or give the file's path")
        return path / filename
    if path.suffix or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise UserError(f"checkpoint {path} does not exist; give the file, its folder, or a hub name")
    looked = candidate_folders(source)
    for folder in looked:
        snap = _snapshot(folder, filename) if folder.name.startswith("models--") else folder
        if snap is not None and (snap / filename).is_file():
            return snap / filename
    places = "; ".join(str(p) for p in looked)
    raise UserError(
        f"{filename} of {source!r} not found offline (looked in: {places}); download it with "
        f"{how}, put it under $MIRPROBE_MODELS/{source.split('/')[-1]}/, or pass the file's path")


def weight_files(folder: Path) -> list[Path]:
    """The weight file(s) of a checkpoint folder (single file or sharded index)."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in INDEX_FILES:
        index = folder / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError) as e:
                raise UserError(f"{index}: not a valid weight index ({e}); re-download the checkpoint") from e
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise UserError(f"{folder}: weight shards missing: {', '.join(missing)}; "
                                "re-download the checkpoint")
            return [folder / s for s in shards]
    raise UserError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES)}); the download is incomplete — "
                    "fetch the weights with `hf download <repo>` or copy them into this folder")


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of a file. A hub-cache blob is named by its SHA-256, which is used without reading it."""
    real = path.resolve()
    if path.is_symlink() and _SHA256.match(real.name):
        return real.name
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def weights_digest(files: list[Path]) -> str:
    """One digest over the weight file(s) of a checkpoint."""
    if len(files) == 1:
        return file_digest(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}:{file_digest(f)}\n".encode())
    return h.hexdigest()


def require_weights(options: dict) -> None:
    """Fail now, before any long work, when a model config's checkpoint or its weights (or a
    HEAR ``model_file``) cannot be found; the same errors loading the model would raise."""
    source = options.get("checkpoint") or options.get("path_or_name")
    if source and options.get("kind") in ("mert", "hf"):
        weight_files(resolve_checkpoint(str(source)))
    model_file = options.get("model_file")
    if model_file and not Path(str(model_file)).expanduser().is_file():
        raise UserError(f"model_file {model_file} does not exist; give the path of the model's weights")

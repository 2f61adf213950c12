"""Run configuration: YAML files under ``configs/`` merged with command-line dotlist overrides.

A run config (``configs/runs/*.yaml``) names the models and tasks to evaluate; each name refers
to ``configs/models/<name>.yaml`` / ``configs/tasks/<name>.yaml`` or is given inline as a mapping.
Everything is validated up front: an unknown key or a bad value raises a one-line
:class:`~mirprobe.errors.UserError` naming the key and listing what is allowed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import mirprobe.configs
from mirprobe.errors import UserError
from mirprobe.probes import ProbeConfig
from mirprobe.workfolder import WorkFolder

if TYPE_CHECKING:  # torch is imported when a run resolves its device, not to read a config
    import torch

# configs/ ships as the package data of mirprobe.configs: found the same way from a wheel and a checkout
CONFIG_DIR = Path(mirprobe.configs.__file__).resolve().parent
DEFAULT_RUN = "quickstart"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: The default run's tasks: the scores suite's six, and emotion from the synthetic suite.
DEFAULT_TASKS = ("scores-key", "scores-genre", "scores-tagging", "scores-beat", "scores-pitch",
                 "scores-instrument", "synth-emotion")


@dataclass
class SyntheticConfig:
    size: str = "quick"
    seed: int = 0


@dataclass
class ScoresConfig:
    size: str = "quick"
    seed: int = 0


@dataclass
class ExtractConfig:
    batch_size: Any = "auto"  # windows per forward pass; auto: 16 on a GPU, 2 on CPU
    num_workers: int = 0  # decode/resample worker processes
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU; or float32|bfloat16|float16
    chunk_items: int = 64  # items per resumable chunk of a cache entry
    batch_seconds: Any = None  # audio seconds per forward pass (overrides batch_size); null: off
    compile: bool = False  # torch.compile the network (transformers-based models)


@dataclass
class LaunchConfig:
    devices: Any = 1  # processes per node (one per GPU); auto: every GPU, or what torchrun/srun started
    num_nodes: Any = 1  # nodes (under torchrun/srun: what they started)


@dataclass
class RobustnessConfig:
    deformations: list[Any] = field(default_factory=list)  # empty: no robustness (mirprobe.deform)


@dataclass
class RunConfig:
    name: str = DEFAULT_RUN
    work_dir: Any = None  # null: $MIRPROBE_HOME, else ~/.cache/mirprobe
    data_root: Any = None  # folder that relative task `data` folders are resolved against
    audio_root: Any = None  # folder that relative audio paths are resolved against
    output: Any = None  # where tables go; null: <work_dir>/runs/<name>
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    models: list[Any] = field(default_factory=lambda: ["handcrafted", "random", "musicnn-mtt"])
    tasks: list[Any] = field(default_factory=lambda: list(DEFAULT_TASKS))
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    scores: ScoresConfig = field(default_factory=ScoresConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)


SECTIONS: dict[str, type] = {"synthetic": SyntheticConfig, "scores": ScoresConfig,
                             "extract": ExtractConfig,
                             "probe": ProbeConfig, "launch": LaunchConfig,
                             "robustness": RobustnessConfig}


def find_config(name_or_path: str, kind: str = "runs") -> Path:
    """A config file by path, or by name under ``configs/<kind>/``."""
    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    candidate = CONFIG_DIR / kind / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = available(kind)
    hint = _suggest(name_or_path, names)
    raise UserError(f"no {kind[:-1]} config {name_or_path!r}{hint}; "
                    f"give a YAML path or one of: {', '.join(names) or '(none)'}")


def available(kind: str) -> list[str]:
    folder = CONFIG_DIR / kind
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _read_yaml(path: Path) -> DictConfig:
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError and friends: report the file, not a traceback
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from e
    if not isinstance(cfg, DictConfig):
        raise UserError(f"{path}: expected a mapping of keys at the top level")
    return cfg


def load_run_config(name_or_path: str | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Schema defaults ← run YAML ← ``key=value`` overrides, validated."""
    schema = OmegaConf.structured(RunConfig)
    layers = [schema, _read_yaml(find_config(name_or_path or DEFAULT_RUN))]
    try:
        layers.append(OmegaConf.from_dotlist(list(overrides or [])))
    except OmegaConfBaseException as e:
        raise UserError(f"bad override in {overrides}: {e.msg}; write key=value, e.g. probe.lr=[1e-3]") from e
    _check_keys(layers[1:], RunConfig)
    try:
        cfg = OmegaConf.merge(*layers)
    except OmegaConfBaseException as e:
        raise UserError(f"config key {e.full_key!r}: {e.msg.splitlines()[0]}") from e
    validate(cfg)
    return cfg


def _check_keys(layers: list[DictConfig], schema: type, prefix: str = "") -> None:
    """Reject unknown keys with the list of allowed ones (omegaconf's own message lacks it)."""
    allowed = {f.name: f for f in fields(schema)}
    for layer in layers:
        for key in layer:
            if key not in allowed:
                hint = _suggest(str(key), list(allowed))
                raise UserError(f"unknown config key '{prefix}{key}'{hint}; allowed: {', '.join(allowed)}")
            sub_type = SECTIONS.get(key)
            if sub_type is not None and isinstance(layer[key], DictConfig):
                _check_keys([layer[key]], sub_type, prefix=f"{prefix}{key}.")


def _one_of(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise UserError(f"config key {key!r}: {value!r} is not allowed; use one of: {', '.join(allowed)}")


def validate(cfg: DictConfig) -> None:
    from mirprobe.deform import parse_all
    from mirprobe.scores.suite import SIZES as SCORES_SIZES
    from mirprobe.synth import SIZES

    _one_of("device", cfg.device, DEVICES)
    _one_of("extract.dtype", cfg.extract.dtype, DTYPES)
    _one_of("synthetic.size", cfg.synthetic.size, sorted(SIZES))
    _one_of("scores.size", cfg.scores.size, sorted(SCORES_SIZES))
    probe_config(cfg)
    parse_all(OmegaConf.to_container(cfg.robustness.deformations, resolve=True))
    size = cfg.extract.batch_size
    if size != "auto" and not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        raise UserError(f"config key 'extract.batch_size' must be 'auto' or a whole number of at "
                        f"least 1 (got {size!r})")
    if cfg.extract.batch_seconds is not None and not float(cfg.extract.batch_seconds) > 0:
        raise UserError("config key 'extract.batch_seconds' must be positive (or null to use batch_size)")
    for key in ("models", "tasks"):
        if not isinstance(cfg[key], ListConfig) or len(cfg[key]) == 0:
            raise UserError(f"config key {key!r} must be a non-empty list, e.g. {key}=[a,b]")


def work_folder(cfg: DictConfig) -> WorkFolder:
    """The folder holding caches and records (never inside the installed package):
    ``work_dir``, else ``$MIRPROBE_HOME``, else ``~/.cache/mirprobe``."""
    return WorkFolder.at(str(cfg.work_dir) if cfg.work_dir else None)


def work_dir(cfg: DictConfig) -> Path:
    """The root of :func:`work_folder`."""
    return work_folder(cfg).root


def probe_config(cfg: DictConfig) -> ProbeConfig:
    """The ``probe`` section as a :class:`ProbeConfig` (constructing it validates it)."""
    try:
        return ProbeConfig(**OmegaConf.to_container(cfg.probe, resolve=True))  # type: ignore[arg-type]
    except TypeError as e:
        raise UserError(f"config key 'probe': {e}") from e


@dataclass(frozen=True)
class Settings:
    """What a run's config means on this machine, decided once when the run starts; every
    stage takes these values rather than the raw config."""

    device: torch.device
    extract_precision: str  # what extract.dtype means on the device (auto resolved)
    probe_precision: str  # the precision probes train in (float32, with TF32 where allowed)
    probe: ProbeConfig


def resolve_device(name: str) -> torch.device:
    """``device``: auto is CUDA when a GPU is visible, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use device=auto or device=cpu")
    return torch.device(name)


def settings(cfg: DictConfig, device: torch.device | None = None) -> Settings:
    """The run's :class:`Settings` (``device``: a launcher's device for this process, else the
    config's)."""
    from mirprobe.extraction import precision

    device = device or resolve_device(cfg.device)
    return Settings(device=device, extract_precision=precision(device, cfg.extract.dtype),
                    probe_precision=probe_precision(device), probe=probe_config(cfg))


def probe_precision(device: Any) -> str:
    """The precision probes train in on ``device`` (float32; TF32 matmuls when torch allows them)."""
    import torch

    matmul = torch.get_float32_matmul_precision()
    tf32 = str(device).startswith("cuda") and (matmul != "highest" or torch.backends.cuda.matmul.allow_tf32)
    return "float32 (tf32 matmuls)" if tf32 else "float32"


def named_section(entry: Any, kind: str) -> tuple[str, dict[str, Any]]:
    """A ``models``/``tasks`` list entry → (name, options): a name of ``configs/<kind>/`` or a mapping."""
    if isinstance(entry, str):
        path = find_config(entry, kind)
        return entry, OmegaConf.to_container(_read_yaml(path), resolve=True)  # type: ignore[return-value]
    if isinstance(entry, DictConfig):
        entry = OmegaConf.to_container(entry, resolve=True)
    if isinstance(entry, dict):
        if "name" not in entry:
            raise UserError(f"an inline entry of {kind!r} needs a 'name' key: {entry}")
        options = dict(entry)
        name = str(options.pop("name"))
        if "base" in options:  # inline entry extending a named one
            _, base = named_section(str(options.pop("base")), kind)
            options = {**base, **options}
        return name, options
    raise UserError(f"entries of {kind!r} are names or mappings, got {entry!r}")

"""The run config's ``models`` and ``tasks`` lists, resolved into what each job needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from mirprobe import config as C
from mirprobe.admission import task_options
from mirprobe.errors import UserError
from mirprobe.models import model_options
from mirprobe.plugins import get_task
from mirprobe.tasks.base import Task

#: Keys of a task entry that say where its data is and which plugin reads it; the rest are the
#: plugin's options.


@dataclass
class TaskSpec:
    """One entry of the run's ``tasks`` list, resolved."""

    name: str
    plugin: str
    data: str
    jsonl: str
    options: dict[str, Any]
    audio_root: str | None = None

    def make(self) -> Task:
        return get_task(self.plugin, **self.options)


def task_specs(cfg: DictConfig) -> list[TaskSpec]:
    specs = []
    for entry in cfg.tasks:
        name, opts = C.named_section(entry, "tasks")
        plugin = opts.get("plugin")
        if not plugin:
            raise UserError(f"task {name!r} has no 'plugin' key; add e.g. plugin: multiclass")
        for key in ("data", "jsonl"):
            if not opts.get(key):
                raise UserError(f"task {name!r} has no {key!r} key; see configs/tasks/*.yaml for examples")
        options = task_options(opts)
        spec = TaskSpec(name, str(plugin), str(opts["data"]), str(opts["jsonl"]), options,
                        opts.get("audio_root"))
        spec.make()  # bad options fail here, before any long work
        specs.append(spec)
    return specs


def model_specs(cfg: DictConfig) -> list[tuple[str, dict[str, Any]]]:
    """``models`` entries → (name, options): config names, inline mappings, folders or hub names."""
    named = C.available("models")
    return [(m, model_options(m)) if isinstance(m, str) and m not in named
            else C.named_section(m, "models") for m in cfg.models]

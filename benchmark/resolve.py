"""Dataset resolution for a run: a task entry's ``data`` → its folder → its JSONL splits.

``data: synthetic`` generates (once) the built-in synthetic suite of the run's ``synthetic`` size
and seed under the work folder, ``data: scores`` the scores suite of the run's ``scores`` size
and seed; a relative folder is resolved against ``data_root``. Each dataset
is read once per run and shared by every model that probes it.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mirprobe.admission import data_folder
from mirprobe.data import Dataset, load_dataset
from mirprobe.scores.suite import generate_scores_suite
from mirprobe.specs import TaskSpec
from mirprobe.synth import generate_suite
from mirprobe.timing import Timer
from mirprobe.workfolder import WorkFolder

#: A built-in suite's ``data`` name → its writer and the timer stage it runs in (each has a
#: config section of the same name with ``size`` and ``seed``).
BUILDERS = {"synthetic": (generate_suite, "synthesize"),
            "scores": (generate_scores_suite, "scores suite")}


class DatasetResolver:
    """The datasets of one run's task entries, read once each."""

    def __init__(self, cfg: DictConfig, work: WorkFolder, timer: Timer | None = None,
                 progress: bool = False) -> None:
        self.cfg, self.work = cfg, work
        self.timer = timer or Timer()
        self.progress = progress
        self._datasets: dict[tuple[str, str, str | None], Dataset] = {}

    def folder(self, spec: TaskSpec) -> Path:
        """The task's dataset folder (a built-in suite is generated on first use)."""
        if spec.data in BUILDERS:
            build, stage = BUILDERS[spec.data]
            section = self.cfg[spec.data]
            size, seed = section.size, int(section.seed)
            with self.timer.stage(stage):
                return build(self.work.suite(spec.data, size, seed), size=size, seed=seed,
                             progress=self.progress)
        return data_folder(spec.name, spec.data, self.cfg.data_root)

    def dataset(self, spec: TaskSpec) -> Dataset:
        root = spec.audio_root or self.cfg.audio_root
        key = (spec.data, spec.jsonl, root)
        if key not in self._datasets:
            folder = self.folder(spec)
            audio_root = Path(str(root)).expanduser() if root else None
            self._datasets[key] = load_dataset(folder, spec.jsonl, audio_root)
        return self._datasets[key]

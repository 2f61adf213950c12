"""A third-party task plugin — a label encoder plus metric declarations, nothing else of the
probe machinery — registered through an entry point and run end to end with the CLI.

The plugin lives in a temporary folder with a ``*.dist-info`` (``METADATA`` and
``entry_points.txt``, group ``mirprobe.tasks``), which ``importlib.metadata`` finds on
``PYTHONPATH`` exactly as it finds an installed package. It reads the synthetic suite's key
files and encodes each key label as its mode (major / minor): its own label encoder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score

from mirprobe.record import Declaration, Predictions, Record

PLUGIN = '''
import numpy as np
from sklearn.metrics import accuracy_score

from mirprobe.tasks.base import Metric, Task
from mirprobe.tasks.metrics import head_accuracy

MODES = ("major", "minor")


class ModeTask(Task):
    """Major or minor, from a key label such as "Eb minor"."""

    name = "keymode"
    kind = "multiclass"
    metrics = (Metric("accuracy", resample="mean", device=head_accuracy),
               Metric("error_rate", higher_is_better=False, scale=1, resample="mean"))

    @property
    def output_dim(self):
        return len(MODES)

    def encode(self, label):
        mode = str(label).split()[-1].lower() if isinstance(label, str) else None
        if mode not in MODES:
            raise ValueError(f"label {label!r} is not a key such as 'Eb minor'")
        return np.int64(MODES.index(mode))

    def evaluate(self, predictions, labels):
        truth = [int(self.encode(label)) for label in labels]
        accuracy = accuracy_score(truth, np.asarray(predictions).argmax(1))
        return {"accuracy": float(accuracy), "error_rate": 1.0 - float(accuracy)}

    def chance(self, train_labels, test_labels):
        majority = np.bincount([int(self.encode(x)) for x in train_labels], minlength=2).argmax()
        return self.evaluate(np.eye(2)[[majority] * len(test_labels)], test_labels)
'''

ENTRY_POINTS = "[mirprobe.tasks]\nkeymode = mirprobe_keymode:ModeTask\n"
METADATA = "Metadata-Version: 2.1\nName: mirprobe-keymode\nVersion: 0.1\n"
TASK = "{name: mode, plugin: keymode, data: synthetic, jsonl: Key}"
TINY = ["synthetic.size=tiny", "progress=false", "device=cpu", "models=[handcrafted]",
        "probe.heads=[linear]", "probe.lr=[1e-2]", "probe.max_epochs=4", "probe.patience=2",
        "probe.weighted_sum=false"]


def _install_plugin(site: Path) -> None:
    (site / "mirprobe_keymode.py").parent.mkdir(parents=True, exist_ok=True)
    (site / "mirprobe_keymode.py").write_text(PLUGIN)
    info = site / "mirprobe_keymode-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(METADATA)
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def _cli(site: Path, work: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "MIRPROBE_HOME": str(work)}
    proc = subprocess.run([sys.executable, "-m", "mirprobe.cli", *args], cwd=site, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_a_plugin_task_runs_end_to_end_with_intervals(tmp_path: Path) -> None:
    site, work = tmp_path / "site", tmp_path / "work"
    _install_plugin(site)
    _cli(site, work, "run", "quickstart", *TINY, f"tasks=[{TASK}]")
    [path] = (work / "records").glob("*.json")
    rec = Record.from_json(path.read_text())
    assert rec.task.declarations["error_rate"] == Declaration(
        higher_is_better=False, scale=1.0, resample="mean")

    # The reported test score is sklearn's accuracy of the saved predictions.
    preds = Predictions.read(path.with_suffix(".npz"))
    [chosen] = preds.seeds(rec.best.layer)
    truth = [["major", "minor"].index(x.split()[-1]) for x in preds.labels]
    accuracy = accuracy_score(truth, np.asarray(chosen).argmax(1))
    assert rec.best.test["accuracy"] == accuracy

    board = _cli(site, work, "leaderboard", "--work-dir", str(work), "--resamples", "200")
    cell = re.search(r"(\d+\.\d) \[(\d+\.\d), (\d+\.\d)\] @", board)
    assert cell, board
    value, low, high = map(float, cell.groups())
    assert value == round(accuracy * 100, 1) and low <= value <= high and low < high
    assert "200 resamples" in board

    # The lower-is-better metric declared "as is": no ×100, 3 significant digits.
    errors = _cli(site, work, "leaderboard", "--work-dir", str(work), "--resamples", "200",
                  "--metric", "error_rate")
    cell = re.search(r"handcrafted\s+(\S+) \[(\S+), (\S+)\]", errors)
    assert cell and "mode (error_rate)" in errors, errors
    assert float(cell[1]) == float(f"{1 - accuracy:.3g}")
    assert float(cell[2]) <= float(cell[1]) <= float(cell[3]) <= 1

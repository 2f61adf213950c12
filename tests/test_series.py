"""``mirprobe series``: checkpoints whose quality rises with the step, in the real MERT layout.

The checkpoints are tiny MERT models (``tests.fixtures_models``) that share every weight except
the first convolution, interpolated between two fixed filters (``first_conv`` of the example
``examples/series/make_series.py``, whose toy task is used too): a high-pass filter (``t = 0``)
that sees only the high-frequency noise of the task's audio, and a low-pass filter (``t = 1``)
that sees the tone whose pitch is the label. The network's output thus carries the label's
signal against the noise in proportion to ``t``, and the probe score must rise with it: near
chance at ``t = 0``, near perfect at ``t = 1`` (on three data seeds the selected layer scored
21–42, 58–75 and 96–100 % accuracy at t = 0, 0.5 and 1).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from mirprobe.cli import main
from mirprobe.errors import UserError
from mirprobe.series.checkpoints import discover, step_of
from tests.fixtures_models import make_state_dict, tiny_config, write_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CONV0 = "feature_extractor.conv_layers.0.conv.weight"


def _example() -> ModuleType:
    """``examples/series/make_series.py``: the toy task and the first-convolution filters."""
    spec = importlib.util.spec_from_file_location("make_series", ROOT / "examples" / "series" / "make_series.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()
write_tone_task = EXAMPLE.write_tone_task


def write_series_checkpoint(folder: Path, t: float) -> Path:
    """A tiny MERT checkpoint (MERT's own layout) whose first convolution is
    ``(1 - t) · high-pass + t · low-pass``."""
    state = make_state_dict(tiny_config("postln24"), seed=0)
    state[CONV0] = EXAMPLE.first_conv(t, channels=16, kernel=10)
    return write_checkpoint(folder, "postln24", state=state)


def _task_arg(task: dict) -> str:
    return "tasks=[{" + ", ".join(f"{k}: {v}" for k, v in task.items()) + "}]"


def _args(work: Path, task: dict) -> list[str]:
    return ["quickstart", _task_arg(task), "probe.heads=[linear]", "probe.lr=[1e-2]",
            "probe.max_epochs=30", "progress=false", "device=cpu", f"work_dir={work}"]


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return write_tone_task(tmp_path_factory.mktemp("tone"))


# --------------------------------------------------------------------------- discovery


def test_step_names() -> None:
    named = {"checkpoint-12000": 12000, "step_12000": 12000, "12000": 12000, "ckpt12000": 12000,
             "epoch=3-step=12000": 12000, "global_step12000": 12000, "step-7": 7,
             "logs": None, "runs": None, "model_v2_final": None, "best": None}
    assert {name: step_of(name) for name in named} == named


def test_discovery_and_listing_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "logs").mkdir()
    with pytest.raises(UserError, match=f"{tmp_path / 'empty'}: no checkpoint sub-folder"):
        discover(tmp_path / "empty")
    for name in ("checkpoint-100", "step_100", "checkpoint-50", "notes"):
        (tmp_path / "dup" / name).mkdir(parents=True)
    with pytest.raises(UserError, match=r"step_100: claims step 100, as does .*checkpoint-100"):
        discover(tmp_path / "dup")
    with pytest.raises(UserError, match="no such folder"):
        discover(tmp_path / "missing")

    listing = tmp_path / "run.yaml"
    listing.write_text("checkpoints:\n  - {step: 20, path: b, layers: [0, 1]}\n  - {step: 10, path: /x/a}\n")
    name, found = discover(listing)
    assert name == "run" and [(c.step, c.path) for c in found] == [(10, Path("/x/a")), (20, tmp_path / "b")]
    assert found[1].model_entry("run") == {"name": "run@step=20", "kind": "mert",
                                           "checkpoint": str(tmp_path / "b"), "layers": [0, 1]}
    listing.write_text("name: other\ncheckpoints: {5: a, 6: b}\n")
    assert discover(listing)[0] == "other" and [c.step for c in discover(listing)[1]] == [5, 6]
    listing.write_text("checkpoints:\n  - {step: 10, path: a}\n  - {step: 10, path: b}\n")
    with pytest.raises(UserError, match=f"{listing}: step 10 is listed twice"):
        discover(listing)
    listing.write_text("checkpoints:\n  - {path: a}\n")
    with pytest.raises(UserError, match="needs 'step' and 'path'"):
        discover(listing)


def test_default_protocol_is_fast_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from mirprobe.series import runner

    cfg, protocol = runner.series_config(None, [])
    if "fast" not in runner.C.available("runs"):
        assert list(cfg.probe.heads) == ["linear"] and protocol.startswith("quickstart probe.heads=[linear]")
    monkeypatch.setattr(runner, "FAST_CONFIG", "marble")  # stands for any installed `fast` config
    cfg, protocol = runner.series_config(None, ["probe.lr=[1e-3]"])
    assert protocol == "marble probe.lr=[1e-3]" and list(cfg.probe.lr) == [1e-3]
    with pytest.raises(UserError, match="models=... cannot be set for a series"):
        runner.series_config(None, ["models=[random]"])


# --------------------------------------------------------------------------- end to end


def _capture_figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The data of each figure the series plots draw, by file stem."""
    from mirprobe.report import series_plots

    drawn: dict[str, object] = {}
    save = series_plots.save_figure

    def keep(fig, out_dir, stem):  # noqa: ANN001, ANN202
        ax = fig.axes[0]
        drawn[stem] = ax.images[0].get_array().filled(np.nan) if ax.images else ax.lines[0].get_xydata()
        return save(fig, out_dir, stem)

    monkeypatch.setattr(series_plots, "save_figure", keep)
    return drawn


def feature_entries(work: Path) -> set[str]:
    """The work folder's feature entries (their lock files aside)."""
    return {p.name for p in (work / "features").iterdir() if p.suffix != ".lock"}


def test_series_trend_failed_checkpoint_rerun_compare_publish(
        tmp_path: Path, tone: dict, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpts, work = tmp_path / "run-a", tmp_path / "work"
    for step, t in ((1000, 0.0), (2000, 0.5), (4000, 1.0)):
        write_series_checkpoint(ckpts / f"checkpoint-{step}", t)
    broken = write_series_checkpoint(ckpts / "checkpoint-500", 1.0)
    (broken / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    (write_series_checkpoint(ckpts / "checkpoint-600", 1.0) / "config.json").unlink()
    (ckpts / "logs").mkdir()
    (ckpts / "trainer_state.json").write_text("{}")
    drawn = _capture_figures(monkeypatch)

    assert main(["series", str(ckpts), *_args(work, tone)]) == 1  # one checkpoint failed
    out = capsys.readouterr().out
    assert f"step 500: {broken / 'pytorch_model.bin'}: cannot read the weights" in out
    assert f"step 600: {ckpts / 'checkpoint-600'}: no config.json in this folder" in out
    table = pd.read_csv(work / "series" / "run-a" / "series.csv")
    assert table["step"].tolist() == [1000, 2000, 4000]
    assert table["model"].tolist() == [f"run-a@step={s}" for s in (1000, 2000, 4000)]
    score = dict(zip(table["step"], table["score"], strict=True))
    assert score[1000] <= 50 < score[2000] < score[4000] and score[4000] >= 85, score
    assert (table["ci_low"] <= table["score"]).all() and (table["score"] <= table["ci_high"]).all()
    assert out.index("\n1000 ") < out.index("\n2000 ") < out.index("\n4000 ")

    layers = pd.read_csv(work / "series" / "run-a" / "series_layers.csv")
    records = {r["model"]: r for r in map(json.loads, map(Path.read_text, (work / "records").glob("*.json")))}
    for _, row in layers.iterrows():  # the step × layer table holds each record's own scores
        entry = next(e for e in records[f"run-a@step={row['step']}"]["per_layer"] if e["layer"] == row["layer"])
        assert row["test"] == pytest.approx(round(entry["test"]["accuracy"] * 100, 1))
    assert layers.groupby("step")["selected"].sum().tolist() == [1, 1, 1]

    curve = drawn["series_run-a_tone"]  # the plot: steps in order, the table's scores
    assert curve[:, 0].tolist() == [1000, 2000, 4000]
    np.testing.assert_allclose(curve[:, 1], table["score"], atol=0.05)
    heat = drawn["series_run-a_tone_layers"]  # layers × steps, columns in step order
    grid = layers.pivot(index="index", columns="step", values="test")
    np.testing.assert_allclose(heat, grid.to_numpy(), atol=0.05)

    manifest = json.loads((work / "series" / "run-a" / "series.json").read_text())
    assert [(c["step"], c["status"]) for c in manifest["checkpoints"]] == [
        (500, "failed"), (600, "failed"), (1000, "done"), (2000, "done"), (4000, "done")]

    # a new checkpoint appears: a re-run trains only its jobs and reuses every other record
    stamps = {p: p.stat().st_mtime_ns for p in (work / "records").glob("*.json")}
    entries = feature_entries(work)
    write_series_checkpoint(ckpts / "checkpoint-3000", 0.75)
    assert main(["series", str(ckpts), *_args(work, tone)]) == 1
    out = capsys.readouterr().out
    assert "1 checkpoint × task job(s) trained, 3 reused" in out
    new = set((work / "records").glob("*.json")) - set(stamps)
    assert [json.loads(p.read_text())["model"] for p in new] == ["run-a@step=3000"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(feature_entries(work) - entries) == 1
    table = pd.read_csv(work / "series" / "run-a" / "series.csv")
    assert table["step"].tolist() == [1000, 2000, 3000, 4000]

    # is step 4000 really better than step 1000? (paired bootstrap on the same test tracks)
    assert main(["compare", "run-a@step=4000", "run-a@step=1000", "--work-dir", str(work),
                 "--resamples", "500"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert float(row[-2]) > 0.99, row  # P(A better)

    pub = tmp_path / "pub"
    assert main(["publish", "--work-dir", str(work), "--out", str(pub), "--resamples", "200"]) == 0
    page = (pub / "index.html").read_text()
    assert "Series: run-a" in page and "checkpoint-500" in page
    board = pd.read_csv(pub / "leaderboard.csv")
    assert board["model"].tolist() == ["run-a@step=4000"], "the leaderboard shows the latest step"
    assert pd.read_csv(pub / "series" / "run-a" / "series.csv")["step"].tolist() == [1000, 2000, 3000, 4000]
    assert (pub / "plots" / "series_run-a_tone.png").stat().st_size > 1000


def test_watch_waits_for_checkpoints_and_picks_up_new_ones(
        tmp_path: Path, tone: dict, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from mirprobe.series import runner

    ckpts, work = tmp_path / "run-b", tmp_path / "work"
    ckpts.mkdir()
    polls = []

    def sleep(seconds: float) -> None:  # the training job saves a checkpoint, then the user stops
        polls.append(seconds)
        if len(polls) == 1:
            write_series_checkpoint(ckpts / "step_10", 1.0)
        elif len(polls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.time, "sleep", sleep)
    assert main(["series", str(ckpts), "--watch", "5", "--no-ci", *_args(work, tone)]) == 130
    out = capsys.readouterr().out
    assert out.count("no checkpoint sub-folder") == 1 and "waiting for checkpoints" in out
    assert out.count("1 checkpoint × task job(s) trained, 0 reused") == 1, "the third poll found nothing new"
    assert polls == [5.0, 5.0, 5.0]
    manifest = json.loads((work / "series" / "run-b" / "series.json").read_text())
    assert [(c["step"], c["status"]) for c in manifest["checkpoints"]] == [(10, "done")]


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "none").mkdir()
    for args, message in (
            ([str(tmp_path / "none")], f"{tmp_path / 'none'}: no checkpoint sub-folder"),
            ([str(tmp_path / "none"), "models=[random]"], "models=... cannot be set"),
            ([str(tmp_path / "none"), "--watch", "0"], "--watch 0"),
            ([str(tmp_path / "none"), "--name", "a/b"], "series name 'a/b'")):
        assert main(["series", *args, f"work_dir={tmp_path / 'w'}"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_two_processes_share_the_checkpoint_jobs(tmp_path: Path) -> None:
    """``launch.devices=2`` on CPU: rank 0 plans, both ranks run the jobs, rank 0 reports."""
    ckpts, work = tmp_path / "run-c", tmp_path / "work"
    small = write_tone_task(tmp_path / "small", per_class=(3, 2, 3))
    for step, t in ((1, 0.0), (2, 1.0)):
        write_series_checkpoint(ckpts / str(step), t)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mirprobe.cli", "series", str(ckpts),
                           *_args(work, small), "launch.devices=2", "--no-ci"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rank 1 of 2" in proc.stderr
    assert proc.stdout.count("Series run-c: score by training step") == 1, "rank 0 alone reports"
    models = sorted(json.loads(p.read_text())["model"] for p in (work / "records").glob("*.json"))
    assert models == ["run-c@step=1", "run-c@step=2"]
    assert pd.read_csv(work / "series" / "run-c" / "series.csv")["step"].tolist() == [1, 2]

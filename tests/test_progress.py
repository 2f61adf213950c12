"""Progress off a terminal: occasional plain lines with the bar's information, never `\\r` updates."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from mirprobe.progress import EVERY_S, MIN_GAP_S, PlainProgress, progress_bar

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_ten_percent_steps_rate_limited_and_a_final_line() -> None:
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(total=200, desc="extract m × t", unit="track", stream=out, clock=clock)
    printed_at = []
    for i in range(1, 201):
        clock.now += 1.5  # 300 s in all: a 10% step every 30 s
        before = out.getvalue().count("\n")
        bar.update(1)
        if out.getvalue().count("\n") > before:
            printed_at.append(i)
    bar.close()
    bar.close()  # closing twice prints once
    lines = out.getvalue().splitlines()
    assert printed_at == [20 * k for k in range(1, 10)]  # reference: every 20 tracks, then close
    assert len(lines) == len(printed_at) + 1 and "\r" not in out.getvalue()
    assert lines[0] == "extract m × t: 20/200 track (10%), 30 s, 0.667 track/s, ~270 s left"
    assert lines[-1] == "extract m × t: 200/200 track (100%) in 300.0 s, 0.667 track/s"
    out, clock = io.StringIO(), Clock()
    quick = PlainProgress(total=200, desc="x", stream=out, clock=clock)
    for _ in range(200):  # 10% steps every 15 s: a line every other step
        clock.now += 0.75
        quick.update(1)
    quick.close()
    assert [line.split(" ")[1] for line in out.getvalue().splitlines()] == \
        ["40/200", "80/200", "120/200", "160/200", "200/200"]
    assert out.getvalue().splitlines()[-1].endswith("(100%) in 150.0 s, 1.33 it/s")


def test_fast_stages_print_once_and_slow_ones_every_five_minutes() -> None:
    out, clock = io.StringIO(), Clock()
    fast = PlainProgress(range(50), desc="probe genre", unit="epoch", stream=out, clock=clock)
    for k in fast:
        clock.now += 0.01
        fast.set_postfix(heads=f"{12 - k // 10}/12")
        if k == 30:  # early stopping leaves the loop
            break
    fast.close()
    assert out.getvalue().splitlines() == ["probe genre: 30/50 epoch (60%) in 0.3 s, 96.8 epoch/s, heads=9/12"]
    out, clock = io.StringIO(), Clock()
    slow = PlainProgress(total=1000, desc="x", stream=out, clock=clock)
    for _ in range(90):  # under 10% in 90 × 31 s: a line for each 5 min without a 10% step
        clock.now += 31
        slow.update(1)
    assert len(out.getvalue().splitlines()) == 90 * 31 // 310 and EVERY_S == 300 and MIN_GAP_S == 30


def test_disabled_progress_prints_nothing() -> None:
    out = io.StringIO()
    bar = progress_bar(total=10, desc="x", enabled=False, stream=out)
    for _ in range(10):
        bar.update(1)
    bar.close()
    assert out.getvalue() == ""


def test_quickstart_log_has_few_progress_lines_and_every_stage(tmp_path: Path) -> None:
    """The tiny quickstart with stderr in a file: every stage's progress, under 50 lines."""
    log = tmp_path / "stderr.log"
    args = ["synthetic.size=tiny", "tasks=[key,genre,tagging,emotion,beat]", "probe.heads=[linear]", "probe.lr=[1e-3,1e-2]",
            "probe.max_epochs=4", "probe.patience=2"]
    with open(log, "w") as err:
        subprocess.run([sys.executable, "-m", "mirprobe.cli", "run", "quickstart", *args], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "MIRPROBE_HOME": str(tmp_path / "w")},
                       stdout=subprocess.DEVNULL, stderr=err, check=True, timeout=600)
    text = log.read_text()
    assert "\r" not in text
    progress = [line for line in text.splitlines()
                if re.match(r"^(synthesising|extract|probe) .*: \d+(/\d+)? \w+", line)]
    assert len(progress) < 50, text
    assert any(line.startswith("synthesising tiny suite: 48/48 track (100%)") for line in progress)
    for model in ("handcrafted", "random"):
        for task in ("key", "beat"):  # clip and frame entries (genre, tagging, emotion share key's)
            assert any(line.startswith(f"extract {model} × {task}: ") and "(100%)" in line
                       for line in progress), (model, task, text)
    for task in ("key", "genre", "tagging", "emotion", "beat"):
        assert sum(line.startswith(f"probe {task}: ") for line in progress) >= 2, (task, text)

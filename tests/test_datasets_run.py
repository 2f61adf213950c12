"""prepare → verify → run on every raw layout, on MARBLE's own layout, and on bad data.

Runs use ``configs/runs/marble.yaml`` with the real task configs, the weightless
``handcrafted`` model and a one-head probe grid, so each takes a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mirprobe.config import load_run_config
from mirprobe.datasets import prepare
from mirprobe.datasets.verify import verify
from mirprobe.errors import UserError
from mirprobe.pipeline import run
from tests.test_datasets_prepare import (
    make_emomusic,
    make_giantsteps,
    make_gtzan,
    make_gtzan_rhythm,
    make_mtt,
    write_audio,
    write_lists,
)

TINY = ["models=[handcrafted]", "progress=false", "device=cpu", "extract.num_workers=0",
        "probe.heads=[linear]", "probe.lr=[1e-2]", "probe.max_epochs=3", "probe.patience=2",
        "probe.weighted_sum=false"]


def run_marble(task: str, data_root: Path, work: Path, *extra: str) -> dict:
    cfg = load_run_config("marble", [*TINY, f"tasks=[{task}]", f"data_root={data_root}",
                                     f"work_dir={work}", *extra])
    [record] = run(cfg)
    return record


def run_cli(task: str, data_root: Path, work: Path, *extra: str) -> dict:
    """``mirprobe run marble`` from the command line (extraction, probes, tables); its record."""
    from mirprobe.cli import main
    from mirprobe.record import Record

    assert main(["run", "marble", *TINY, f"tasks=[{task}]", f"data_root={data_root}",
                 f"work_dir={work}", *extra]) == 0
    assert (work / "runs" / "marble" / "leaderboard.md").is_file()
    [record] = [Record.read(p) for p in (work / "records").glob("*.json")]
    return record


def check_record(record: dict, counts: dict[str, int]) -> None:
    assert record.counts == counts
    assert record.excluded == {"train": [], "val": [], "test": []}
    best = record.best
    assert best and all(np.isfinite(v) for v in best.test.values() if isinstance(v, float))


def prepared_ok(result) -> None:
    [report] = verify(str(result.files["train"]))
    assert report.ok, report.render()


def test_gtzan_genre(tmp_path: Path) -> None:
    labels = make_gtzan(tmp_path / "raw", per_genre=3, seconds=1.0, genres=("blues", "metal", "pop"))
    lists = write_lists(tmp_path / "lists", {s: ("train", "val", "test")[int(s[-1])] for s in labels})
    result = prepare("gtzan", tmp_path / "raw", tmp_path / "out", splits=lists)
    prepared_ok(result)
    record = run_marble("gtzan-genre", tmp_path / "out", tmp_path / "work")
    check_record(record, {"train": 3, "val": 3, "test": 3})
    assert record.selection_metric == "accuracy"


@pytest.mark.parametrize("decoder", ["dbn", "dp"])
def test_gtzan_beat(tmp_path: Path, decoder: str) -> None:
    """12 s tracks: one 10 s clip for MARBLE's clip metric (the 2 s remainder is dropped)."""
    stems = list(make_gtzan(tmp_path / "raw", per_genre=2, seconds=12.0,
                            genres=("blues", "rock", "pop")))
    make_gtzan_rhythm(tmp_path / "jams", stems, 12.0)
    result = prepare("gtzan-rhythm", tmp_path / "raw", tmp_path / "out", annotations=tmp_path / "jams",
                     splits=write_lists(tmp_path / "lists", {s: ("train", "val", "test")[i % 3]
                                                             for i, s in enumerate(stems)}))
    prepared_ok(result)
    task = f"{{name: gtzan-beat, base: gtzan-beat, decoder: {decoder}, downbeat_decoder: {decoder}}}"
    record = run_marble(task, tmp_path / "out", tmp_path / "work")
    check_record(record, {"train": 2, "val": 2, "test": 2})
    assert record.selection_metric == "beat_f_measure"
    assert record.task.options["decoder"] == decoder and record.task.build().decoder == decoder
    assert set(record.best.test) >= {"beat_f_measure", "beat_f_measure_marble",
                                        "beat_f_measure_pooled", "downbeat_f_measure",
                                        "tempo_mae", "tempo_acc1", "tempo_acc2"}


def test_mtt_tagging(tmp_path: Path) -> None:
    make_mtt(tmp_path / "raw", seconds=1.0)
    result = prepare("mtt", tmp_path / "raw", tmp_path / "out")
    prepared_ok(result)
    record = run_marble("mtt", tmp_path / "out", tmp_path / "work")
    check_record(record, result.counts)
    assert record.task.state["classes"][:3] == ["guitar", "classical", "slow"]  # MARBLE's order


def test_giantsteps_key_merges_clips_per_song(tmp_path: Path) -> None:
    make_giantsteps(tmp_path / "raw", seconds=2.2)
    result = prepare("giantsteps", tmp_path / "raw", tmp_path / "out", clip_s=1.0, workers=1)
    prepared_ok(result)
    record = run_marble("giantsteps-key", tmp_path / "out", tmp_path / "work")
    check_record(record, result.counts)
    assert record.test_units == 3  # six test clips of three songs, scored per song


def test_emomusic_regression(tmp_path: Path) -> None:
    make_emomusic(tmp_path / "raw", seconds=1.0)
    result = prepare("emomusic", tmp_path / "raw", tmp_path / "out")
    prepared_ok(result)
    record = run_marble("emomusic", tmp_path / "out", tmp_path / "work")
    check_record(record, result.counts)
    assert "r2_arousal" in record.best.test


def marble_checkout(root: Path) -> Path:
    """MARBLE's own layout: ``data/GTZAN/GTZANGenre.*.jsonl`` with paths relative to ``root``."""
    rows = {"train": [], "val": [], "test": []}
    for g, genre in enumerate(("blues", "classical", "rock")):
        for i, split in enumerate(("train", "train", "val", "test")):
            rel = f"data/GTZAN/genres/{genre}/{genre}.{i:05d}.wav"
            write_audio(root / rel, 1.0, 22050, freq=200 + 100 * g, seed=i)
            rows[split].append({"audio_path": rel, "label": genre, "duration": 1.0,
                                "sample_rate": 22050, "num_samples": 22050, "bit_depth": 16,
                                "channels": 1})
    for split, split_rows in rows.items():
        (root / "data" / "GTZAN" / f"GTZANGenre.{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in split_rows))
    return root


def test_marble_files_untouched(tmp_path: Path) -> None:
    root = marble_checkout(tmp_path / "MARBLE")
    [report] = verify("gtzan-genre", data_root=root)
    assert report.ok, report.render()
    record = run_marble("gtzan-genre", root, tmp_path / "work")
    check_record(record, {"train": 6, "val": 3, "test": 3})
    with pytest.raises(UserError, match="data_root"):
        run(load_run_config("marble", [*TINY, "tasks=[gtzan-genre]", f"work_dir={tmp_path / 'w2'}"]))


def test_own_data_on_the_command_line_with_bad_items(tmp_path: Path) -> None:
    """A generic task declared inline; bad items are excluded by file and line, test items
    included, and the run goes on."""
    data = tmp_path / "mine"
    for i in range(4):
        for split in ("train", "val", "test"):
            write_audio(data / "audio" / f"{split}{i}.wav", 1.0, 16000, freq=300 + 200 * (i % 2), seed=i)
    (data / "audio" / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt not audio")

    def rows(split: str) -> list[dict]:
        return [{"audio_path": f"audio/{split}{i}.wav", "label": "low" if i % 2 == 0 else "high"}
                for i in range(4)]

    lines = {"train": rows("train") + [{"audio_path": "audio/missing.wav", "label": "low"},
                                        {"audio_path": "audio/train0.wav"}],
             "val": rows("val"),
             "test": rows("test") + [{"audio_path": "audio/corrupt.wav", "label": "low"},
                                     {"audio_path": "audio/test1.wav", "label": "middle"}]}
    for split, split_rows in lines.items():
        (data / f"Mine.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    task = f"{{name: mine, plugin: multiclass, data: {data}, jsonl: Mine}}"
    cfg = load_run_config("quickstart", [*TINY, f"tasks=[{task}]", f"work_dir={tmp_path / 'work'}"])
    [record] = run(cfg)
    assert record.task.state["classes"] == ["high", "low"]  # inferred from the training labels
    where = {s: {(Path(p.source).name, p.line) for p in items}
             for s, items in record.excluded.items()}
    assert where == {"train": {("Mine.train.jsonl", 5), ("Mine.train.jsonl", 6)}, "val": set(),
                     "test": {("Mine.test.jsonl", 5), ("Mine.test.jsonl", 6)}}
    reasons = " ".join(p.reason for p in record.excluded["test"])
    assert "corrupt.wav" in reasons or "cannot decode" in reasons
    assert "'middle'" in reasons
    assert record.counts == {"train": 4, "val": 4, "test": 4}


@pytest.mark.parametrize("name", ["marble", "marble-v2"])
def test_marble_run_configs_name_existing_task_configs(name: str) -> None:
    from mirprobe.config import available
    from mirprobe.datasets import DATASETS

    cfg = load_run_config(name, ["data_root=/nonexistent"])
    assert set(cfg.tasks) <= set(available("tasks"))
    prepared = {s.task for s in DATASETS.values()}
    assert set(cfg.tasks) <= prepared  # every task has a preparer, so verify knows its layout

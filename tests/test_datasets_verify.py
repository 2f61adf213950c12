"""``datasets verify``: every bad input is reported by file and line, warnings do not fail,
and 10,000 rows are checked in seconds (header reads only)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mirprobe.cli import main
from mirprobe.datasets.verify import infer_plugin, verify, verify_files
from mirprobe.errors import UserError
from tests.test_datasets_prepare import make_gtzan, write_audio


def jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def bad_dataset(root: Path) -> tuple[Path, set[tuple[str, int, str]], set[tuple[str, int, str]]]:
    """A genre dataset with one bad input per row; returns (train JSONL, expected problems,
    expected warnings) as (file name, line, a phrase of the message)."""
    audio = root / "audio"
    for i in range(6):
        write_audio(audio / f"good{i}.wav", 6.0, 22050, seed=i)
    (audio / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    (audio / "empty.wav").write_bytes(b"")
    sf.write(audio / "nan.wav", np.full(22050 * 6, np.nan, dtype=np.float32), 22050, subtype="FLOAT")
    write_audio(audio / "six.wav", 6.0, 22050, channels=6)
    write_audio(audio / "low.wav", 6.0, 8000)
    write_audio(audio / "short.wav", 1.0, 22050)
    write_audio(audio / "tiny.wav", 0.02, 22050)

    def row(name: str, label: str = "blues", **extra) -> dict:
        return {"audio_path": f"audio/{name}", "label": label, **extra}

    train = jsonl(root / "G.train.jsonl", [
        row("good0.wav"), row("good1.wav", "rock"),
        row("missing.wav"),                           # 3
        row("corrupt.wav"),                           # 4
        row("empty.wav"),                             # 5
        {"audio_path": "audio/good2.wav"},            # 6: no label
        "{not json",                                  # 7
        row("six.wav"),                               # 8: warning
        row("low.wav", "rock"),                       # 9: warning
        row("short.wav"),                             # 10: warning
        row("tiny.wav"),                              # 11
        row("good2.wav", sample_rate=44100, duration=6.0),  # 12: header disagrees
    ])
    jsonl(root / "G.val.jsonl", [row("good3.wav"), row("nan.wav", "rock")])
    jsonl(root / "G.test.jsonl", [row("good4.wav", "rock"), row("good5.wav", "polka"),  # 2: unknown
                                  row("good0.wav")])  # 3: also in train
    problems = {("G.train.jsonl", 3, "not found"), ("G.train.jsonl", 4, "cannot read"),
                ("G.train.jsonl", 5, "empty"), ("G.train.jsonl", 6, "no 'label'"),
                ("G.train.jsonl", 7, "not valid JSON"), ("G.train.jsonl", 11, "too short"),
                ("G.train.jsonl", 12, "sample_rate 44100"),
                ("G.test.jsonl", 2, "'polka'"), ("G.test.jsonl", 3, "also in the train split")}
    warnings = {("G.train.jsonl", 8, "6 channels"), ("G.train.jsonl", 9, "8000 Hz"),
                ("G.train.jsonl", 10, "shorter than the 5 s window")}
    return train, problems, warnings


def found(findings, expected) -> set[tuple[str, int, str]]:
    """The expected triples matched by some finding (file name, line, phrase in the message)."""
    return {e for e in expected
            if any(Path(f.source).name == e[0] and f.line == e[1] and e[2] in f.message for f in findings)}


def test_every_bad_input_is_reported_by_file_and_line(tmp_path: Path) -> None:
    train, problems, warnings = bad_dataset(tmp_path)
    [report] = verify(str(train))
    assert report.plugin == "multiclass"
    assert found(report.problems, problems) == problems
    assert len(report.problems) == len(problems)  # nothing else, no duplicates
    assert found(report.warnings, warnings) == warnings and len(report.warnings) == len(warnings)
    assert {s.split: (s.rows, s.usable) for s in report.splits} == {
        "train": (12, 5), "val": (2, 2), "test": (3, 2)}
    assert "blues" in report.splits[0].labels and not report.ok
    # NaN samples need a full decode
    [decoded] = verify(str(train), decode=True)
    nan = {("G.val.jsonl", 2, "NaN or Inf")}
    assert found(decoded.problems, nan) == nan
    assert len(decoded.problems) == len(problems) + 1


def test_cli_exit_status_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train, problems, _ = bad_dataset(tmp_path / "bad")
    out = tmp_path / "report.json"
    assert main(["datasets", "verify", str(train), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert f"{train}:3: " in text and "problem(s) found" in text
    saved = json.loads(out.read_text())
    assert saved[0]["ok"] is False and len(saved[0]["problems"]) == len(problems)
    make_gtzan(tmp_path / "good", per_genre=5, seconds=0.5, genres=("blues", "rock"))
    from mirprobe.datasets import prepare

    result = prepare("gtzan", tmp_path / "good", tmp_path / "out")
    # verify by dataset name relative to --data-root, reading the task config's classes
    assert main(["datasets", "verify", "gtzan", "--data-root", str(tmp_path / "out")]) == 0
    assert main(["datasets", "verify", str(result.folder)]) == 0
    assert "all 1 dataset(s) OK" in capsys.readouterr().out
    assert main(["datasets", "verify", str(tmp_path / "nothing-here")]) == 2


def test_task_config_checks_labels_against_its_classes(tmp_path: Path) -> None:
    audio = write_audio(tmp_path / "a.wav", 6.0, 16000)
    for split in ("train", "val", "test"):
        jsonl(tmp_path / "data" / "GS" / f"GS.{split}.jsonl",
              [{"audio_path": str(audio), "label": "Eb minor", "ori_uid": f"{split}1"},
               {"audio_path": str(audio), "label": "H major", "ori_uid": f"{split}2"}])
    [report] = verify("giantsteps-key", data_root=tmp_path)
    assert report.plugin == "key"
    bad = {(f"GS.{s}.jsonl", 2, "H major") for s in ("train", "val", "test")}
    assert found(report.problems, bad) == bad
    assert sum("also in the" in p.message for p in report.problems) == 4  # one file, three splits


def test_infer_plugin_from_label_shapes() -> None:
    assert infer_plugin(["a", "b"]) == "multiclass"
    assert infer_plugin([["x", "y"], []]) == "multilabel"
    assert infer_plugin([[], ["x"]]) == "multilabel"
    assert infer_plugin([[0.1, 2]]) == "regression"
    assert infer_plugin([{"beat": [0.5]}]) == "beat"
    assert infer_plugin([]) is None


def test_unknown_target_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a JSONL file"):
        verify("no-such-dataset")
    with pytest.raises(UserError, match="reads the built-in synthetic suite"):
        verify("genre")


def test_ten_thousand_rows_in_seconds(tmp_path: Path) -> None:
    source = write_audio(tmp_path / "src.wav", 0.5, 16000)
    rows = []
    for i in range(10_000):
        target = tmp_path / "audio" / f"{i // 1000}" / f"{i}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)  # distinct files, cheap to make
        rows.append({"audio_path": f"audio/{i // 1000}/{i}.wav", "label": f"c{i % 7}",
                     "duration": 0.5, "sample_rate": 16000, "num_samples": 8000, "channels": 1})
    files = {s: jsonl(tmp_path / f"Big.{s}.jsonl", rows[k::3])
             for k, s in enumerate(("train", "val", "test"))}
    start = time.perf_counter()
    report = verify_files(files, window_s=0.25)
    elapsed = time.perf_counter() - start
    assert report.ok, report.render()
    assert sum(s.usable for s in report.splits) == 10_000
    assert elapsed < 30, f"verify took {elapsed:.1f} s for 10,000 rows"

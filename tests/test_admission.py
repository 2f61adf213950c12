"""`mirprobe run` and `mirprobe datasets verify` admit the same items: one dataset full of bad
rows, labels and files, checked both ways; the expected exclusions are written out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirprobe.admission import data_folder
from mirprobe.config import load_run_config
from mirprobe.datasets.verify import verify
from mirprobe.errors import UserError
from mirprobe.pipeline import run
from tests.conftest import write_jsonl, write_tone

TINY = ["models=[handcrafted]", "progress=false", "device=cpu", "extract.num_workers=0",
        "probe.heads=[linear]", "probe.lr=[1e-2]", "probe.max_epochs=2", "probe.patience=1",
        "probe.weighted_sum=false"]


def bad_dataset(root: Path) -> dict[str, list[int]]:
    """``root/data/Inst.{train,val,test}.jsonl``; returns the 1-based lines that must be excluded
    per split (every other row is usable)."""
    audio = root / "data" / "audio"
    for i in range(13):
        write_tone(audio / f"{i}.wav", 1.0, sr=16000, freq=220.0 * (1 + i % 3), seed=i)

    def row(i: int, label: object) -> dict:
        return {"audio_path": f"audio/{i}.wav", "label": label}

    data = root / "data"
    write_jsonl(data / "Inst.train.jsonl", [
        row(0, "cello"), row(1, "flute"), row(2, "piano"), row(3, "cello"),
        {"audio_path": "audio/4.wav"},                       # 5: no label
        row(5, ["cello", "flute"]),                          # 6: not a class name (unfittable)
        {"audio_path": "audio/missing.wav", "label": "oboe"},  # 7: no such file
    ])
    (data / "Inst.train.jsonl").write_text((data / "Inst.train.jsonl").read_text()
                                           + "{not json\n")  # 8: bad JSON
    write_jsonl(data / "Inst.val.jsonl", [
        row(6, "cello"), row(7, "flute"),
        row(8, "oboe"),                                      # 3: only the missing file had oboe
        row(9, None),                                        # 4: label null
    ])
    write_jsonl(data / "Inst.test.jsonl", [
        row(10, "piano"), row(11, "cello"),
        row(12, {"beat": [0.5]}),                            # 3: a label of another kind
        {"audio_path": "audio/gone.wav", "label": "piano"},  # 4: no such file
    ])
    return {"train": [5, 6, 7, 8], "val": [3, 4], "test": [3, 4]}


def test_run_and_verify_exclude_the_same_items_for_the_same_reasons(tmp_path: Path) -> None:
    want = bad_dataset(tmp_path)
    task = "{name: inst, plugin: multiclass, data: data, jsonl: Inst}"
    cfg = load_run_config("quickstart", [*TINY, f"tasks=[{task}]", f"data_root={tmp_path}",
                                         f"work_dir={tmp_path / 'work'}"])
    [record] = run(cfg)
    ran = {s: {(p.line, p.reason) for p in items} for s, items in record.excluded.items()}
    assert {s: sorted(line for line, _ in found) for s, found in ran.items()} == want
    assert record.counts == {"train": 4, "val": 2, "test": 2}
    assert record.task.state["classes"] == ["cello", "flute", "piano"]  # oboe never fitted

    [report] = verify(str(tmp_path / "data" / "Inst.train.jsonl"), plugin="multiclass")
    checked: dict[str, set] = {s: set() for s in want}
    for f in report.problems:
        split = next(s for s in want if f.source.endswith(f".{s}.jsonl"))
        checked[split].add((f.line, f.message))
    assert {s: sorted({line for line, _ in found}) for s, found in checked.items()} == want
    assert [s.usable for s in report.splits] == [4, 2, 2]
    for split in want:  # rows and labels: the very same reason; audio: the same items
        rows_and_labels = {(line, reason) for line, reason in ran[split] if "audio" not in reason}
        assert rows_and_labels <= checked[split], split


def test_a_relative_data_folder_needs_data_root_in_run_and_verify(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bad_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)  # the folder exists relative to here, but here is not data_root
    assert data_folder("t", "data", tmp_path) == tmp_path / "data"
    with pytest.raises(UserError, match="relative; set data_root"):
        data_folder("t", "data", None)
    with pytest.raises(UserError, match="relative; set data_root"):
        verify("gtzan-genre")
    cfg = load_run_config("quickstart", [*TINY, f"work_dir={tmp_path / 'work'}",
                                         "tasks=[{name: inst, plugin: multiclass, data: data, jsonl: Inst}]"])
    with pytest.raises(UserError, match="relative; set data_root"):
        run(cfg)

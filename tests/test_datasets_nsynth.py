"""NSynth: a tiny fixture in the raw layout (``nsynth-<split>/examples.json`` + ``audio/``) →
MARBLE v1's NSynthP / NSynthI JSONL, hostile variants, and runs whose accuracy is recomputed
with scikit-learn from the stored predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from mirprobe.datasets import prepare
from mirprobe.datasets.nsynth import FAMILIES
from mirprobe.errors import UserError
from mirprobe.report.records import load_record_predictions
from tests.test_datasets_prepare import read_rows, write_audio
from tests.test_datasets_run import check_record, prepared_ok, run_cli

FOLDERS = {"train": "nsynth-train", "val": "nsynth-valid", "test": "nsynth-test"}


def make_nsynth(raw: Path, per_split: int = 6, seconds: float = 1.0) -> dict[str, tuple]:
    """``nsynth-<split>/examples.json`` with NSynth's fields and 16 kHz WAVs; returns note →
    (split, pitch, family)."""
    expected = {}
    for s, (split, folder) in enumerate(FOLDERS.items()):
        examples = {}
        for i in range(per_split):
            family = FAMILIES[(i + s) % 3 * 4]  # bass, keyboard, reed
            pitch = (48, 60, 72)[i % 3]
            note = f"{family}_acoustic_{s:03d}-{pitch:03d}-{50 + i}"
            examples[note] = {"note": 1000 * s + i, "note_str": note, "pitch": pitch,
                              "velocity": 50 + i, "sample_rate": 16000,
                              "instrument_family": FAMILIES.index(family),
                              "instrument_family_str": family, "instrument_source": 0,
                              "instrument_source_str": "acoustic", "qualities": [0] * 10,
                              "qualities_str": []}
            write_audio(raw / folder / "audio" / f"{note}.wav", seconds, 16000,
                        freq=440 * 2 ** ((pitch - 69) / 12), seed=i)
            expected[note] = (split, pitch, family)
        (raw / folder).mkdir(parents=True, exist_ok=True)
        (raw / folder / "examples.json").write_text(json.dumps(examples, indent=4))
    return expected


def got_labels(result) -> dict[str, tuple[str, object]]:
    return {Path(r["audio_path"]).stem: (split, r["label"])
            for split in ("train", "val", "test") for r in read_rows(result.files[split])}


def test_nsynth_pitch_and_family_labels(tmp_path: Path) -> None:
    expected = make_nsynth(tmp_path / "raw")
    pitch = prepare("nsynth-pitch", tmp_path / "raw", tmp_path / "out")
    family = prepare("nsynth-instrument", tmp_path / "raw", tmp_path / "out")
    assert pitch.folder == family.folder == tmp_path / "out" / "data" / "NSynth"
    assert pitch.files["val"].name == "NSynthP.val.jsonl"
    assert got_labels(pitch) == {n: (s, p) for n, (s, p, _) in expected.items()}
    assert got_labels(family) == {n: (s, f) for n, (s, _, f) in expected.items()}
    row = read_rows(pitch.files["train"])[0]
    assert isinstance(row["label"], int) and (row["sample_rate"], row["bit_depth"]) == (16000, 16)
    assert pitch.problems == family.problems == []


def test_nsynth_bad_entries_and_missing_audio(tmp_path: Path) -> None:
    expected = make_nsynth(tmp_path / "raw")
    path = tmp_path / "raw" / "nsynth-test" / "examples.json"
    examples = json.loads(path.read_text())
    first, second, *_ = sorted(examples)
    examples[first]["pitch"] = 130
    examples[second]["instrument_family_str"] = "theremin"
    examples["ghost_note-060-100"] = {"pitch": 60, "instrument_family_str": "bass"}  # no WAV
    path.write_text(json.dumps(examples))
    pitch = prepare("nsynth-pitch", tmp_path / "raw", tmp_path / "out")
    family = prepare("nsynth-instrument", tmp_path / "raw", tmp_path / "out")
    assert set(got_labels(pitch)) == set(expected) - {first}
    assert set(got_labels(family)) == set(expected) - {second}
    assert len(pitch.problems) == len(family.problems) == 2
    assert any(first in p and "130" in p for p in pitch.problems)
    assert any(second in p and "theremin" in p for p in family.problems)
    assert all(any("ghost_note-060-100" in p and "no audio" in p for p in r.problems)
               for r in (pitch, family))
    path.write_text("{broken")
    with pytest.raises(UserError, match="examples.json"):
        prepare("nsynth-pitch", tmp_path / "raw", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="nsynth-train/examples.json"):
        prepare("nsynth-pitch", tmp_path / "empty", tmp_path / "out")


@pytest.mark.parametrize(("name", "task", "classes"), [("nsynth-pitch", "nsynth-pitch", 128),
                                                       ("nsynth-instrument", "nsynth-instrument", 11)])
def test_nsynth_end_to_end(tmp_path: Path, name: str, task: str, classes: int) -> None:
    make_nsynth(tmp_path / "raw", per_split=6, seconds=1.0)
    result = prepare(name, tmp_path / "raw", tmp_path / "out")
    prepared_ok(result)
    record = run_cli(task, tmp_path / "out", tmp_path / "work")
    check_record(record, {"train": 6, "val": 6, "test": 6})
    assert len(record.task.state["classes"]) == classes and record.selection_metric == "accuracy"
    pred = load_record_predictions(record, tmp_path / "work" / "records")
    labels = pred.labels
    scores = np.asarray(pred.seeds(record.best.layer)[0])
    truth = [record.task.state["classes"].index(str(label)) for label in labels]
    assert record.best.test["accuracy"] == pytest.approx(accuracy_score(truth, scores.argmax(1)))

"""MTG-Jamendo: a tiny fixture in the raw layout (split files of MTG/mtg-jamendo-dataset,
audio folders ``NN/ID.mp3`` / ``NN/ID.low.mp3``) → MARBLE v2 JSONL, hostile variants, a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mirprobe.datasets import prepare
from mirprobe.datasets.mtg_jamendo import SUBSETS, classes_of
from mirprobe.errors import UserError
from mirprobe.report.records import load_record_predictions
from tests.test_datasets_prepare import read_rows, write_audio
from tests.test_datasets_run import check_record, run_cli

HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"


def split_line(track: int, tags: list[str]) -> str:
    return (f"track_{track:07d}\tartist_{track % 7:06d}\talbum_{track % 11:06d}\t"
            f"{track % 100:02d}/{track}.mp3\t{30 + track % 50}.5\t" + "\t".join(tags))


def make_mtg(raw: Path, repo: Path, subset: str = "instrument", per_split: int = 4,
             seconds: float = 1.0, low: bool = False) -> dict[str, tuple[str, list[str]]]:
    """Split-0 files of ``subset`` (CRLF, multi-tag rows) in ``repo/data/splits/split-0/`` and
    the audio of every track under ``raw/NN/``; returns TRACK_ID → (split, tags)."""
    classes = classes_of(SUBSETS[subset])
    folder = repo / "data" / "splits" / "split-0"
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    track = 240
    for split, theirs in (("train", "train"), ("val", "validation"), ("test", "test")):
        lines = [HEADER]
        for i in range(per_split):
            track += 37
            tags = [classes[(track + k) % len(classes)] for k in range(1 + i % 3)]
            lines.append(split_line(track, tags))
            name = f"{track}.low.mp3" if low else f"{track}.mp3"
            write_audio(raw / f"{track % 100:02d}" / name, seconds, 44100, freq=200 + track % 300,
                        seed=track)
            expected[f"track_{track:07d}"] = (split, tags)
        (folder / f"autotagging_{subset}-{theirs}.tsv").write_bytes(
            ("\r\n".join(lines) + "\r\n").encode())
    # another split's files are not read
    (repo / "data" / "splits" / "split-1").mkdir(parents=True, exist_ok=True)
    return expected


def rows_by_track(result) -> dict[str, tuple[str, list[str]]]:
    got = {}
    for split in ("train", "val", "test"):
        for r in read_rows(result.files[split]):
            got[f"track_{int(Path(r['audio_path']).name.split('.')[0]):07d}"] = (split, r["label"])
    return got


@pytest.mark.parametrize("low", [False, True])
def test_mtg_instrument_split0_and_tags(tmp_path: Path, low: bool) -> None:
    expected = make_mtg(tmp_path / "audio", tmp_path / "repo", low=low)
    result = prepare("mtg-instrument", tmp_path / "audio", tmp_path / "out",
                     annotations=tmp_path / "repo")
    assert result.folder == tmp_path / "out" / "data" / "MTG"
    assert result.files["train"].name == "MTGInstrument.train.jsonl"
    assert rows_by_track(result) == expected
    assert result.problems == [] and result.notes == []
    row = read_rows(result.files["test"])[0]
    assert (row["sample_rate"], row["channels"], row["bit_depth"]) == (44100, 1, None)
    assert row["audio_path"].endswith(".low.mp3" if low else ".mp3")


def test_mtg_partial_download_and_bad_rows(tmp_path: Path) -> None:
    """Absent audio folders, a bad row, a tag outside MARBLE's classes and a track listed in
    two splits: each row is left out and listed; the absent folders are named."""
    expected = make_mtg(tmp_path / "audio", tmp_path / "repo", subset="moodtheme", per_split=5)
    folder = tmp_path / "repo" / "data" / "splits" / "split-0"
    test_file = folder / "autotagging_moodtheme-test.tsv"
    extra = [split_line(99999, ["mood/theme---film"]),  # folder 99 was never downloaded
             "track_0000001\tartist_1\t",  # truncated row
             split_line(12345, ["mood/theme---film", "mood/theme---unheard"]),
             split_line(int(next(iter(expected))[6:]), ["mood/theme---film"])]  # a train track
    test_file.write_bytes(test_file.read_bytes() + ("\r\n".join(extra) + "\r\n").encode())
    gone = next(t for t, (s, _) in expected.items() if s == "val")
    gone_folder = f"{int(gone[6:]) % 100:02d}"
    for path in (tmp_path / "audio" / gone_folder).iterdir():
        path.unlink()
    (tmp_path / "audio" / gone_folder).rmdir()
    result = prepare("mtg-moodtheme", tmp_path / "audio", tmp_path / "out",
                     annotations=tmp_path / "repo")
    assert rows_by_track(result) == {t: v for t, v in expected.items() if t != gone}
    text = "\n".join(result.problems)
    assert len(result.problems) == 5
    assert "track_0099999" in text and "99/99999.mp3" in text
    assert f"{gone}: no audio" in text
    assert ":8: not a row" in text  # the header, 5 rows and the folder-99 row come first
    assert "mood/theme---unheard" in text and "already in autotagging_moodtheme-train.tsv" in text
    [note] = result.notes
    assert "partial download: 2 rows" in note and gone_folder in note and "99" in note
    manifest = json.loads((result.folder / "MTGMood.prepare.json").read_text())
    assert manifest["problems"] == result.problems and manifest["options"]["split"] == 0


def test_mtg_missing_split_files_or_audio(tmp_path: Path) -> None:
    make_mtg(tmp_path / "audio", tmp_path / "repo", subset="genre", per_split=1)
    with pytest.raises(UserError, match="autotagging_top50tags-train.tsv"):
        prepare("mtg-top50", tmp_path / "audio", tmp_path / "out", annotations=tmp_path / "repo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no MTG-Jamendo audio"):
        prepare("mtg-genre", tmp_path / "empty", tmp_path / "out", annotations=tmp_path / "repo")
    bad = tmp_path / "repo" / "data" / "splits" / "split-0" / "autotagging_genre-train.tsv"
    bad.write_text("track\tpath\n")
    with pytest.raises(UserError, match="header"):
        prepare("mtg-genre", tmp_path / "audio", tmp_path / "out", annotations=tmp_path / "repo")


def test_mtg_genre_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """From the command line: prepare with the split files under ``--raw`` (no
    ``--annotations``), verify by dataset name, then a run of the task config."""
    make_mtg(tmp_path / "raw" / "audio", tmp_path / "raw" / "mtg-jamendo-dataset",
             subset="genre", per_split=4)
    from mirprobe.cli import main

    assert main(["datasets", "prepare", "mtg-genre", "--raw", str(tmp_path / "raw"),
                 "--out", str(tmp_path / "out")]) == 0
    assert main(["datasets", "verify", "mtg-genre", "--data-root", str(tmp_path / "out")]) == 0
    record = run_cli("mtg-genre", tmp_path / "out", tmp_path / "work")
    check_record(record, {"train": 4, "val": 4, "test": 4})
    assert record.selection_metric == "roc_auc"
    assert len(record.task.state["classes"]) == 87
    assert record.task.state["classes"][:2] == ["genre---rock", "genre---pop"]  # MARBLE's order
    assert set(record.best.test) >= {"roc_auc", "average_precision"}
    assert "MTGGenre" in capsys.readouterr().out
    # the stored test scores give the record's numbers under scikit-learn
    pred = load_record_predictions(record, tmp_path / "work" / "records")
    labels = pred.labels
    scores = np.asarray(pred.seeds(record.best.layer)[0], dtype=np.float64)
    classes = record.task.state["classes"]
    truth = np.array([[c in label for c in classes] for label in labels], dtype=int)
    keep = (truth.sum(0) > 0) & (truth.sum(0) < len(labels))
    assert record.best.test["roc_auc"] == pytest.approx(
        roc_auc_score(truth[:, keep], scores[:, keep], average="macro"))
    assert record.best.test["average_precision"] == pytest.approx(
        average_precision_score(truth[:, keep], scores[:, keep], average="macro"))

"""Chords: ``.lab`` annotations + audio → Chords1217 JSONL (hostile variants included), and a
run of the chord task through the CLI on MARBLE's own JSONL layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from mirprobe.cli import main
from mirprobe.datasets import prepare
from mirprobe.datasets.verify import verify
from mirprobe.errors import UserError
from tests.test_datasets_prepare import read_rows, write_audio
from tests.test_datasets_run import check_record, prepared_ok, run_cli

PROGRESSIONS = [["C:maj", "A:min", "F:maj", "G:7"], ["D:min", "G:maj", "C:maj7", "N"],
                ["E:maj", "B:maj/3", "C#:min", "A:sus4"]]


def lab_lines(song: int, seconds: float) -> list[tuple[float, float, str]]:
    chords = PROGRESSIONS[song % 3]
    step = seconds / len(chords)
    return [(round(i * step, 6), round((i + 1) * step, 6), c) for i, c in enumerate(chords)]


def make_labs(labs: Path, audio: Path, songs: int = 6, seconds: float = 4.0) -> dict[str, list]:
    """Isophonics-like ``<artist>/<album>/<song>.lab`` (TAB- or space-separated) and the audio
    at the same relative path; returns key → label."""
    expected = {}
    for i in range(songs):
        key = f"Artist {i % 2}/Album/{i:02d}_-_Song_{i}"
        sep = "\t" if i % 2 else " "
        lines = lab_lines(i, seconds)
        (labs / key).parent.mkdir(parents=True, exist_ok=True)
        (labs / f"{key}.lab").write_text("".join(f"{a}{sep}{b}{sep}{c}\n" for a, b, c in lines))
        write_audio(audio / f"{key}.wav",
                    seconds, 22050, freq=220 + 40 * i, seed=i)
        expected[key] = [{"start_time": a, "end_time": b, "chord_str": c} for a, b, c in lines]
    return expected


def write_split_lists(folder: Path, split_of: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.txt"), ("val", "valid.txt"), ("test", "test.txt")):
        (folder / name).write_text("".join(f"{k}\n" for k, s in split_of.items() if s == split))
    return folder


def by_key(result, audio: Path) -> dict[str, tuple[str, list]]:
    return {Path(r["audio_path"]).relative_to(audio).with_suffix("").as_posix(): (split, r["label"])
            for split in ("train", "val", "test") for r in read_rows(result.files[split])}


def test_chords_lab_with_split_lists_and_bad_files(tmp_path: Path) -> None:
    expected = make_labs(tmp_path / "labs", tmp_path / "audio")
    keys = sorted(expected)
    split_of = {k: ("train", "train", "val", "test")[i % 4] for i, k in enumerate(keys)}
    (tmp_path / "labs" / "broken.lab").write_text("0.0 1.0\n")  # no label column
    (tmp_path / "labs" / "odd.lab").write_text("0.0 1.0 H:maj\n")  # not Harte
    write_audio(tmp_path / "audio" / "broken.wav", 1.0, 22050)
    write_audio(tmp_path / "audio" / "odd.wav", 1.0, 22050)
    split_of.update({"broken": "train", "odd": "val", "ghost": "test"})  # ghost: no .lab
    (tmp_path / "audio" / f"{keys[1]}.wav").unlink()  # a .lab without audio
    lists = write_split_lists(tmp_path / "lists", split_of)
    result = prepare("chords-lab", tmp_path / "audio", tmp_path / "out",
                     annotations=tmp_path / "labs", splits=lists)
    assert result.folder == tmp_path / "out" / "data" / "Chords1217"
    assert by_key(result, tmp_path / "audio") == {k: (split_of[k], expected[k])
                                                 for k in keys if k != keys[1]}
    text = "\n".join(result.problems)
    assert len(result.problems) == 4
    assert "broken.lab" in text and "'H:maj'" in text and "ghost" in text and "no audio" in text
    manifest = json.loads((result.folder / "Chords1217.prepare.json").read_text())
    assert manifest["options"]["comparable"] is True and manifest["problems"] == result.problems


def test_chords_lab_seeded_split_is_marked(tmp_path: Path) -> None:
    make_labs(tmp_path / "raw", tmp_path / "raw", songs=10, seconds=1.0)
    result = prepare("chords", tmp_path / "raw", tmp_path / "out", seed=2)
    assert result.counts == {"train": 8, "val": 1, "test": 1}
    assert any("NOT MARBLE's Chords1217 split" in n for n in result.notes)
    with pytest.raises(UserError, match="no .lab"):
        prepare("chords-lab", tmp_path / "out", tmp_path / "out2")


def marble_chords(root: Path, seconds: float = 6.0) -> Path:
    """MARBLE's own layout: ``data/Chords1217/Chords1217.*.jsonl`` + FLAC audio, labels with the
    nanosecond overlaps and the ``N`` segments its files hold."""
    for i, split in enumerate(("train",) * 4 + ("val",) * 2 + ("test",) * 2):
        rel = f"data/Chords1217/audio/TR{i:04d}.flac"
        wav = write_audio(tmp_wav := root / f"{i}.wav", seconds, 24000, freq=200 + 50 * (i % 4),
                          seed=i)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, sf.read(wav)[0], 24000, format="FLAC")
        tmp_wav.unlink()
        label = [{"start_time": 0.0, "end_time": 0.4, "chord_str": "N"}]
        label += [{"start_time": a - (1e-9 if n == 2 else 0), "end_time": b, "chord_str": c}
                  for n, (a, b, c) in enumerate(lab_lines(i, seconds)) if b > 0.4]
        row = {"audio_path": rel, "label": label, "duration": seconds, "sample_rate": 24000,
               "num_samples": int(seconds * 24000), "bit_depth": 0, "channels": 1}
        with open(root / "data" / "Chords1217" / f"Chords1217.{split}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    return root


def test_chords1217_end_to_end(tmp_path: Path) -> None:
    root = marble_chords(tmp_path / "MARBLE")
    [report] = verify("chords1217", data_root=root)
    assert report.ok, report.render()
    record = run_cli("chords1217", root, tmp_path / "work")
    check_record(record, {"train": 4, "val": 2, "test": 2})
    assert record.selection_metric == "chord_accuracy"
    assert set(record.best.test) >= {"chord_accuracy", "majmin", "root", "mirex"}
    assert main(["leaderboard", "--work-dir", str(tmp_path / "work"), "--all-metrics"]) == 0


def test_chords_lab_prepare_then_run(tmp_path: Path) -> None:
    make_labs(tmp_path / "raw", tmp_path / "raw", songs=6, seconds=6.0)
    keys = sorted(k.with_suffix("").relative_to(tmp_path / "raw").as_posix()
                  for k in (tmp_path / "raw").rglob("*.lab"))
    lists = write_split_lists(tmp_path / "lists", dict(zip(keys, ["train"] * 2 + ["val"] * 2 +
                                                           ["test"] * 2, strict=True)))
    result = prepare("chords-lab", tmp_path / "raw", tmp_path / "out", splits=lists)
    prepared_ok(result)
    record = run_cli("chords1217", tmp_path / "out", tmp_path / "work")
    check_record(record, {"train": 2, "val": 2, "test": 2})

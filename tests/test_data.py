"""MARBLE v2 JSONL reading: path resolution and row problems reported by file and line."""

from __future__ import annotations

import pytest

from mirprobe.audio import load_audio, window_bounds
from mirprobe.data import load_dataset, read_jsonl
from mirprobe.errors import DataError, UserError
from tests.conftest import write_jsonl, write_tone


def test_relative_paths_resolve_against_ancestors(tmp_path) -> None:
    # MARBLE layout: <root>/data/GTZAN/genres/... and JSONL under <root>/data/GTZAN/
    audio = write_tone(tmp_path / "data" / "GTZAN" / "genres" / "blues" / "blues.00000.wav", 1.0)
    jsonl = write_jsonl(tmp_path / "data" / "GTZAN" / "GTZANGenre.train.jsonl",
                        [{"audio_path": "data/GTZAN/genres/blues/blues.00000.wav", "label": "blues"}])
    items, problems = read_jsonl(jsonl, "train")
    assert problems == []
    assert items[0].audio_path == audio.resolve()
    other = tmp_path / "elsewhere"
    write_tone(other / "data" / "GTZAN" / "genres" / "blues" / "blues.00000.wav", 1.0)
    items, _ = read_jsonl(jsonl, "train", audio_root=other)
    assert items[0].audio_path == (other / "data/GTZAN/genres/blues/blues.00000.wav").resolve()


def test_bad_rows_are_problems_with_line_numbers(tmp_path) -> None:
    path = tmp_path / "T.train.jsonl"
    path.write_text('{"audio_path": "a.wav", "label": "x"}\nnot json\n{"audio_path": "b.wav"}\n\n[1]\n')
    items, problems = read_jsonl(path, "train")
    assert [it.line for it in items] == [1]
    assert [(p.line, p.reason.split(" (")[0].split(";")[0]) for p in problems] == [
        (2, "not valid JSON"), (3, "row has no 'label'"), (5, "row is not a JSON object")]
    assert all(p.source == str(path) for p in problems)


def test_missing_split_file_names_it(tmp_path) -> None:
    for s in ("train", "val"):
        write_jsonl(tmp_path / f"K.{s}.jsonl", [{"audio_path": "a.wav", "label": "C major"}])
    with pytest.raises(UserError, match="missing K.test.jsonl"):
        load_dataset(tmp_path, "K")


def test_windows_never_pad_and_drop_only_subframe_tails() -> None:
    assert window_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert window_bounds(3, 4) == [(0, 3)]
    assert window_bounds(9, 4, min_samples=2) == [(0, 4), (4, 8)]
    assert window_bounds(0, 4) == []


def test_load_audio_mixes_down_and_resamples(tmp_path) -> None:
    path = write_tone(tmp_path / "six.wav", 1.0, sr=8000, channels=6)
    wave = load_audio(path, 16000)
    assert wave.dtype.name == "float32" and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 2


@pytest.mark.parametrize("content", [b"", b"RIFF garbage that is not audio"])
def test_undecodable_audio_names_the_file(tmp_path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"{path}: cannot decode audio"):
        load_audio(path, 16000)
    with pytest.raises(DataError, match="audio file not found"):
        load_audio(tmp_path / "none.wav", 16000)

"""VocalSet: a tiny fixture in the unzipped layout (``FULL/<singer>/<context>/<technique>/``)
→ 3 s clips and MARBLE v1's VocalSetT / VocalSetS JSONL, hostile files, and a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import soundfile as sf

from mirprobe.datasets import prepare
from mirprobe.datasets.vocalset import TEST_SINGERS
from tests.test_datasets_prepare import read_rows, write_audio
from tests.test_datasets_run import check_record, prepared_ok, run_cli

SINGERS = ("f1", "f2", "m1", "m3", "m4")
TECHNIQUES = {"arpeggios": ("belt", "breathy", "forte"), "excerpts": ("vibrato", "spoken")}


def make_vocalset(raw: Path) -> dict[str, tuple[str, str, int]]:
    """Recordings of 3.2–7 s at 22.05 kHz; returns uid → (singer, technique, clips)."""
    expected = {}
    n = 0
    for singer in SINGERS:
        for context, techniques in TECHNIQUES.items():
            for technique in techniques:
                for vowel in "ae":
                    n += 1
                    seconds = 3.2 + (n % 4)
                    stem = f"{singer}_{context}_{technique}_{vowel}"
                    write_audio(raw / "FULL" / singer / context / technique / f"{stem}.wav",
                                seconds, 22050, freq=150 + 20 * SINGERS.index(singer), seed=n)
                    expected[f"{singer}/{context}/{technique}/{stem}"] = (
                        singer, technique, math.floor(seconds / 3.0))
    full = raw / "FULL"
    write_audio(full / "f1" / "excerpts" / "vibrato" / "caro_vibrato.wav", 4.0, 22050)  # deleted
    write_audio(full / "f1" / "excerpts" / "vibrato" / "old" / "f1_x.wav", 4.0, 22050)  # too deep
    write_audio(full / "f1" / "excerpts" / "notes" / "f1_notes.wav", 4.0, 22050)  # no technique
    return expected


def rows(result) -> dict[str, list[tuple[str, str]]]:
    """ori_uid → [(split, label) of each clip]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for split in ("train", "val", "test"):
        for r in read_rows(result.files[split]):
            out.setdefault(r["ori_uid"], []).append((split, r["label"]))
            assert (r["sample_rate"], r["channels"], r["num_samples"]) == (44100, 1, 3 * 44100)
    return out


def test_vocalset_technique_and_singer(tmp_path: Path) -> None:
    expected = make_vocalset(tmp_path / "raw")
    short = tmp_path / "raw" / "FULL" / "m4" / "arpeggios" / "belt" / "m4_arpeggios_belt_i.wav"
    write_audio(short, 2.0, 22050)  # under one clip
    broken = tmp_path / "raw" / "FULL" / "m4" / "arpeggios" / "belt" / "m4_arpeggios_belt_o.wav"
    broken.write_bytes(b"RIFF....WAVEfmt nonsense")
    technique = prepare("vocalset-technique", tmp_path / "raw", tmp_path / "out", seed=1)
    got = rows(technique)
    wanted = {u: v for u, v in expected.items() if v[1] != "forte"}  # not a task technique
    assert set(got) == set(wanted)
    for uid, clips in got.items():
        singer, tech, count = wanted[uid]
        splits = {s for s, _ in clips}
        assert len(clips) == count and len(splits) == 1 and {lab for _, lab in clips} == {tech}
        assert (splits == {"test"}) == (singer in TEST_SINGERS)  # MARBLE's test singers
    train = {u for u, c in got.items() if c[0][0] == "train"}
    val = {u for u, c in got.items() if c[0][0] == "val"}
    assert len(val) == math.ceil(0.4 * (len(train) + len(val)))
    assert len(technique.problems) == 2 and all("m4_arpeggios_belt_" in p for p in technique.problems)
    manifest = json.loads((technique.folder / "VocalSetT.prepare.json").read_text())
    assert manifest["options"]["comparable"] is False
    # a clip is the recording's segment, resampled to 44.1 kHz and mixed to mono
    clip = next((tmp_path / "out" / "data" / "VocalSet" / "clips").rglob("*-1.wav"))
    assert sf.info(clip).samplerate == 44100

    singer = prepare("vocalset-singer", tmp_path / "raw", tmp_path / "out", seed=1)
    got = rows(singer)
    assert set(got) == set(expected)  # all 17 techniques
    assert all({lab for _, lab in c} == {expected[u][0]} and len({s for s, _ in c}) == 1
               for u, c in got.items())
    test = [u for u, c in got.items() if c[0][0] == "test"]
    assert len(test) == math.ceil(0.2 * len(expected))


def test_vocalset_technique_end_to_end(tmp_path: Path) -> None:
    make_vocalset(tmp_path / "raw")
    result = prepare("vocalset-technique", tmp_path / "raw", tmp_path / "out")
    prepared_ok(result)  # verify also checks that no recording (ori_uid) spans two splits
    record = run_cli("vocalset-technique", tmp_path / "out", tmp_path / "work")
    check_record(record, result.counts)
    assert record.task.state["classes"][0] == "belt" and record.selection_metric == "accuracy"

"""The synthetic suite: determinism, JSONL format, reuse, beat and tag fidelity."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import librosa
import mir_eval
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from mirprobe.errors import UserError
from mirprobe.synth import GENRES, KEYS, SIZES, TAGS, generate_suite
from mirprobe.synth.labels import tags
from mirprobe.synth.render import render
from mirprobe.synth.spec import sample_spec
from mirprobe.synth.suite import PREFIXES, plan, split_counts

SR = 16000
CLIP_TASKS = ("Key", "Genre", "Tagging", "Emotion")


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    return generate_suite(tmp_path_factory.mktemp("synth") / "tiny", "tiny", seed=0, progress=False)


def _rows(folder: Path, prefix: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{prefix}.{split}.jsonl").read_text().splitlines()]


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sizes_match_the_names_the_config_accepts():
    from mirprobe.config import load_run_config

    for size in SIZES:
        assert load_run_config("quickstart", [f"synthetic.size={size}"]).synthetic.size == size


def test_same_seed_gives_identical_bytes(suite, tmp_path):
    again = generate_suite(tmp_path / "again", "tiny", seed=0, progress=False)
    assert _digests(again) == _digests(suite)
    assert not list(tmp_path.glob("*.partial-*"))


def test_each_track_depends_only_on_its_own_spec(suite):
    # what makes the output independent of worker count and rendering order
    split, spec = plan("tiny", 0)[5]
    audio, sr = sf.read(suite / "audio" / "000005.wav", dtype="int16")
    assert sr == SR and np.array_equal(render(spec, SIZES["tiny"]["duration"], SR).audio, audio)


def test_another_seed_gives_other_tracks(suite):
    a, b = plan("tiny", 0), plan("tiny", 1)
    assert [s.to_dict() for _, s in a] != [s.to_dict() for _, s in b]
    audio_a = render(a[0][1], 1.0, SR).audio
    audio_b = render(b[0][1], 1.0, SR).audio
    assert not np.array_equal(audio_a, audio_b)


def test_jsonl_rows_describe_their_audio(suite):
    meta = json.loads((suite / "suite.json").read_text())
    for prefix in PREFIXES.values():
        for split in ("train", "val", "test"):
            rows = _rows(suite, prefix, split)
            assert len(rows) == meta["counts"][prefix][split] > 0
            for row in rows:
                info = sf.info(suite / row["audio_path"])  # relative to the JSONL's folder
                assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
                assert info.frames == row["num_samples"]
                assert row["sample_rate"] == SR and row["channels"] == 1 and row["bit_depth"] == 16
                assert row["duration"] == pytest.approx(info.frames / SR)


def test_clip_tasks_share_one_pool_and_beat_lists_a_subset(suite):
    for split in ("train", "val", "test"):
        paths = [[r["audio_path"] for r in _rows(suite, t, split)] for t in CLIP_TASKS]
        assert all(p == paths[0] for p in paths)
        beat = [r["audio_path"] for r in _rows(suite, "Beat", split)]
        assert beat == paths[0][:len(beat)] and 0 < len(beat) < len(paths[0])
    splits = {s: {r["audio_path"] for r in _rows(suite, "Key", s)} for s in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"]
                or splits["val"] & splits["test"])


def test_labels_are_valid(suite):
    train_keys = Counter(r["label"] for r in _rows(suite, "Key", "train"))
    assert set(train_keys) == set(KEYS)  # every key is learnable
    for split in ("train", "val", "test"):
        for r in _rows(suite, "Key", split):
            mir_eval.key.validate_key(r["label"])
            assert r["label"] in KEYS
        assert {r["label"] for r in _rows(suite, "Genre", split)} <= set(GENRES)
        for r in _rows(suite, "Tagging", split):
            assert r["label"] and set(r["label"]) <= set(TAGS)
            assert r["label"] == [t for t in TAGS if t in r["label"]]
        for r in _rows(suite, "Beat", split):
            beats, downbeats = np.array(r["label"]["beat"]), np.array(r["label"]["downbeat"])
            mir_eval.beat.validate(beats, beats)
            assert np.all(np.diff(beats) > 0) and beats[0] >= 0 and beats[-1] < r["duration"]
            assert set(downbeats) <= set(beats)
            assert 60 / np.median(np.diff(beats)) == pytest.approx(r["label"]["tempo"], rel=1e-3)
    emotion = np.array([r["label"] for r in _rows(suite, "Emotion", "train")])
    assert emotion.shape[1] == 2
    np.testing.assert_allclose(emotion.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(emotion.std(0), 1, atol=1e-4)


def test_tag_vocabulary_is_used(suite):
    seen = Counter(t for s in ("train", "val", "test") for r in _rows(suite, "Tagging", s)
                   for t in r["label"])
    assert len(seen) >= 12


def test_second_call_reuses_the_suite(suite):
    before = {p: p.stat().st_mtime_ns for p in suite.rglob("*")}
    assert generate_suite(suite, "tiny", seed=0, progress=False) == suite
    assert {p: p.stat().st_mtime_ns for p in suite.rglob("*")} == before


def test_suite_of_an_older_definition_is_not_reused(tmp_path, monkeypatch):
    """A size whose definition changed (tracks, clip length) is written again, not reused."""
    from mirprobe.synth import suite as suite_module

    out = generate_suite(tmp_path / "s", "tiny", seed=0, progress=False)
    assert suite_module._matches(out, "tiny", 0)
    monkeypatch.setitem(SIZES, "tiny", {**SIZES["tiny"], "duration": 2.0})
    assert not suite_module._matches(out, "tiny", 0)
    generate_suite(out, "tiny", seed=0, progress=False)
    assert json.loads((out / "suite.json").read_text())["params"]["duration"] == 2.0


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="size"):
        generate_suite(tmp_path / "x", "huge")
    with pytest.raises(UserError, match="seed"):
        generate_suite(tmp_path / "x", "tiny", seed=-1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a synthetic suite"):
        generate_suite(tmp_path / "mine", "tiny", progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_quick_plan_is_stratified():
    tracks = plan("quick", 0)
    counts = Counter(split for split, _ in tracks)
    expect = split_counts(SIZES["quick"]["tracks"], (0.6, 0.2, 0.2))
    assert [counts[s] for s in ("train", "val", "test")] == expect
    train = [s for split, s in tracks if split == "train"]
    key_counts = Counter(s.key for s in train)
    genre_counts = Counter(s.genre for s in train)
    assert set(key_counts) == set(KEYS) and max(key_counts.values()) - min(key_counts.values()) <= 1
    assert set(genre_counts) == set(GENRES)
    assert max(genre_counts.values()) - min(genre_counts.values()) <= 1


def _spec(genre: str, instruments: tuple[str, ...], **changes):
    spec = sample_spec(np.random.default_rng(7), 0, genre, "A minor")
    gains = {i: 0.0 for i in instruments}
    return dataclasses.replace(spec, instruments=instruments, gains=gains, snr=40.0, **changes)


def test_beats_and_downbeats_match_the_drums():
    spec = _spec("rock", ("drums",), meter=4, tempo=120.0, phase=0.13, pickup=1, swing=0.5)
    out = render(spec, 6.0, SR)
    y = out.audio / 32768.0
    onsets = librosa.onset.onset_detect(y=y, sr=SR, hop_length=80, units="time", backtrack=False)
    # every annotated beat has an onset; a grid a sixteenth off (no hits there) does not
    recall = np.mean([np.min(np.abs(onsets - b)) < 0.05 for b in out.beats])
    off = np.mean([np.min(np.abs(onsets - b)) < 0.05 for b in out.beats + 0.125])
    assert recall == 1.0 and off < 0.3
    # the kick (low band) sounds on downbeats, the snare on beats 2 and 4
    low = signal.sosfilt(signal.butter(4, 100, fs=SR, output="sos"), y) ** 2

    def at(times):
        return np.array([low[int(t * SR):int((t + 0.06) * SR)].mean() for t in times])

    positions = (spec.pickup + np.arange(len(out.beats))) % 4
    assert np.array_equal(out.downbeats, out.beats[positions == 0])
    assert at(out.beats[positions == 0]).min() > at(out.beats[positions % 2 == 1]).max()


def test_tags_list_the_instruments_that_sound():
    bass = render(_spec("folk", ("bass",)), 3.0, SR)
    lead = render(_spec("folk", ("lead",)), 3.0, SR)
    drums = render(_spec("rock", ("drums",)), 3.0, SR)
    full = render(_spec("rock", ("drums", "bass", "guitar", "lead")), 3.0, SR)
    for out, spec_parts in ((bass, {"bass"}), (lead, {"lead"}), (drums, {"drums"}),
                            (full, {"drums", "bass", "guitar", "lead"})):
        assert set(out.parts) == spec_parts
        spec = _spec("folk", tuple(spec_parts))
        assert set(tags(spec, out.rms_db, out.parts)) & set(TAGS[:8]) == spec_parts

    def power_centroid(out):
        power = np.abs(librosa.stft(out.audio / 32768.0)) ** 2
        return (power.sum(1) * librosa.fft_frequencies(sr=SR)).sum() / power.sum()

    def percussive_share(out):
        harmonic, percussive = librosa.decompose.hpss(np.abs(librosa.stft(out.audio / 32768.0)))
        return (percussive ** 2).sum() / ((harmonic ** 2).sum() + (percussive ** 2).sum())

    assert power_centroid(bass) < 200 < power_centroid(lead)
    assert percussive_share(drums) > 0.4 > 0.1 > max(percussive_share(bass), percussive_share(lead))


def test_task_configs_list_the_suite_classes() -> None:
    from mirprobe.config import named_section
    from mirprobe.synth import GENRES, TAGS

    assert named_section("tagging", "tasks")[1]["classes"] == list(TAGS)
    assert named_section("genre", "tasks")[1]["classes"] == list(GENRES)

"""The scores suite: labels against music21's own reading of the scores, splits by tune,
byte-identical builds (twice, by two processes at once), audible unclipped clips, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mirprobe.errors import UserError
from mirprobe.scores import corpus as corpus_module
from mirprobe.scores import render as render_module
from mirprobe.scores.corpus import GENRES, candidates, corpus_root
from mirprobe.scores.instruments import BY_FAMILY, FAMILIES, fit_shift
from mirprobe.scores.plan import _target_keys
from mirprobe.scores.repertoire import FOLDERS, STYLES, first_bars, piece_sources
from mirprobe.scores.score import Bar, ParsedTune
from mirprobe.scores.suite import PREFIXES, generate_scores_suite
from mirprobe.tasks.key import KEYS, key_index

SPLITS = ("train", "val", "test")
SUITE_MODULE = "mirprobe.scores.suite"


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    return generate_scores_suite(tmp_path_factory.mktemp("scores") / "tiny", "tiny", seed=0,
                                 progress=False)


def _rows(folder: Path, prefix: str, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{prefix}.{split}.jsonl").read_text().splitlines()]


def _tunes(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "tunes.jsonl").read_text().splitlines()]


def _score(source: str):
    from music21 import converter

    conv = converter.Converter()
    file, number = source.split("#")
    text = (corpus_root() / file).read_bytes().decode("latin-1")
    x = [line for line in text.splitlines() if line.startswith("X:")][int(number)]
    conv.parseFileNoPickle(corpus_root() / file, number=int(x[2:].strip()), format="abc",
                           forceSource=True)
    return conv.stream


def _pieces(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "pieces.jsonl").read_text().splitlines()]


def _key_name(k) -> str:
    return f"{k.tonic.name.replace('-', 'b')} {k.mode}"


def test_keys_match_music21_key_signature_and_final_note(suite):
    from music21 import key

    tunes = _tunes(suite)
    assert tunes
    for t in tunes[:6]:
        score = _score(t["source"])
        notated = score.recurse().getElementsByClass(key.Key).first()
        assert notated.mode in ("major", "minor")
        assert key_index(t["key"]) == key_index(_key_name(notated))
        last = max(score.recurse().notes, key=lambda n: n.getOffsetInHierarchy(score))
        assert min(p.pitchClass for p in last.pitches) == notated.tonic.pitchClass
        moved = notated.transpose(t["shift"])
        assert key_index(t["clip_key"]) == key_index(_key_name(moved))
    by_clip = {c: t for t in tunes for c in t["clips"]}
    for split in SPLITS:
        for row in _rows(suite, "Key", split):
            assert row["label"] in KEYS and row["label"] == by_clip[row["audio_path"]]["clip_key"]


def test_beats_match_music21_bars_and_pickups(suite):
    """Every full bar music21 reads starts at a labelled downbeat; every note it places on a
    beat of a full bar (its ``beat`` a whole number) sounds at a labelled beat; after a pickup
    (music21's ``paddingLeft``) the first downbeat is the pickup's length in."""
    from music21 import meter

    by_clip = {c: t for t in _tunes(suite) for c in t["clips"]}
    rows = [r for s in SPLITS for r in _rows(suite, "Beat", s)]
    assert len(rows) == 15
    pickups = checked = 0
    for row in rows:
        t = by_clip[row["audio_path"]]
        part = _score(t["source"]).parts[0]
        ts = part.recurse().getElementsByClass(meter.TimeSignature).first()
        qpm = t["beats_per_minute"] * ts.beatDuration.quarterLength
        beats, downbeats = np.array(row["label"]["beat"]), np.array(row["label"]["downbeat"])
        np.testing.assert_allclose(np.diff(beats), 60 / t["beats_per_minute"], atol=1e-5)
        assert set(downbeats) <= set(beats) and len(downbeats) >= 1
        for m in part.getElementsByClass("Measure"):
            start = float(m.offset) * 60 / qpm
            if start >= row["duration"] - 1e-6 or m.barDurationProportion() != 1:
                continue
            assert np.min(np.abs(downbeats - start)) < 1e-4, (t["source"], m.number)
            for n in m.notes:
                at = start + float(n.offset) * 60 / qpm
                if not n.duration.isGrace and at < row["duration"] - 1e-6 and Fraction(n.beat).denominator == 1:
                    assert np.min(np.abs(beats - at)) < 1e-4, (t["source"], n, n.beat)
                    checked += 1
        first = part.getElementsByClass("Measure").first()
        if first.paddingLeft > 0:
            pickups += 1
            assert downbeats[0] == pytest.approx(float(first.duration.quarterLength) * 60 / qpm, abs=1e-4)
    assert pickups >= 1 and checked >= 30  # the checks above covered pickups and many notes


def test_splits_share_no_tune_or_piece_and_hold_every_dance_and_style(suite):
    tunes, pieces = _tunes(suite), _pieces(suite)
    ids = {s: {t["tune_id"] for t in tunes if t["split"] == s} for s in SPLITS}
    titles = {s: {corpus_module.tune_id(t["title"]) for t in tunes if t["split"] == s} for s in SPLITS}
    groups = {s: {p["group"] for p in pieces if p["split"] == s} for s in SPLITS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not ids[a] & ids[b] and not titles[a] & titles[b] and not groups[a] & groups[b]
    for split in SPLITS:
        assert {r["ori_uid"] for r in _rows(suite, "Key", split)} == ids[split]
        assert Counter(t["dance"] for t in tunes if t["split"] == split).keys() == set(GENRES)
        genre = _rows(suite, "Genre", split)
        counts = Counter(r["label"] for r in genre)
        assert counts.keys() == set(STYLES) and len(set(counts.values())) == 1  # balanced
        dances = {r["ori_uid"] for r in genre if r["label"] == "dance"}
        assert dances <= ids[split] and len(dances) == counts["dance"]
        assert {r["ori_uid"] for r in genre if r["label"] != "dance"} == groups[split]
        for r in _rows(suite, "Tagging", split):
            assert r["label"] and r["label"] == sorted(r["label"]) and set(r["label"]) <= set(FAMILIES)
        for r in _rows(suite, "Pitch", split):
            assert 48 <= int(r["label"]) <= 84
        assert {r["label"] for r in _rows(suite, "Instrument", split)} <= set(FAMILIES)


def test_genre_labels_match_the_corpus_and_music21s_voices(suite):
    """A genre piece's label is the corpus collection its file lies in, its voices the parts
    music21 reads in the whole file (a mass movement is read from its first bars only), its clip
    the genre row's audio."""
    from music21 import converter

    pieces = _pieces(suite)
    assert Counter(p["style"] for p in pieces) == {s: 5 for s in FOLDERS}
    rows = {r["audio_path"]: r for s in SPLITS for r in _rows(suite, "Genre", s)}
    for p in pieces:
        file, number = p["source"].split("#")
        assert file.split("/")[0] == FOLDERS[p["style"]] and rows[p["clip"]]["label"] == p["style"]
        if p["style"] != "folksong":
            score = converter.parse(corpus_root() / file, forceSource=True)
            assert len(score.parts) == p["voices"], p["source"]
        else:
            text = corpus_module.read_file(corpus_root() / file)[int(number)]
            assert f"T: {p['title']}" in text or f"T:{p['title']}" in text
            assert p["voices"] == 1


def test_first_bars_of_a_mass_movement_hold_its_first_notes():
    from music21 import converter

    src = piece_sources(corpus_root(), "renaissance")[7]
    text = (corpus_root() / src.file).read_bytes().decode("latin-1")
    whole, cut = (converter.parseData(t, format="humdrum") for t in (text, first_bars(text, 6)))
    assert len(cut.parts) == len(whole.parts) and len(cut.parts[0].getElementsByClass("Measure")) <= 7
    for a, b in zip(whole.parts, cut.parts, strict=True):
        notes = [(float(n.offset), n.pitches) for n in a.flatten().notes if n.offset < 16]
        assert notes == [(float(n.offset), n.pitches) for n in b.flatten().notes if n.offset < 16]


def test_a_voice_moves_by_the_fewest_octaves_into_the_instruments_range():
    flute, cello = BY_FAMILY["flute"][1], BY_FAMILY["string"][2]
    assert (flute.name, cello.name) == ("flute", "cello")
    assert fit_shift([40, 50], flute) == 24 and fit_shift([62, 70], flute) == 0
    assert fit_shift([80, 100], cello) == -24 and fit_shift([43, 60], cello) == 0


def test_candidates_hold_one_setting_per_tune():
    found = candidates()
    assert len({c.tune_id for c in found}) == len(found)
    assert Counter(c.genre for c in found).keys() == set(GENRES)


def test_every_key_occurs_when_tunes_allow():
    """Target keys are dealt in rounds of the 12 tonics per split and mode."""
    def tune(i: int, mode: str) -> ParsedTune:
        return ParsedTune(f"f#{i}", "t", f"t{i}", "reel", "C|", "G", 7, mode, 7,
                          ((0.0, 1.0, 67),), (Bar(0.0, 4.0, 0.0, 2.0, 2),), 1.0)

    tunes = [(s, tune(i, m)) for i, (s, m) in enumerate(
        (s, m) for s in SPLITS for m in ("major", "minor") for _ in range(12))]
    keys = {t.source: f"G {t.mode}" for _, t in tunes}
    targets = _target_keys(tunes, keys, seed=3)
    for split in SPLITS:
        assert sorted(k for (s, _), k in zip(tunes, targets, strict=True) if s == split) == sorted(KEYS)


def test_every_clip_is_audible_and_unclipped(suite):
    paths = {r["audio_path"]: r for p in PREFIXES.values() for s in SPLITS for r in _rows(suite, p, s)}
    assert len(paths) == len(list((suite / "audio").rglob("*.wav")))
    for name, row in paths.items():
        pcm, rate = sf.read(suite / name, dtype="int16")
        assert rate == 16000 and len(pcm) == row["num_samples"]
        x = pcm.astype(np.float64) / 32768
        assert 20 * np.log10(np.sqrt(np.mean(x ** 2))) > -50, name
        assert np.max(np.abs(pcm)) < 32767, name


def test_identical_when_built_again_by_two_processes_at_once(suite, tmp_path):
    out = tmp_path / "again"
    code = ("import sys; from mirprobe.scores.suite import generate_scores_suite; "
            "generate_scores_suite(sys.argv[1], 'tiny', 0, progress=False, workers=1)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(out)]) for _ in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    mine = sorted(p.relative_to(suite) for p in suite.rglob("*") if p.is_file())
    assert mine == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for rel in mine:
        assert (suite / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert not list(tmp_path.glob("again.partial-*"))


def test_second_call_reuses_the_suite(suite):
    before = {p: p.stat().st_mtime_ns for p in suite.rglob("*")}
    assert generate_scores_suite(suite, "tiny", seed=0, progress=False) == suite
    assert {p: p.stat().st_mtime_ns for p in suite.rglob("*")} == before


def test_missing_or_corrupt_soundfont_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(render_module, "SOUNDFONT_PACKAGE", "no_such_package_here")
    with pytest.raises(UserError, match="pip install") as e:
        generate_scores_suite(tmp_path / "s", "tiny", progress=False)
    assert "\n" not in str(e.value)
    bad = tmp_path / "TimGM6mb.sf2"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00sfbkLIST")  # cut short
    monkeypatch.setattr(f"{SUITE_MODULE}.soundfont_path", lambda: bad)
    with pytest.raises(UserError, match=f"{bad}.*corrupt.*pip install") as e:
        generate_scores_suite(tmp_path / "s", "tiny", progress=False)
    assert "\n" not in str(e.value)


def test_missing_or_corrupt_corpus_file_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "COLLECTIONS", ("ryansMammoth", "noSuchCollection"))
    with pytest.raises(UserError, match="noSuchCollection.*pip install"):
        corpus_root()
    monkeypatch.undo()
    root = tmp_path / "corpus"
    for name in corpus_module.COLLECTIONS:
        (root / name).mkdir(parents=True)
    (root / "ryansMammoth" / "Broken.abc").write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(UserError, match="Broken.abc.*corrupt.*pip install"):
        candidates(root)


def test_a_tune_that_fails_to_parse_is_skipped_and_listed(suite, tmp_path, monkeypatch):
    used = {t["source"]: t["dance"] for t in _tunes(suite)}
    root = tmp_path / "corpus"
    for name in corpus_module.COLLECTIONS:
        (root / name).mkdir(parents=True)
    # a tune of each dance that the suite used, and a reel whose notes music21 cannot read
    firsts = {}
    for c in candidates():
        if c.source in used:
            firsts.setdefault(c.genre, c)
    for c in firsts.values():
        (root / c.collection / f"{c.tune_id.replace(' ', '_')}.abc").write_text(c.text)
    (root / "ryansMammoth" / "AaaBroken.abc").write_text(
        "X:1\nT:Broken Reel\nR:reel\nM:C|\nL:1/8\nK:G\n|: G2 (3 [ ]] {{ :| x/0/0 |]\n")
    monkeypatch.setattr(f"{SUITE_MODULE}.candidates", lambda: candidates(root))
    monkeypatch.setitem(__import__(SUITE_MODULE, fromlist=["SIZES"]).SIZES, "tiny",
                        {"tunes_per_genre": 1, "clips_per_tune": 1, "duration": 2.0,
                         "beat_clips": 2, "notes": 11, "genre_pieces": 1, "split": (0.6, 0.2, 0.2)})
    out = generate_scores_suite(tmp_path / "s", "tiny", progress=False, workers=1)
    info = (out / "INFO.txt").read_text()
    assert "ryansMammoth/AaaBroken.abc#0: " in info
    assert {t["tune_id"] for t in _tunes(out)} == {c.tune_id for c in firsts.values()}


def test_run_fast_and_series_accept_the_scores_tasks(tmp_path, capsys):
    """`mirprobe run fast` (the default tasks: six of the scores suite, emotion from the
    synthetic one) and `mirprobe series` over two tiny MERT checkpoints, on tiny suites."""
    from mirprobe.cli import main
    from tests.fixtures_models import write_checkpoint

    tiny = ["scores.size=tiny", "synthetic.size=tiny", "progress=false", "device=cpu",
            f"work_dir={tmp_path / 'w'}"]
    assert main(["run", "fast", "models=[handcrafted]", *tiny]) == 0
    out = capsys.readouterr().out
    for task in (*PREFIXES, "synth-emotion"):
        assert task in out, task
    for step in (100, 200):
        write_checkpoint(tmp_path / "ckpts" / f"checkpoint-{step}", "postln24", seed=step)
    assert main(["series", str(tmp_path / "ckpts"), "fast", "tasks=[scores-genre,scores-beat]", *tiny]) == 0
    out = capsys.readouterr().out
    assert "scores-genre" in out and "scores-beat" in out

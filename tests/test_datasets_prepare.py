"""Dataset preparers: small fixtures in each raw layout (real file naming and annotation formats,
synthesized audio) → MARBLE v2 JSONL, checked against the rules computed independently here.

The ``make_*`` builders are also used by ``test_datasets_run.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mirprobe.datasets import prepare
from mirprobe.datasets.gtzan import GENRES
from mirprobe.datasets.mtt import TAGS
from mirprobe.errors import UserError

# Copies of the published lists beside the checkout, when present (never part of the project).
SHARED_LISTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "gtzan_filtered"


def write_audio(path: Path, seconds: float, sr: int, *, freq: float = 440.0, channels: int = 1,
                fmt: str | None = None, seed: int = 0) -> Path:
    """A tone plus a little noise (MP3 when the suffix says so)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    data = np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # one write of the finished bytes: much faster than sf.write on slow disks
    if path.suffix == ".mp3":
        sf.write(buffer, data.astype(np.float32), sr, format="MP3")
    else:
        sf.write(buffer, data.astype(np.float32), sr, format="WAV", subtype="PCM_16")
    path.write_bytes(buffer.getvalue())
    return path


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- GTZAN
def make_gtzan(raw: Path, per_genre: int = 3, seconds: float = 1.0, genres=GENRES) -> dict[str, str]:
    """Kaggle layout ``Data/genres_original/<genre>/<genre>.NNNNN.wav``; returns stem → genre."""
    labels = {}
    for g, genre in enumerate(genres):
        for i in range(per_genre):
            stem = f"{genre}.{i:05d}"
            write_audio(raw / "Data" / "genres_original" / genre / f"{stem}.wav", seconds, 22050,
                        freq=200.0 + 60 * g, seed=i)
            labels[stem] = genre
    return labels


def write_lists(folder: Path, split_of: dict[str, str]) -> Path:
    """dnn-mgr's three lists (``blues/blues.00029.wav`` per line)."""
    names = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in names.items():
        stems = [s for s, sp in split_of.items() if sp == split]
        (folder / name).write_text("".join(f"{s.split('.')[0]}/{s}.wav\n" for s in stems))
    return folder


def test_gtzan_with_split_lists(tmp_path: Path) -> None:
    labels = make_gtzan(tmp_path / "raw", per_genre=3)
    split_of = {s: ("train", "val", "test")[int(s[-1]) % 3] for s in labels}
    split_of.pop("jazz.00002")  # a clip no list names is left out
    lists = write_lists(tmp_path / "lists", split_of)
    with open(lists / "test_filtered.txt", "a") as f:
        f.write("rock/rock.00099.wav\n")  # listed, but no audio
    result = prepare("gtzan", tmp_path / "raw", tmp_path / "out", splits=lists)
    folder = tmp_path / "out" / "data" / "GTZAN"
    assert result.folder == folder
    for split in ("train", "val", "test"):
        rows = read_rows(folder / f"GTZANGenre.{split}.jsonl")
        got = {Path(r["audio_path"]).stem: r["label"] for r in rows}
        assert got == {s: labels[s] for s, sp in split_of.items() if sp == split}
        for r in rows:
            info = sf.info(r["audio_path"])
            assert (r["sample_rate"], r["num_samples"], r["channels"], r["bit_depth"]) == (
                info.samplerate, info.frames, info.channels, 16)
            assert r["duration"] == pytest.approx(info.frames / info.samplerate)
    assert any("rock.00099" in p for p in result.problems)
    manifest = json.loads((folder / "GTZANGenre.prepare.json").read_text())
    assert manifest["options"]["comparable"] is False  # lists differ from the published ones


def test_gtzan_without_lists_is_a_labelled_stratified_split(tmp_path: Path) -> None:
    labels = make_gtzan(tmp_path / "raw", per_genre=6, seconds=0.2)
    result = prepare("gtzan", tmp_path / "raw", tmp_path / "out", seed=3)
    assert any("NOT the fault-filtered split" in n for n in result.notes)
    seen = {}
    for split in ("train", "val", "test"):
        for r in read_rows(result.files[split]):
            seen[Path(r["audio_path"]).stem] = split
    assert set(seen) == set(labels)
    for genre in GENRES:  # stratified: every genre in every split
        assert {seen[s] for s in labels if labels[s] == genre} == {"train", "val", "test"}
    again = prepare("gtzan", tmp_path / "raw", tmp_path / "out2", seed=3)
    assert [read_rows(again.files[s]) for s in ("train",)][0][0]["label"] == \
        read_rows(result.files["train"])[0]["label"]
    manifest = json.loads((result.folder / "GTZANGenre.prepare.json").read_text())
    assert manifest["options"]["comparable"] is False


@pytest.mark.skipif(not SHARED_LISTS.is_dir(), reason="GTZAN filtered lists not available locally")
def test_gtzan_published_lists_give_marbles_counts(tmp_path: Path) -> None:
    make_gtzan(tmp_path / "raw", per_genre=100, seconds=0.01)
    result = prepare("gtzan", tmp_path / "raw", tmp_path / "out", splits=SHARED_LISTS)
    assert result.counts == {"train": 443, "val": 197, "test": 290}
    assert result.notes == [] and result.problems == []
    blues = [r for r in read_rows(result.files["train"]) if r["label"] == "blues"]
    assert len(blues) == 46
    manifest = json.loads((result.folder / "GTZANGenre.prepare.json").read_text())
    assert manifest["options"]["comparable"] is True


# ---------------------------------------------------------------- GTZAN-Rhythm
def write_jams(path: Path, beats: list[float], downbeats: list[float], tempo: str = "120.0",
               meter: str = "4/4") -> Path:
    """A GTZAN-Rhythm JAMS 0.2.0 file: beat and downbeat annotations plus two tag_open ones."""
    def events(times: list[float]) -> list[dict]:
        return [{"time": t, "duration": 0.0, "value": 1.0, "confidence": 1.0} for t in times]

    doc = {"annotations": [
        {"namespace": "tag_open", "data": [], "sandbox": {"ternary": "no", "swing": "no"}},
        {"namespace": "beat", "sandbox": {"annotation_type": "downbeat"}, "data": events(downbeats)},
        {"namespace": "beat", "sandbox": {"annotation_type": "beat"}, "data": events(beats)},
        {"namespace": "tag_open", "data": [], "sandbox": {"meter": meter, "tempo mean": tempo,
                                                           "tempo std": "1.0"}},
    ], "file_metadata": {"title": "", "artist": "", "duration": 30.0,
                         "identifiers": {"filename": path.name[:-5]}}, "sandbox": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def make_gtzan_rhythm(jams_dir: Path, stems: list[str], seconds: float) -> dict[str, dict]:
    labels = {}
    for i, stem in enumerate(stems):
        beats = [round(t, 6) for t in np.arange(0.1 + 0.01 * i, seconds, 0.5)]
        downbeats = beats[::4] if i % 5 else []  # some tracks have no downbeats (jazz.00018)
        write_jams(jams_dir / "GTZAN-Rhythm_v2_ismir2015_lbd" / "jams" / f"{stem}.wav.jams",
                   beats, downbeats, tempo=f"{120 + i}.5")
        labels[stem] = {"beat": beats, "downbeat": downbeats, "tempo": 120 + i + 0.5, "meter": "4/4"}
    return labels


def test_gtzan_rhythm_reads_jams_by_annotation_type(tmp_path: Path) -> None:
    stems = list(make_gtzan(tmp_path / "raw", per_genre=2, genres=GENRES[:4]))
    labels = make_gtzan_rhythm(tmp_path / "jams", stems[:-1], 1.0)  # last clip: no annotation
    split_of = {s: ("train", "val", "test")[i % 3] for i, s in enumerate(stems)}
    lists = write_lists(tmp_path / "lists", split_of)
    (tmp_path / "jams" / "broken.00000.wav.jams").write_text("{")  # not a GTZAN stem: ignored
    result = prepare("gtzan-rhythm", tmp_path / "raw", tmp_path / "out",
                     annotations=tmp_path / "jams", splits=lists)
    got = {Path(r["audio_path"]).stem: (split, r["label"])
           for split in ("train", "val", "test") for r in read_rows(result.files[split])}
    assert got == {s: (split_of[s], labels[s]) for s in stems[:-1]}
    assert any(stems[-1] in p for p in result.problems)


# ---------------------------------------------------------------- MTT
def make_mtt(raw: Path, seconds: float = 1.0) -> dict[str, tuple[str, list[str]]]:
    """``annotations_final.csv`` (TAB, quoted, CRLF) + ``mp3/<folder>/<name>.mp3``.

    Returns mp3_path → (expected split, expected label in header order)."""
    rng = np.random.default_rng(0)
    header_tags = list(TAGS[::-1]) + ["english", "duet"]  # rare extra tags come last
    folders = ["0", "3", "b", "c", "c", "d", "f", "e", "1", "2"]
    split_of = {**dict.fromkeys("0123456789ab", "train"), "c": "val", **dict.fromkeys("def", "test")}
    lines = ["\t".join(f'"{c}"' for c in ["clip_id", *header_tags, "mp3_path"])]
    expected = {}
    for i, folder in enumerate(folders):
        on = {t for t in TAGS if rng.random() < 0.5} | ({TAGS[i]} if i < 50 else set())
        if i == 9:
            on = set()  # a clip without any top-50 tag: kept with an empty label
        mp3 = f"{folder}/artist_{i}-album-{i:02d}-song-{i * 30}-{i * 30 + 29}.mp3"
        values = ["1" if t in on else "0" for t in TAGS[::-1]] + ["1" if i == 0 else "0", "0"]
        lines.append("\t".join(f'"{v}"' for v in [str(100 + i), *values, mp3]))
        write_audio(raw / "mp3" / mp3, seconds, 16000, freq=300 + 40 * i, seed=i)
        expected[mp3] = (split_of[folder], [t for t in header_tags if t in on])
    # the known corrupt clip (35644, train) is left out by default
    corrupt = "6/norine_braun-now_and_zen-08-gently-117-146.mp3"
    lines.append("\t".join(f'"{v}"' for v in ["35644", *(["1"] * 50), "0", "0", corrupt]))
    write_audio(raw / "mp3" / corrupt, seconds, 16000)
    (raw / "annotations_final.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return expected


def test_mtt_split_by_folder_and_top50_tags(tmp_path: Path) -> None:
    expected = make_mtt(tmp_path / "raw")
    result = prepare("mtt", tmp_path / "raw", tmp_path / "out")
    got = {}
    for split in ("train", "val", "test"):
        for r in read_rows(result.files[split]):
            rel = Path(r["audio_path"]).relative_to(tmp_path / "raw" / "mp3").as_posix()
            got[rel] = (split, r["label"])
            assert r["bit_depth"] is None and r["sample_rate"] == 16000 and r["channels"] == 1
            assert r["bitrate"] == pytest.approx(Path(r["audio_path"]).stat().st_size * 8 / r["duration"], rel=1e-3)
    assert got == expected
    assert any("35644" in n for n in result.notes)
    kept = prepare("mtt", tmp_path / "raw", tmp_path / "out2", keep_corrupt=True, drop_untagged=True)
    assert kept.counts["train"] == result.counts["train"]  # +1 corrupt clip, −1 untagged clip


def test_mtt_missing_csv_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(UserError, match="annotations_final.csv"):
        prepare("mtt", tmp_path / "raw", tmp_path / "out")


# ---------------------------------------------------------------- GiantSteps
def gs_artist_is_val(name: str) -> bool:
    return int(hashlib.sha1(name.lower().encode()).hexdigest(), 16) % 116 >= 100


def artists_by_split() -> tuple[list[str], list[str]]:
    names = [f"Artist {i}" for i in range(200)]
    return [n for n in names if not gs_artist_is_val(n)], [n for n in names if gs_artist_is_val(n)]


def make_giantsteps(raw: Path, seconds: float = 2.5) -> dict[int, tuple[str, str]]:
    """Both annotation repos and ``audio/<ID>.LOFI.mp3``; returns ID → (split, label)."""
    train_artists, val_artists = artists_by_split()
    mtg = raw / "giantsteps-mtg-key-dataset-fd7b8c584f7bd6d720d170c325a6d42c9bf75a6b"
    key = raw / "giantsteps-key-dataset-c8cb8aad2cb53f165be51ea099d0dc75c64a844f"
    collab = f"{val_artists[0]}, {train_artists[5]}"
    tracks = [  # ID, artist, MANUAL KEY, confidence, expected split or None (dropped)
        (5061, train_artists[0], "D# minor", "2", "train"),
        (5062, train_artists[1], "c major", "2", "train"),
        (5063, train_artists[2], "F minor / G# major", "2", None),
        (5064, train_artists[3], "A minor", "1", None),
        (10981, train_artists[4], "-", "0", None),
        (5065, val_artists[1], "G# major", "2", "val"),
        (5066, collab, "A minor", "2", "val"),
        (5067, train_artists[5], "Bb minor", "2", "val"),  # collaborator of a val artist
        (5068, train_artists[6], "E major", "2", "train"),
    ]
    flat = {"D# minor": "Eb minor", "c major": "C major", "G# major": "Ab major"}
    ann = ["ID\tMANUAL KEY\tC"] + [f"{t}\t{k}\t{c}" for t, _, k, c, _ in tracks]
    meta = ["ID\tARTIST\tSONG TITLE\tMIX\tLABEL\tBP GENRE\tBP BPM\tBP KEY"] + [
        f"{t}\t{a}\tSong {t}\tOriginal Mix\tLabel\tTechno\t128\tC maj" for t, a, *_ in tracks]
    (mtg / "annotations").mkdir(parents=True)
    (mtg / "annotations" / "annotations.txt").write_text("\n".join(ann) + "\n")
    (mtg / "annotations" / "beatport_metadata.txt").write_text("\n".join(meta) + "\n")
    (mtg / "md5").mkdir()
    (key / "annotations" / "key").mkdir(parents=True)
    (key / "md5").mkdir()
    expected = {}
    for t, _, k, _, split in tracks:
        (mtg / "md5" / f"{t}.LOFI.md5").write_text("0" * 32)
        write_audio(raw / "audio" / f"{t}.LOFI.mp3", seconds, 44100, freq=220 + t % 7 * 30, seed=t)
        if split:
            expected[t] = (split, flat.get(k, k))
    for t, label in ((1224698, "D major"), (3424038, "Eb minor"), (4452003, "G major")):
        (key / "md5" / f"{t}.LOFI.md5").write_text("0" * 32)
        (key / "annotations" / "key" / f"{t}.LOFI.key").write_text(label)
        write_audio(raw / "audio" / f"{t}.LOFI.mp3", seconds, 44100, freq=330, seed=t, channels=2)
        expected[t] = ("test", label)
    return expected


def test_giantsteps_clips_labels_and_artist_split(tmp_path: Path) -> None:
    expected = make_giantsteps(tmp_path / "raw", seconds=2.5)
    result = prepare("giantsteps", tmp_path / "raw", tmp_path / "out", clip_s=1.0, workers=1)
    got: dict[int, tuple[str, str, list[str]]] = {}
    for split in ("train", "val", "test"):
        for r in read_rows(result.files[split]):
            tid = int(r["ori_uid"])
            assert Path(r["audio_path"]).name.startswith(r["ori_uid"] + "-")
            assert (tmp_path / "out" / r["audio_path"]).is_file()  # relative to the output root
            assert r["audio_path"].startswith("data/GS/giantsteps_clips/wav/")
            assert (r["sample_rate"], r["num_samples"], r["channels"], r["bit_depth"]) == (44100, 44100, 1, 16)
            got.setdefault(tid, (split, r["label"], []))[2].append(Path(r["audio_path"]).stem)
    assert {t: g[:2] for t, g in got.items()} == expected
    assert all(sorted(g[2]) == [f"{t:07d}-0", f"{t:07d}-1"] for t, g in got.items())  # 2.5 s → 2 clips
    # a clip is the source segment, mixed to mono
    source, _ = sf.read(tmp_path / "raw" / "audio" / "1224698.LOFI.mp3", dtype="float32", always_2d=True)
    clip, _ = sf.read(tmp_path / "out" / "data/GS/giantsteps_clips/wav/1224698-1.wav", dtype="float32")
    np.testing.assert_allclose(clip, source.mean(1)[44100:88200], atol=2e-4)
    again = prepare("giantsteps", tmp_path / "raw", tmp_path / "out", clip_s=1.0, workers=1)
    assert again.counts == result.counts


# ---------------------------------------------------------------- Emomusic
def emo_artist_is_val(artist: str) -> bool:
    name = " ".join("".join(c for c in artist.lower() if c.isascii() and (c.isalpha() or c.isspace())).split())
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10 >= 8


def make_emomusic(raw: Path, seconds: float = 1.0) -> dict[int, tuple[str, list[float]]]:
    """CSVs (stray spaces and tabs included) + ``clips_45seconds/<id>.mp3``; returns id → (split, raw target)."""
    words = ["".join(chr(97 + (i // 26 ** k) % 26) for k in range(3)) for i in range(60)]
    names = [f"The  {w.title()} Band!" for w in words]  # punctuation and spaces are normalised
    val = [n for n in names if emo_artist_is_val(n)][:3]
    train = [n for n in names if not emo_artist_is_val(n)][:6]
    songs = [(2 + 3 * i, a, "development") for i, a in enumerate(train + val)]
    songs += [(100 + i, f"Tester {i}", "evaluation") for i in range(4)]
    rng = np.random.default_rng(1)
    info = ["song_id,file_name,Artist,Song title,start of the segment (min.sec),"
            "end of the segment (min.sec),Genre,Mediaeval 2013 set"]
    static = ["song_id,mean_arousal,std_arousal,mean_valence,std_valence"]
    expected = {}
    for sid, artist, subset in songs:
        arousal, valence = (round(float(v), 2) for v in rng.uniform(1, 9, 2))
        info.append(f"{sid},{sid}.mp3,{artist}\t,Song {sid},0.48,1.33,Blues, {subset}")
        static.append(f"{sid}, {arousal},0.9,{valence} ,0.6")
        write_audio(raw / "clips_45seconds" / f"{sid}.mp3", seconds, 44100, channels=2, seed=sid)
        split = "test" if subset == "evaluation" else ("val" if artist in val else "train")
        expected[sid] = (split, [arousal, valence])
    (raw / "songs_info.csv").write_text("\n".join(info) + "\n")
    (raw / "static_annotations.csv").write_text("\n".join(static) + "\n")
    write_audio(raw / "clips_45seconds" / "999.mp3", seconds, 44100)  # not annotated: ignored
    return expected


def test_emomusic_split_and_zscored_targets(tmp_path: Path) -> None:
    expected = make_emomusic(tmp_path / "raw")
    result = prepare("emomusic", tmp_path / "raw", tmp_path / "out")
    dev = np.array([v for s, v in expected.values() if s != "test"])
    mean, std = dev.mean(0), dev.std(0)
    got = {int(Path(r["audio_path"]).stem): (split, r["label"])
           for split in ("train", "val", "test") for r in read_rows(result.files[split])}
    assert set(got) == set(expected)
    for sid, (split, raw_target) in expected.items():
        assert got[sid][0] == split
        np.testing.assert_allclose(got[sid][1], (np.array(raw_target) - mean) / std, rtol=1e-9)


def test_unknown_dataset_or_option_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean 'gtzan'"):
        prepare("gtzn", tmp_path, tmp_path / "out")
    with pytest.raises(UserError, match="'emomusic' takes no --splits"):
        prepare("emomusic", tmp_path, tmp_path / "out", splits=tmp_path)


def test_cli_prepare(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mirprobe.cli import main

    make_gtzan(tmp_path / "raw", per_genre=5, seconds=0.1, genres=("blues", "rock"))
    assert main(["datasets", "prepare", "gtzan", "--raw", str(tmp_path / "raw"),
                 "--out", str(tmp_path / "out"), "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "NOT the fault-filtered split" in text and "data_root=" in text
    assert len(read_rows(tmp_path / "out/data/GTZAN/GTZANGenre.train.jsonl")) == 4  # 2 × round(0.476·5)
    assert main(["datasets", "prepare", "gtzan", "--raw", str(tmp_path / "none"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err

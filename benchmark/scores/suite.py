"""Write the scores suite: real music from music21's corpus played by sampled instruments.

Layout of ``<out_dir>``::

    audio/clips/000000.wav ...   16-bit PCM mono, 16 kHz: clips of dance tunes
    audio/genre/000000.wav ...   clips of the genre task's chorales, masses and songs
    audio/notes/000000.wav ...   single notes
    {Key,Tagging}.{train,val,test}.jsonl         every clip of a tune (``ori_uid``: the tune)
    Genre.{train,val,test}.jsonl                 the genre clips and as many dance tunes' first
                                                 clips (``ori_uid``: the piece's group)
    Beat.{train,val,test}.jsonl                  the first clips of each split
    {Pitch,Instrument}.{train,val,test}.jsonl    every note
    tunes.jsonl                  each tune used: source, title, split, key, shift, tempo, ensemble,
                                 its clips
    pieces.jsonl                 each genre piece used: source, title, group, style, split, shift,
                                 tempo, ensemble, its clip
    INFO.txt                     sources, counts, and every tune left out with the reason
    suite.json                   generator version, size, seed, sources, counts, classes

Made once per work folder like the synthetic suite (:func:`mirprobe.suites.make_once`): under
a lock, written beside the final folder and renamed into place; a suite whose ``suite.json``
has the same version, size, seed, parameters, music21 version and SoundFont checksum is reused. The same seed
gives byte-identical files whatever the number of worker processes.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mirprobe.errors import UserError
from mirprobe.scores import work
from mirprobe.scores.corpus import GENRES, Candidate, candidates, corpus_root, describe_sources
from mirprobe.scores.instruments import FAMILIES
from mirprobe.scores.labels import KEYS, irregular, key_of, why_no_key
from mirprobe.scores.plan import (
    PITCH_RANGE,
    TEMPI,
    Clip,
    GenreClip,
    SingleNote,
    dance_clips,
    plan_clips,
    plan_genre,
    plan_notes,
    split_tunes,
)
from mirprobe.scores.render import SAMPLE_RATE, SOUNDFONT, Note, read_soundfont, soundfont_path
from mirprobe.scores.repertoire import BPM, FOLDERS, STYLES, Piece, PieceSource, piece_sources
from mirprobe.scores.score import ParsedTune
from mirprobe.suites import (
    SPLITS,
    default_workers,
    make_once,
    map_jobs,
    read_meta,
    split_counts,
    worker_pool,
    write_jsonl,
)

GENERATOR = "mirprobe.scores"
VERSION = 2  # 2: genre is the repertoire (chorale, dance, folk song, Renaissance mass)
PREFIXES = {"scores-key": "Key", "scores-genre": "Genre", "scores-tagging": "Tagging",
            "scores-beat": "Beat", "scores-pitch": "Pitch", "scores-instrument": "Instrument"}
NOTE_ON_S, NOTE_CLIP_S = 1.0, 1.5  # a single note is held 1 s; its clip keeps 0.5 s of release

#: One dict per size: tunes per dance, clips per tune and their length (s), clips listed for
#: Beat, single notes, pieces per style of the genre task (one clip each), split fractions (a
#: test split of 30 %: intervals narrow enough to separate models).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"tunes_per_genre": 5, "clips_per_tune": 1, "duration": 3.0, "beat_clips": 15,
             "notes": 33, "genre_pieces": 5, "split": (0.6, 0.2, 0.2)},
    # The default run's: three models x these six tasks and synth-emotion within its time budget
    # (frame-level beat probes cost the most: 40 clips).
    "quick": {"tunes_per_genre": 32, "clips_per_tune": 1, "duration": 5.0, "beat_clips": 40,
              "notes": 220, "genre_pieces": 60, "split": (0.5, 0.2, 0.3)},
    # Tunes are short as notated (repeats not played): two 5 s clips is what most of them hold,
    # and the corpus's 47 strathspeys cap every dance at about 30 tunes.
    "large": {"tunes_per_genre": 40, "clips_per_tune": 2, "duration": 5.0, "beat_clips": 200,
              "notes": 2200, "genre_pieces": 80, "split": (0.5, 0.2, 0.3)},
}


def generate_scores_suite(out_dir: Path, size: str = "quick", seed: int = 0,
                          progress: bool = True, workers: int | None = None) -> Path:
    """Write (or reuse) the scores suite of ``size`` and ``seed`` in ``out_dir``; returns it.

    ``workers``: processes parsing and rendering (default: one per CPU for suites of over 40
    clips and notes), started with ``spawn``: a script calling this at import time needs the
    ``if __name__ == "__main__":`` guard, or ``workers=1``."""
    if size not in SIZES:
        raise UserError(f"unknown scores suite size {size!r}; use one of: {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"scores suite seed must be a non-negative integer, got {seed!r}")
    font = soundfont_path()
    checksum = hashlib.sha256(read_soundfont(str(font))).hexdigest()
    corpus_root()  # a missing corpus fails here, before waiting for any lock
    identity = _identity(size, int(seed), checksum)
    return make_once(out_dir, lambda folder: _matches(folder, identity),
                     lambda folder: _write(folder, identity, str(font), progress, workers),
                     "scores suite")


def _identity(size: str, seed: int, checksum: str) -> dict[str, Any]:
    params = json.loads(json.dumps(SIZES[size]))  # as written (tuples become lists)
    return {"generator": GENERATOR, "version": VERSION, "size": size, "seed": seed,
            "params": params, "corpus": describe_sources()["corpus"], "soundfont_sha256": checksum}


def _matches(folder: Path, identity: dict[str, Any]) -> bool:
    meta = read_meta(folder)
    return bool(meta) and all(meta.get(k) == v for k, v in identity.items())


def _write(folder: Path, identity: dict[str, Any], font: str, progress: bool,
           workers: int | None) -> None:
    params, seed = identity["params"], identity["seed"]
    for sub in ("clips", "genre", "notes"):
        (folder / "audio" / sub).mkdir(parents=True)
    expected = (len(GENRES) * params["tunes_per_genre"] * params["clips_per_tune"] + params["notes"]
                + len(FOLDERS) * params["genre_pieces"])
    workers = default_workers(expected, threshold=40) if workers is None else workers
    with worker_pool(workers) as pool:
        chosen, skipped = choose_tunes(params, seed, pool, progress)
        tunes = split_tunes(chosen, tuple(params["split"]))
        _check_splits([(s, t.tune_id) for s, t in tunes])
        keys = {t.source: key_of(t) or "" for _, t in tunes}
        clips = plan_clips(tunes, keys, params, seed)
        picked, left_out = choose_pieces(params, seed, pool, progress)
        skipped += left_out
        pieces = split_tunes(picked, tuple(params["split"]))
        _check_splits([(s, p.group) for s, p in pieces])
        genre = plan_genre(pieces, params, seed)
        counts = split_counts(len(picked[STYLES[0]]), params["split"])
        dances = dance_clips(clips, counts)
        notes = plan_notes(params, seed)
        jobs = [(c.notes(seed), c.seconds, c.rms_db, font, str(folder / c.name)) for c in clips]
        jobs += [(g.notes(seed), g.seconds, g.playing.rms_db, font, str(folder / g.name)) for g in genre]
        jobs += [([Note(0.0, NOTE_ON_S, n.pitch, n.velocity, n.instrument.program)], NOTE_CLIP_S,
                  n.rms_db, font, str(folder / n.name)) for n in notes]
        levels = map_jobs(work.render, jobs, pool, f"rendering {identity['size']} scores suite",
                          "clip", progress)
    _check_levels(jobs, levels)
    counts = _write_jsonl(folder, clips, genre, dances, notes, params)
    _write_tunes(folder, tunes, clips, keys)
    _write_pieces(folder, genre)
    _write_info(folder, identity, counts, skipped)
    meta = {**identity, "sources": {**describe_sources(), "soundfont": SOUNDFONT,
                                    "genre": {s: FOLDERS.get(s, "the dance tunes") for s in STYLES}},
            "sample_rate": SAMPLE_RATE, "tunes": len(tunes), "clips": len(clips),
            "genre_clips": len(genre), "notes": len(notes), "counts": counts,
            "skipped": len(skipped),
            "classes": {"Key": list(KEYS), "Genre": list(STYLES), "Tagging": list(FAMILIES),
                        "Instrument": list(FAMILIES),
                        "Pitch": [str(p) for p in range(PITCH_RANGE[0], PITCH_RANGE[1] + 1)]}}
    (folder / "suite.json").write_text(json.dumps(meta, indent=2) + "\n")


def choose_tunes(params: dict[str, Any], seed: int, pool: ProcessPoolExecutor | None,
                 progress: bool) -> tuple[dict[str, list[ParsedTune]], list[tuple[str, str]]]:
    """``tunes_per_genre`` usable tunes of each dance (fewer, the same for every dance, when the
    corpus runs out), in a seeded order; and (source, reason) of every tune parsed and left out."""
    need = params["clips_per_tune"] * params["duration"]
    rng = np.random.default_rng([seed, 0, 0])
    by_genre: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates():
        by_genre[c.genre].append(c)
    queue = {g: [by_genre[g][i] for i in rng.permutation(len(by_genre[g]))] for g in GENRES}
    return _choose(queue, params["tunes_per_genre"], work.parse, lambda t: _unusable(t, need),
                   pool, progress, "tune")


def choose_pieces(params: dict[str, Any], seed: int, pool: ProcessPoolExecutor | None,
                  progress: bool) -> tuple[dict[str, list[Piece]], list[tuple[str, str]]]:
    """``genre_pieces`` usable pieces of each style but dance (the first of each group: a
    chorale's, its melody, is known once parsed), as :func:`choose_tunes` chooses tunes."""
    rng = np.random.default_rng([seed, 8, 0])
    root = corpus_root()
    queue = {}
    for style in FOLDERS:
        found = piece_sources(root, style)
        queue[style] = _first_of_groups([found[i] for i in rng.permutation(len(found))])
    seen: set[str] = set()

    def unusable(piece: Piece) -> str:
        span = params["duration"] * BPM[piece.style][1] * piece.beat / 60.0
        if piece.group in seen:
            return f"a setting of {piece.group!r} is used already"
        seen.add(piece.group)
        return f"shorter than {params['duration']:g} s at its fastest tempo" if piece.length < span else ""

    return _choose(queue, params["genre_pieces"], work.parse_piece_job, unusable, pool, progress, "piece")


def _first_of_groups(sources: list[PieceSource]) -> list[PieceSource]:
    """The first source of each group known before parsing (a mass, a song title)."""
    seen: set[str] = set()
    out = []
    for src in sources:
        if not src.group or src.group not in seen:
            seen.add(src.group)
            out.append(src)
    return out


def _choose(queue: dict[str, list[Any]], want: int, parse: Callable[[Any], Any],
            unusable: Callable[[Any], str], pool: ProcessPoolExecutor | None, progress: bool,
            unit: str) -> tuple[dict[str, list[Any]], list[tuple[str, str]]]:
    """The first ``want`` usable items of each class's queue (the same number for every class).

    Candidates are parsed in rounds (what is still missing, plus a margin) and taken in their
    queue's order, so the choice does not depend on the number of workers."""
    chosen: dict[str, list[Any]] = {g: [] for g in queue}
    skipped: list[tuple[str, str]] = []
    while True:
        batch = [(g, c) for g in queue for c in queue[g][:_margin(want - len(chosen[g]))]]
        if not batch:
            break
        parsed = map_jobs(parse, [c for _, c in batch], pool, f"parsing {unit}s", unit, progress,
                          chunksize=4)
        for (g, c), item in zip(batch, parsed, strict=True):
            queue[g].remove(c)
            reason = item if isinstance(item, str) else unusable(item)
            if reason:
                skipped.append((c.source, reason))
            elif len(chosen[g]) < want:
                chosen[g].append(item)
    n = min(len(v) for v in chosen.values())
    return {g: v[:n] for g, v in chosen.items()}, skipped


def _margin(missing: int) -> int:
    return missing + missing // 2 + 2 if missing > 0 else 0  # about a third are left out


def _unusable(tune: ParsedTune, seconds: float) -> str:
    if key_of(tune) is None:
        return f"key left out: {why_no_key(tune)}"
    fastest = TEMPI[tune.genre][1] * tune.bars[0].beat  # quarter notes a minute
    span = seconds * fastest / 60.0  # the most quarter notes its clips can hold
    if irregular(tune, span):
        return f"beats left out: {irregular(tune, span)}"
    if tune.length < span:
        return f"shorter than {seconds:g} s at its fastest tempo"
    return ""


def _check_splits(items: list[tuple[str, str]]) -> None:
    """A tune (and every setting of it), a piece's group, lies in one split only."""
    where: dict[str, set[str]] = defaultdict(set)
    for split, ident in items:
        where[ident].add(split)
    shared = [ident for ident, splits in where.items() if len(splits) > 1]
    if shared:
        raise RuntimeError(f"tunes or pieces in more than one split: {shared[:5]}")


def _check_levels(jobs: list[Any], levels: list[dict[str, float]]) -> None:
    """Every clip is audible (RMS above -50 dBFS) and unclipped (peak below 0 dBFS)."""
    for job, lv in zip(jobs, levels, strict=True):
        if not (lv["rms_db"] > -50.0 and lv["peak_db"] < 0.0):
            raise RuntimeError(f"{job[-1]}: RMS {lv['rms_db']} dBFS, peak {lv['peak_db']} dBFS")


def _row(name: str, label: Any, seconds: float, uid: str | None = None) -> dict[str, Any]:
    n = round(seconds * SAMPLE_RATE)
    row = {"audio_path": name, "label": label, "duration": n / SAMPLE_RATE,
           "sample_rate": SAMPLE_RATE, "num_samples": n, "bit_depth": 16, "channels": 1}
    return {**row, "ori_uid": uid} if uid else row


def _write_jsonl(folder: Path, clips: list[Clip], genre: list[GenreClip], dances: list[Clip],
                 notes: list[SingleNote], params: dict[str, Any]) -> dict[str, dict[str, int]]:
    lines: dict[str, list[dict[str, Any]]] = {f"{p}.{s}": [] for p in PREFIXES.values() for s in SPLITS}
    quota = dict(zip(SPLITS, split_counts(params["beat_clips"], params["split"]), strict=True))
    for d in dances:
        lines[f"Genre.{d.split}"].append(_row(d.name, "dance", d.seconds, d.tune.tune_id))
    for g in genre:
        lines[f"Genre.{g.split}"].append(_row(g.name, g.piece.style, g.seconds, g.piece.group))
    for c in clips:
        uid = c.tune.tune_id
        for prefix, label in (("Key", c.key), ("Tagging", sorted({i.family for i in c.ensemble}))):
            lines[f"{prefix}.{c.split}"].append(_row(c.name, label, c.seconds, uid))
        if len(lines[f"Beat.{c.split}"]) < quota[c.split]:
            beats, downbeats = c.beats()
            label = {"beat": beats, "downbeat": downbeats, "tempo": round(c.bpm, 3),
                     "meter": c.tune.meter}
            lines[f"Beat.{c.split}"].append(_row(c.name, label, c.seconds, uid))
    for n in notes:
        lines[f"Pitch.{n.split}"].append(_row(n.name, str(n.pitch), NOTE_CLIP_S))
        lines[f"Instrument.{n.split}"].append(_row(n.name, n.instrument.family, NOTE_CLIP_S))
    write_jsonl(folder, lines)
    return {p: {s: len(lines[f"{p}.{s}"]) for s in SPLITS} for p in PREFIXES.values()}


def _write_tunes(folder: Path, tunes: list[tuple[str, ParsedTune]], clips: list[Clip],
                 keys: dict[str, str]) -> None:
    of_tune: dict[str, list[Clip]] = defaultdict(list)
    for c in clips:
        of_tune[c.tune.source].append(c)
    rows = []
    for split, t in tunes:
        c = of_tune[t.source][0]
        rows.append({"split": split, "source": t.source, "title": t.title, "tune_id": t.tune_id,
                     "dance": t.genre, "meter": t.meter, "key": keys[t.source], "shift": c.shift,
                     "clip_key": c.key, "beats_per_minute": round(c.bpm, 3),
                     "ensemble": [i.name for i in c.ensemble], "rms_db": round(c.rms_db, 3),
                     "clips": [x.name for x in of_tune[t.source]]})
    (folder / "tunes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _write_pieces(folder: Path, genre: list[GenreClip]) -> None:
    rows = [{"split": g.split, "source": g.piece.source, "title": g.piece.title, "group": g.piece.group,
             "style": g.piece.style, "voices": len(g.piece.parts), "shift": g.playing.shift,
             "beats_per_minute": round(g.playing.bpm, 3),
             "ensemble": [i.name for i in g.playing.ensemble], "rms_db": round(g.playing.rms_db, 3),
             "clip": g.name} for g in genre]
    (folder / "pieces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _write_info(folder: Path, identity: dict[str, Any], counts: dict[str, dict[str, int]],
                skipped: list[tuple[str, str]]) -> None:
    src = describe_sources()
    lines = [f"mirprobe scores suite, size {identity['size']}, seed {identity['seed']}",
             f"tunes: {', '.join(src['collections'])} in music21's corpus ({src['corpus']})",
             f"genre pieces: {', '.join(f'{k} ({v})' for k, v in FOLDERS.items())} in music21's corpus",
             f"instruments: {SOUNDFONT} (sha256 {identity['soundfont_sha256']})", "",
             "items per split (train / val / test):"]
    lines += [f"  {p}: {' / '.join(str(c[s]) for s in SPLITS)}" for p, c in counts.items()]
    lines += ["", f"tunes and pieces parsed and left out ({len(skipped)}):"]
    lines += [f"  {source}: {reason}" for source, reason in skipped] or ["  none"]
    (folder / "INFO.txt").write_text("\n".join(lines) + "\n")

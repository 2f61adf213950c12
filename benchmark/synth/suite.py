"""Write the synthetic suite: audio files plus MARBLE-v2 JSONL for five tasks.

Layout of ``<out_dir>``::

    audio/000000.wav ...              16-bit PCM mono, 16 kHz, one file per track of the pool
    {Key,Genre,Tagging,Emotion}.{train,val,test}.jsonl   the whole pool, same order and split
    Beat.{train,val,test}.jsonl       the first tracks of each split (frame features are large)
    specs.jsonl                       the song spec behind every track (for inspection)
    suite.json                        generator version, size, seed, counts, classes, label rules

The folder is written under ``<out_dir>.partial-<pid>`` and renamed when complete; a folder
whose ``suite.json`` has the same version, size and seed is reused as is. One process writes it
while holding ``<out_dir>.lock`` (others wait, then reuse it; the holder first removes the
``.partial-*`` folders that killed writers left). The same seed gives byte-identical files
whatever the number of worker processes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mirprobe.errors import UserError
from mirprobe.suites import (
    SPLITS,
    deal,
    default_workers,
    make_once,
    map_jobs,
    read_meta,
    split_counts,
    worker_pool,
    write_jsonl,
)
from mirprobe.synth.labels import DESCRIPTION, TAGS, emotion_raw, standardise, tags
from mirprobe.synth.render import render
from mirprobe.synth.spec import GENRES, KEYS, SongSpec, sample_spec
from mirprobe.workfolder import WorkFolder

GENERATOR = "mirprobe.synth"
VERSION = 1
SAMPLE_RATE = 16000
#: Task plugin name -> JSONL file prefix.
PREFIXES = {"key": "Key", "genre": "Genre", "tagging": "Tagging", "emotion": "Emotion",
            "beat": "Beat"}

#: One dict per size: pool size, clip length (s), tracks listed for Beat, split fractions.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"tracks": 48, "duration": 3.0, "beat_tracks": 24, "split": (0.6, 0.2, 0.2)},
    # The default run's emotion task (its other tasks come from the scores suite).
    "small": {"tracks": 120, "duration": 5.0, "beat_tracks": 24, "split": (0.6, 0.2, 0.2)},
    # The default run's suite before the scores suite: three models x five tasks (MusiCNN
    # included) ran in about 1.5 minutes on 2 CPU cores.
    "quick": {"tracks": 360, "duration": 5.0, "beat_tracks": 60, "split": (0.6, 0.2, 0.2)},
    "large": {"tracks": 2500, "duration": 6.0, "beat_tracks": 500, "split": (0.6, 0.2, 0.2)},
}


def default_dir(work_dir: Path, size: str, seed: int) -> Path:
    """Where a suite lives inside the work folder: ``synthetic/<size>-seed<seed>``."""
    return WorkFolder(Path(work_dir)).suite("synthetic", size, seed)


def generate_suite(out_dir: Path, size: str = "quick", seed: int = 0, progress: bool = True,
                   workers: int | None = None) -> Path:
    """Generate (or reuse) the suite of ``size`` and ``seed`` in ``out_dir``; returns ``out_dir``.

    ``workers``: processes rendering audio (default: one per CPU for pools over 100 tracks).
    They are started with ``spawn`` (safe next to torch), so a script that calls this at import
    time needs the usual ``if __name__ == "__main__":`` guard, or ``workers=1``.
    """
    if size not in SIZES:
        raise UserError(f"unknown synthetic suite size {size!r}; use one of: {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"synthetic suite seed must be a non-negative integer, got {seed!r}")
    return make_once(out_dir, lambda folder: _matches(folder, size, int(seed)),
                     lambda folder: _write(folder, size, int(seed), progress, workers),
                     "synthetic suite")


def plan(size: str, seed: int) -> list[tuple[str, SongSpec]]:
    """(split, spec) for every track of the pool, in file order (train, then val, then test).

    Keys and genres are dealt in shuffled rounds within each split, so every split holds them
    as evenly as its length allows (and a train split of at least 24 tracks holds every key).
    """
    params = SIZES[size]
    counts = split_counts(params["tracks"], params["split"])
    rng = np.random.default_rng([seed, 1, 0])
    out: list[tuple[str, SongSpec]] = []
    for split, n in zip(SPLITS, counts, strict=True):
        keys = deal(KEYS, n, rng)
        genres = deal(tuple(GENRES), n, rng)
        for key, genre in zip(keys, genres, strict=True):
            i = len(out)
            out.append((split, sample_spec(np.random.default_rng([seed, 0, i]), i, genre, key)))
    return out


def _render_one(job: tuple[SongSpec, float, str]) -> dict[str, Any]:
    """Render one track and write its WAV; returns what the labels need."""
    spec, duration, path = job
    out = render(spec, duration, SAMPLE_RATE)
    sf.write(path, out.audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return {"rms_db": out.rms_db, "beats": out.beats.tolist(), "downbeats": out.downbeats.tolist(),
            "num_samples": len(out.audio), "parts": sorted(out.parts)}


def _write(folder: Path, size: str, seed: int, progress: bool, workers: int | None) -> None:
    params = SIZES[size]
    tracks = plan(size, seed)
    (folder / "audio").mkdir(parents=True)
    jobs = [(spec, params["duration"], str(folder / "audio" / _name(spec))) for _, spec in tracks]
    if workers is None:
        workers = default_workers(len(jobs))
    with worker_pool(workers) as pool:
        rendered = map_jobs(_render_one, jobs, pool, f"synthesising {size} suite", "track", progress)
    raw = np.array([emotion_raw(s, r["rms_db"], "drums" in r["parts"]) for (_, s), r in zip(tracks, rendered, strict=True)])
    train = raw[[split == "train" for split, _ in tracks]]
    counts = _write_jsonl(folder, tracks, rendered, standardise(raw, train), params)
    _write_specs(folder, tracks, rendered)
    meta = {"generator": GENERATOR, "version": VERSION, "size": size, "seed": seed,
            "params": params, "sample_rate": SAMPLE_RATE, "tracks": len(tracks), "counts": counts,
            "classes": {"Key": list(KEYS), "Genre": list(GENRES), "Tagging": list(TAGS)},
            "emotion_train_stats": {"mean": train.mean(axis=0).tolist(),
                                    "std": train.std(axis=0).tolist(),
                                    "dimensions": ["arousal", "valence"]},
            "labels": DESCRIPTION}
    (folder / "suite.json").write_text(json.dumps(meta, indent=2) + "\n")


def _name(spec: SongSpec) -> str:
    return f"{spec.index:06d}.wav"


def _write_jsonl(folder: Path, tracks: list[tuple[str, SongSpec]], rendered: list[dict[str, Any]],
                 emotion: np.ndarray, params: dict[str, Any]) -> dict[str, dict[str, int]]:
    beat_quota = dict(zip(SPLITS, split_counts(params["beat_tracks"], params["split"]), strict=True))
    lines: dict[str, list[dict[str, Any]]] = {f"{p}.{s}": [] for p in PREFIXES.values() for s in SPLITS}
    seen = dict.fromkeys(SPLITS, 0)
    for i, ((split, spec), r) in enumerate(zip(tracks, rendered, strict=True)):
        n = r["num_samples"]
        common = {"duration": n / SAMPLE_RATE, "sample_rate": SAMPLE_RATE, "num_samples": n,
                  "bit_depth": 16, "channels": 1}
        labels = {"Key": spec.key, "Genre": spec.genre, "Tagging": tags(spec, r["rms_db"], r["parts"]),
                  "Emotion": [round(float(v), 6) for v in emotion[i]]}
        if seen[split] < beat_quota[split]:
            labels["Beat"] = {"beat": r["beats"], "downbeat": r["downbeats"], "tempo": spec.tempo,
                              "meter": f"{spec.meter}/4"}
        seen[split] += 1
        for prefix, label in labels.items():
            row = {"audio_path": f"audio/{_name(spec)}", "label": label, **common}
            lines[f"{prefix}.{split}"].append(row)
    write_jsonl(folder, lines)
    return {p: {s: len(lines[f"{p}.{s}"]) for s in SPLITS} for p in PREFIXES.values()}


def _write_specs(folder: Path, tracks: list[tuple[str, SongSpec]],
                 rendered: list[dict[str, Any]]) -> None:
    rows = [json.dumps({"split": split, "audio_path": f"audio/{_name(spec)}", **spec.to_dict(),
                        "rms_db": round(r["rms_db"], 3), "parts": r["parts"]})
            for (split, spec), r in zip(tracks, rendered, strict=True)]
    (folder / "specs.jsonl").write_text("".join(r + "\n" for r in rows))


def _matches(folder: Path, size: str, seed: int) -> bool:
    meta = read_meta(folder)
    params = json.loads(json.dumps(SIZES[size]))  # as written (tuples become lists)
    return bool(meta) and (meta.get("generator"), meta.get("version"), meta.get("size"),
                           meta.get("seed"), meta.get("params")) == (GENERATOR, VERSION, size, seed,
                                                                     params)

"""Emomusic (MediaEval 2013 "1000 songs") → ``data/EMO/EMO.{train,val,test}.jsonl``.

Raw layout (``--raw``): ``clips_45seconds/<song_id>.mp3`` (from ``clips_45sec.tar.gz``) and the
annotation CSVs ``songs_info.csv`` and ``static_annotations.csv`` (from
``annotations.tar.gz``), anywhere under ``--raw``. Rules (JukeMIR's, which MARBLE copies):

- the songs are those of the CSVs (744), not of the audio folder;
- test: the ``evaluation`` set of ``Mediaeval 2013 set`` (125 songs, the official split);
  development songs are split by artist (lower-cased, ASCII letters and spaces only,
  whitespace collapsed): val when ``int(sha1(artist), 16) % 10 >= 8`` (504 / 115 songs);
- label: ``[mean_arousal, mean_valence]`` z-scored with the mean and population standard
  deviation of all development songs (MARBLE's training data before its train/val split),
  applied to every split.

Rows point at the MP3s as they are (soundfile decodes MP3; MARBLE converts them to WAV).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mirprobe.datasets.common import DatasetWriter, PrepareResult, check_raw, find_file
from mirprobe.errors import UserError

FOLDER, PREFIX = "data/EMO", "EMO"


def read_csv(path: Path, needed: tuple[str, ...]) -> pd.DataFrame:
    """A comma-separated table with stripped values and lower-cased, stripped column names."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:
        raise UserError(f"{path}: cannot read as CSV ({e})") from e
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)}; expected Emomusic's "
                        f"annotation file (columns {', '.join(needed)})")
    table = table.apply(lambda col: col.str.strip())
    table["song_id"] = table["song_id"].astype(int)
    return table.set_index("song_id")


def artist_split(artist: str) -> str:
    """``train``/``val`` of a development song by JukeMIR's artist hash."""
    name = "".join(c for c in artist.lower() if ord(c) < 128 and (c.isalpha() or c.isspace()))
    name = " ".join(name.split())
    return "val" if int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10 >= 8 else "train"


def find_clips(raw: Path) -> dict[int, Path]:
    """MP3s named by song id (``5.mp3``), preferring a ``clips_45seconds`` folder."""
    found: dict[int, Path] = {}
    for path in sorted(raw.rglob("*.mp3"), key=lambda p: p.parent.name != "clips_45seconds"):
        if re.fullmatch(r"\d+", path.stem) and int(path.stem) not in found:
            found[int(path.stem)] = path
    return found


def prepare(raw: Path, out: Path, **_: Any) -> PrepareResult:
    """Write Emomusic JSONL under ``<out>/data/EMO/``."""
    raw = check_raw(raw)
    info = read_csv(find_file(raw, "songs_info.csv", "Emomusic's song list"),
                    ("song_id", "artist", "mediaeval 2013 set"))
    static = read_csv(find_file(raw, "static_annotations.csv", "Emomusic's static annotations"),
                      ("song_id", "mean_arousal", "mean_valence"))
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, PREFIX)
    songs = [s for s in info.index if s in static.index]
    for s in info.index.difference(static.index):
        writer.problem(f"song {s}: in songs_info.csv but not in static_annotations.csv; left out")
    values = static.loc[songs, ["mean_arousal", "mean_valence"]].astype(float).to_numpy()
    is_test = (info.loc[songs, "mediaeval 2013 set"].str.lower() == "evaluation").to_numpy()
    if is_test.all() or not is_test.any():
        raise UserError("songs_info.csv: the 'Mediaeval 2013 set' column needs both "
                        "'development' and 'evaluation' songs")
    mean, std = values[~is_test].mean(0), values[~is_test].std(0)
    targets = (values - mean) / np.where(std > 0, std, 1.0)
    clips = find_clips(raw)
    for song, test, target in zip(songs, is_test, targets, strict=True):
        split = "test" if test else artist_split(info.loc[song, "artist"])
        if song not in clips:
            writer.problem(f"song {song} ({split}): no {song}.mp3 under {raw}; left out")
            continue
        writer.add(split, clips[song], [float(v) for v in target], source=f"song {song}")
    writer.note(f"targets z-scored with development statistics: arousal {mean[0]:.6f} ± "
                f"{std[0]:.6f}, valence {mean[1]:.6f} ± {std[1]:.6f}")
    return writer.write({"mean": mean.tolist(), "std": std.tolist()})

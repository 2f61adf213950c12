"""MTG-Jamendo autotagging → ``data/MTG/MTG{Genre,Instrument,Mood,Top50}.{train,val,test}.jsonl``.

Two inputs: the audio (``--raw``: the unpacked tar folders ``00``–``99`` of the full-quality
``NN/ID.mp3`` or the low-quality ``NN/ID.low.mp3`` download; any subset of the folders) and the
split files of MTG/mtg-jamendo-dataset (``--annotations``: a clone of that repository, default
searched under ``--raw``): ``data/splits/split-0/autotagging_<subset>-{train,validation,test}.tsv``.

Split files are TAB-separated with a header ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS``
and CRLF line ends; a track's tags are the fields from the sixth on (``genre---rock``,
``mood/theme---film``, …). MARBLE v2 uses split 0 of the four subsets genre (87 tags),
instrument (40), moodtheme (56) and top50tags (50); its class order (the task configs'
``classes``) is the order in which tags first appear in split 0's train file. A label is the
row's tag list, as written.

A partial download is fine: rows whose audio is absent are left out and listed, and a note
names the absent folders. Rows with fewer than six fields, tags outside the subset's classes,
or a track listed twice are left out and listed too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirprobe.datasets.common import AUDIO_SUFFIXES, DatasetWriter, PrepareResult, check_raw
from mirprobe.errors import UserError

FOLDER = "data/MTG"
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
#: ``NN/ID.mp3`` (full quality), ``NN/ID.low.mp3`` (low quality), or another audio suffix.
AUDIO_NAME = re.compile(r"^(\d+)(\.low)?(\.[A-Za-z0-9]+)$")
FOLDER_NAME = re.compile(r"^\d{2}$")


@dataclass(frozen=True)
class Subset:
    """One of MARBLE's MTG-Jamendo tasks."""

    subset: str  # the split files' name: autotagging_<subset>-<split>.tsv
    prefix: str  # MARBLE v2's JSONL prefix
    task: str  # configs/tasks/<task>.yaml, which holds MARBLE's classes


SUBSETS = {s.subset: s for s in (
    Subset("genre", "MTGGenre", "mtg-genre"),
    Subset("instrument", "MTGInstrument", "mtg-instrument"),
    Subset("moodtheme", "MTGMood", "mtg-moodtheme"),
    Subset("top50tags", "MTGTop50", "mtg-top50"),
)}


def classes_of(subset: Subset) -> list[str]:
    """MARBLE's tag list of ``subset``, read from its task config."""
    from mirprobe.config import named_section

    _, opts = named_section(subset.task, "tasks")
    return [str(c) for c in opts["classes"]]


def find_split_files(root: Path, subset: str, split: int = 0) -> dict[str, Path]:
    """The three split files of ``subset``: directly in ``root``, else under ``split-<n>/``."""
    files = {}
    for ours, theirs in SPLIT_NAMES.items():
        name = f"autotagging_{subset}-{theirs}.tsv"
        direct = root / name
        found = [direct] if direct.is_file() else sorted(
            p for p in root.rglob(name) if p.parent.name == f"split-{split}")
        if not found:
            raise UserError(f"{root}: no split-{split}/{name}; pass --annotations with a clone of "
                            "MTG/mtg-jamendo-dataset (its data/splits/ folder)")
        files[ours] = found[0]
    return files


def index_audio(raw: Path) -> dict[str, Path]:
    """Audio files under ``raw`` by ``NN/ID`` (``41/241``); the low-quality copy (MARBLE's) wins
    when both are there."""
    found: dict[str, Path] = {}
    for path in sorted(raw.rglob("*")):
        match = AUDIO_NAME.match(path.name)
        if (match is None or not FOLDER_NAME.match(path.parent.name)
                or match[3].lower() not in AUDIO_SUFFIXES or not path.is_file()):
            continue
        key = f"{path.parent.name}/{match[1]}"
        if key not in found or match[2]:
            found[key] = path
    return found


def read_split_file(path: Path, writer: DatasetWriter) -> list[tuple[int, str, str, list[str]]]:
    """``(line, TRACK_ID, PATH, tags)`` of each well-formed row; bad rows become problems."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from e
    if not lines or tuple(lines[0].rstrip("\r").split("\t")[:6]) != HEADER:
        raise UserError(f"{path}: the first line is not the header {' '.join(HEADER)} (TAB-"
                        "separated); give MTG-Jamendo's split files")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if not line.strip():
            continue
        if len(fields) < 6 or not fields[0] or "/" not in fields[3] or not all(fields[5:]):
            writer.problem(f"{path.name}:{n}: not a row TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, "
                           f"DURATION, TAGS… ({line[:60]!r}); row left out")
            continue
        rows.append((n, fields[0], fields[3], fields[5:]))
    return rows


def audio_key(path_field: str) -> str:
    """``41/241.mp3`` → ``41/241``."""
    folder, name = path_field.split("/")[-2:]
    return f"{folder}/{name.split('.')[0]}"


def prepare_subset(subset: str, raw: Path, out: Path, annotations: Path | None = None
                   ) -> PrepareResult:
    """Write MARBLE's JSONL of one MTG-Jamendo subset under ``<out>/data/MTG/``."""
    spec = SUBSETS[subset]
    raw = check_raw(raw)
    files = find_split_files(check_raw(annotations) if annotations else raw, subset)
    audio = index_audio(raw)
    if not audio:
        raise UserError(f"{raw}: no MTG-Jamendo audio (folders 00–99 holding ID.mp3 or "
                        "ID.low.mp3); point --raw at the unpacked download")
    classes = set(classes_of(spec))
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, spec.prefix)
    seen: dict[str, str] = {}
    absent: dict[str, int] = {}
    for split, path in files.items():
        for n, track, path_field, tags in read_split_file(path, writer):
            where = f"{path.name}:{n}"
            unknown = [t for t in tags if t not in classes]
            if unknown:
                writer.problem(f"{where}: {track}: tag(s) {', '.join(unknown)} not among MARBLE's "
                               f"{len(classes)} {spec.prefix} classes; row left out")
            elif track in seen:
                writer.problem(f"{where}: {track} is already in {seen[track]}; row left out")
            elif audio_key(path_field) not in audio:
                absent[path_field.split("/")[0]] = absent.get(path_field.split("/")[0], 0) + 1
                writer.problem(f"{where}: {track}: no audio for {path_field} under --raw; "
                               "row left out")
            else:
                seen[track] = where
                writer.add(split, audio[audio_key(path_field)], tags, source=where)
    if absent:
        writer.note(f"partial download: {sum(absent.values())} rows have no audio; folders with "
                    f"missing tracks: {', '.join(sorted(absent))} (download and unpack them, "
                    "then prepare again)")
    return writer.write({"subset": subset, "split": 0,
                         "split_files": {s: str(p) for s, p in files.items()}})


def _prepare(subset: str):  # noqa: ANN202 - one entry point per subset, as DatasetSpec names
    def prepare(raw: Path, out: Path, *, annotations: Path | None = None,
                **_: Any) -> PrepareResult:
        return prepare_subset(subset, raw, out, annotations)

    prepare.__doc__ = f"Write MARBLE's {SUBSETS[subset].prefix} JSONL under ``<out>/data/MTG/``."
    return prepare


prepare_genre = _prepare("genre")
prepare_instrument = _prepare("instrument")
prepare_moodtheme = _prepare("moodtheme")
prepare_top50 = _prepare("top50tags")

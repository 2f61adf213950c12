"""Real datasets in MARBLE v2's JSONL layout: preparers for the raw downloads, and a verifier.

Every preparer writes ``<out>/<folder>/<Prefix>.{train,val,test}.jsonl`` exactly where MARBLE
keeps its files (``data/MTT/MTT.*``, ``data/GTZAN/GTZANGenre.*``, …), so that the task configs
of ``configs/tasks/`` and ``configs/runs/marble.yaml`` read a prepared folder and a MARBLE
checkout alike (``data_root=<out>``). Audio paths are relative to ``<out>`` when the audio lies
inside it (MARBLE's way), else absolute.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirprobe.datasets.common import PrepareResult
from mirprobe.errors import UserError


@dataclass(frozen=True)
class DatasetSpec:
    """One preparable dataset: where its JSONL goes and which task config reads it."""

    name: str
    module: str  # mirprobe.datasets.<module>:<function>
    folder: str  # relative to the MARBLE root
    prefix: str
    task: str  # configs/tasks/<task>.yaml
    summary: str
    options: tuple[str, ...] = ()  # keyword options its preparer takes
    function: str = "prepare"


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("mtt", "mtt", "data/MTT", "MTT", "mtt",
                "MagnaTagATune: annotations_final.csv + mp3 folders 0-f (top-50 tags)",
                ("drop_untagged", "keep_corrupt")),
    DatasetSpec("gtzan", "gtzan", "data/GTZAN", "GTZANGenre", "gtzan-genre",
                "GTZAN genre: <genre>/<genre>.NNNNN.wav (+ --splits DIR with the filtered lists)",
                ("splits", "seed")),
    DatasetSpec("gtzan-rhythm", "gtzan_rhythm", "data/GTZAN", "GTZANBeatTracking", "gtzan-beat",
                "GTZAN-Rhythm beats: GTZAN audio + --annotations DIR of *.wav.jams",
                ("annotations", "splits", "seed")),
    DatasetSpec("giantsteps", "giantsteps", "data/GS", "GS", "giantsteps-key",
                "GiantSteps key: the two annotation repos + <ID>.LOFI.mp3 (cut to 30 s clips)",
                ("audio", "workers", "clip_s")),
    DatasetSpec("emomusic", "emomusic", "data/EMO", "EMO", "emomusic",
                "Emomusic: clips_45seconds/*.mp3 + songs_info.csv, static_annotations.csv"),
    *(DatasetSpec(f"mtg-{name}", "mtg_jamendo", "data/MTG", prefix, f"mtg-{name}",
                  f"MTG-Jamendo {name} tags (split 0): audio folders 00-99, any of them + "
                  "--annotations mtg-jamendo-dataset clone", ("annotations",),
                  f"prepare_{name}")
      for name, prefix in (("genre", "MTGGenre"), ("instrument", "MTGInstrument"),
                           ("moodtheme", "MTGMood"), ("top50", "MTGTop50"))),
    DatasetSpec("nsynth-pitch", "nsynth", "data/NSynth", "NSynthP", "nsynth-pitch",
                "NSynth pitch (MIDI 0-127): nsynth-{train,valid,test}/examples.json + audio/",
                function="prepare_pitch"),
    DatasetSpec("nsynth-instrument", "nsynth", "data/NSynth", "NSynthI", "nsynth-instrument",
                "NSynth instrument family (11): nsynth-{train,valid,test}/examples.json + audio/",
                function="prepare_instrument"),
    DatasetSpec("vocalset-technique", "vocalset", "data/VocalSet", "VocalSetT",
                "vocalset-technique", "VocalSet techniques (10), 3 s clips: FULL/<singer>/"
                "<context>/<technique>/*.wav", ("seed",), "prepare_technique"),
    DatasetSpec("vocalset-singer", "vocalset", "data/VocalSet", "VocalSetS", "vocalset-singer",
                "VocalSet singers (20), 3 s clips: FULL/<singer>/<context>/<technique>/*.wav",
                ("seed",), "prepare_singer"),
    DatasetSpec("chords-lab", "chords", "data/Chords1217", "Chords1217", "chords1217",
                "chords (Chords1217 format): audio + .lab files (--annotations DIR, --splits DIR)",
                ("annotations", "splits", "seed")),
)}
ALIASES = {"magnatagatune": "mtt", "gtzan-genre": "gtzan", "gtzan-beat": "gtzan-rhythm",
           "giantsteps-key": "giantsteps", "gs": "giantsteps", "emo": "emomusic",
           "mtg-mood": "mtg-moodtheme", "mtg-top50tags": "mtg-top50",
           "chords": "chords-lab", "chords1217": "chords-lab"}


def get_spec(name: str) -> DatasetSpec:
    """The dataset called ``name`` (or one of its aliases)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        close = difflib.get_close_matches(name, [*DATASETS, *ALIASES], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown dataset {name!r}{hint}; use one of: {', '.join(DATASETS)}")
    return DATASETS[key]


def prepare(name: str, raw: Path, out: Path, **options: Any) -> PrepareResult:
    """Read the raw download of dataset ``name`` in ``raw``; write MARBLE JSONL under ``out``."""
    spec = get_spec(name)
    unused = sorted(set(options) - set(spec.options))
    if unused:
        raise UserError(f"dataset {spec.name!r} takes no {', '.join(map(_flag, unused))}; "
                        f"it takes: {', '.join(map(_flag, spec.options)) or 'no options'}")
    module = importlib.import_module(f"mirprobe.datasets.{spec.module}")
    return getattr(module, spec.function)(Path(raw), Path(out), **options)


def _flag(option: str) -> str:
    """The command-line flag of a preparer option."""
    return "--clip-seconds" if option == "clip_s" else "--" + option.replace("_", "-")


__all__ = ["DATASETS", "DatasetSpec", "PrepareResult", "get_spec", "prepare"]

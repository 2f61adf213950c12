"""NSynth → ``data/NSynth/NSynth{P,I}.{train,val,test}.jsonl`` (MARBLE v1's NSynthP and NSynthI).

Raw layout (``--raw``): the three unpacked ``nsynth-{train,valid,test}.jsonwav.tar.gz``
archives, each ``nsynth-<split>/examples.json`` (an object: note name → its attributes, e.g.
``"pitch": 60``, ``"instrument_family_str": "keyboard"``) and ``nsynth-<split>/audio/<note>.wav``
(4 s, 16 kHz). The official splits are MARBLE's: 289,205 / 12,678 / 4,096 notes.

- Pitch (``NSynthP``): the label is the MIDI pitch (an integer); MARBLE v1's head has 128 outputs,
  one per MIDI number 0–127 (NSynth's notes span 9–120).
- Instrument family (``NSynthI``): the label is ``instrument_family_str``, one of MARBLE v1's 11
  classes (bass, brass, flute, guitar, keyboard, mallet, organ, reed, string, synth_lead, vocal).

Notes whose entry lacks the field, holds a value outside the classes, or whose WAV is absent are
left out and listed; a missing ``examples.json`` is an error naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mirprobe.datasets.common import DatasetWriter, PrepareResult, check_raw
from mirprobe.errors import UserError

FOLDER = "data/NSynth"
SPLIT_FOLDERS = {"train": "nsynth-train", "val": "nsynth-valid", "test": "nsynth-test"}
FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
            "synth_lead", "vocal")
PITCHES = range(128)


def find_split(raw: Path, folder: str) -> Path:
    """The ``nsynth-<split>`` folder holding ``examples.json`` (in ``raw`` or below it)."""
    direct = raw / folder / "examples.json"
    found = [direct] if direct.is_file() else sorted(
        p for p in raw.rglob("examples.json") if p.parent.name == folder)
    if not found:
        raise UserError(f"{raw}: no {folder}/examples.json; unpack {folder}.jsonwav.tar.gz "
                        "under --raw")
    return found[0].parent


def read_examples(path: Path) -> dict[str, Any]:
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable JSON file ({e}); unpack the archive again") from e
    if not isinstance(examples, dict):
        raise UserError(f"{path}: expected an object of notes (note name → attributes)")
    return examples


def pitch_label(entry: dict[str, Any]) -> int:
    pitch = entry.get("pitch")
    if isinstance(pitch, bool) or not isinstance(pitch, int) or pitch not in PITCHES:
        raise ValueError(f"pitch {pitch!r} is not a MIDI number 0–127")
    return pitch


def family_label(entry: dict[str, Any]) -> str:
    family = entry.get("instrument_family_str")
    if family not in FAMILIES:
        raise ValueError(f"instrument_family_str {family!r} is not one of {', '.join(FAMILIES)}")
    return family


def prepare_labels(raw: Path, out: Path, prefix: str,
                   label_of: Callable[[dict[str, Any]], Any]) -> PrepareResult:
    """One NSynth task: every note of the three splits, labelled by ``label_of``."""
    raw = check_raw(raw)
    writer = DatasetWriter(Path(out).expanduser(), FOLDER, prefix)
    for split, folder in SPLIT_FOLDERS.items():
        base = find_split(raw, folder)
        examples = read_examples(base / "examples.json")
        missing = 0
        for note in sorted(examples):
            where = f"{folder}/examples.json: {note}"
            entry = examples[note]
            try:
                label = label_of(entry if isinstance(entry, dict) else {})
            except ValueError as e:
                writer.problem(f"{where}: {e}; note left out")
                continue
            wav = base / "audio" / f"{note}.wav"
            if not wav.is_file():
                missing += 1
                writer.problem(f"{where}: no audio/{note}.wav; note left out")
                continue
            writer.add(split, wav, label, source=where)
        if missing:
            writer.note(f"{folder}: {missing} of {len(examples)} notes have no WAV file")
    return writer.write({"label": prefix})


def prepare_pitch(raw: Path, out: Path, **_: Any) -> PrepareResult:
    """Write MARBLE v1's NSynth pitch task (``NSynthP``) under ``<out>/data/NSynth/``."""
    return prepare_labels(raw, out, "NSynthP", pitch_label)


def prepare_instrument(raw: Path, out: Path, **_: Any) -> PrepareResult:
    """Write MARBLE v1's NSynth instrument-family task (``NSynthI``) under ``<out>/data/NSynth/``."""
    return prepare_labels(raw, out, "NSynthI", family_label)

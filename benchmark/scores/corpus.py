"""The tunes the scores suite is made of: dance tunes of two folk collections in music21's corpus.

Ryan's Mammoth Collection (1883) and O'Neill's Music of Ireland (1850) give each tune an ABC
rhythm field (``R:``) naming its dance. A tune is a *candidate* when that dance is one of
:data:`DANCES` in its usual meter, and its key field names a major or minor key. Candidates are
found by reading the ABC headers (fast); only the tunes a suite needs are parsed with music21
(:func:`parse_tune`). Tunes with the same title (re-settings of one tune, in one collection or
both) count as one tune: only the first setting is a candidate.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirprobe.errors import UserError

INSTALL = "pip install music21"
#: Corpus folders, in the order candidates are listed.
COLLECTIONS = ("ryansMammoth", "oneills1850")
#: ABC rhythm field (lower case) -> the dance (genre label).
DANCES = {"reel": "reel", "jig": "jig", "double jig": "jig", "hornpipe": "hornpipe",
          "slip jig": "slip jig", "slipjig": "slip jig", "strathspey": "strathspey"}
#: The meters each dance is written in (others are not candidates).
METERS = {"reel": ("C|", "2/4"), "jig": ("6/8",), "hornpipe": ("C|", "2/4"),
          "slip jig": ("9/8",), "strathspey": ("C",)}
GENRES = tuple(METERS)
_KEY = re.compile(r"^([A-G])([#b]?)(m|min|minor|maj|major)?$")
_TYPE_WORDS = re.compile(r"\b(the|reel|jig|double|slip|hornpipe|strathspey|no\s*\d+)\b")


@dataclass(frozen=True)
class Candidate:
    """A tune found by its ABC header, not yet parsed."""

    collection: str
    file: str  # corpus-relative path, e.g. ryansMammoth/AcaciaReel.abc
    number: int  # position of the tune in its file (0-based)
    title: str
    tune_id: str  # the normalised title: re-settings of one tune share it
    genre: str
    meter: str
    text: str  # the tune's ABC text

    @property
    def source(self) -> str:
        return f"{self.file}#{self.number}"


def corpus_root() -> Path:
    """music21's corpus folder; a one-line error when music21 or its corpus is missing."""
    spec = importlib.util.find_spec("music21")
    if spec is None or spec.origin is None:
        raise UserError(f"the scores suite needs music21 and its corpus; install it: {INSTALL}")
    root = Path(spec.origin).parent / "corpus"
    for name in COLLECTIONS:
        if not (root / name).is_dir():
            raise UserError(f"music21's corpus folder {root / name} is missing; "
                            f"reinstall music21: pip install --force-reinstall music21")
    return root


def tune_id(title: str) -> str:
    """A title reduced to what identifies the tune (no dance names, articles, punctuation)."""
    words = re.sub(r"[^a-z0-9 ]", "", title.lower().split("--")[0].replace("-", " "))
    return " ".join(_TYPE_WORDS.sub(" ", words).split())


def _field(text: str, name: str) -> str | None:
    found = re.search(rf"^{name}:\s*(.*?)\s*$", text, re.M)
    return found.group(1) if found else None


def _files(root: Path) -> list[Path]:
    return [p for name in COLLECTIONS for p in sorted((root / name).glob("*.abc"))]


def read_file(path: Path) -> list[str]:
    """The tunes (ABC text from ``X:``) of one corpus file; a one-line error when unreadable."""
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as e:
        raise UserError(f"cannot read music21's corpus file {path} ({e.strerror}); "
                        f"reinstall music21: pip install --force-reinstall music21") from e
    tunes = [t for t in re.split(r"\n(?=X:)", "\n" + text) if t.startswith("X:")]
    if not tunes or "\x00" in text:
        raise UserError(f"music21's corpus file {path} is corrupt (no ABC tune in it); "
                        f"reinstall music21: pip install --force-reinstall music21")
    return tunes


def candidates(root: Path | None = None) -> list[Candidate]:
    """Every candidate tune, in corpus order, first setting of each tune only."""
    root = root or corpus_root()
    seen: set[str] = set()
    out = []
    for path in _files(root):
        for number, text in enumerate(read_file(path)):
            found = _candidate(root, path, number, text)
            if found is not None and found.tune_id not in seen:
                seen.add(found.tune_id)
                out.append(found)
    return out


def _candidate(root: Path, path: Path, number: int, text: str) -> Candidate | None:
    rhythm, meter = (_field(text, "R") or "").lower(), _field(text, "M") or ""
    genre = DANCES.get(rhythm)
    key = (_field(text, "K") or "").split(" ")[0]
    if genre is None or meter not in METERS[genre] or not _KEY.match(key):
        return None
    title = _field(text, "T") or ""
    ident = tune_id(title)
    if not ident:
        return None
    return Candidate(path.parent.name, f"{path.parent.name}/{path.name}", number, title, ident,
                     genre, meter, text)


def describe_sources() -> dict[str, Any]:
    """What the suite's ``suite.json`` records about the corpus."""
    from importlib.metadata import version

    return {"corpus": "music21 " + version("music21"), "collections": list(COLLECTIONS),
            "dances": DANCES, "meters": METERS}

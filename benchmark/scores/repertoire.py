"""The genre task's repertoire: four kinds of music in music21's corpus, told apart by ear.

- ``chorale``: Bach's four-part chorales (``bach/bwv*.mxl``): four voices in block harmony;
- ``renaissance``: movements of Palestrina's masses (``palestrina/*.krn``): three to six voices
  in imitative polyphony;
- ``folksong``: German folk songs of the Essen collection (``essenFolksong/*.abc``): one sung
  melody;
- ``dance``: the suite's dance tunes (Ryan's Mammoth, O'Neill's): one fiddle melody, fast.

The label is the collection a piece comes from, never an analysis. A piece counts once per
*group* (a mass for Palestrina, a title for a song, a melody for a chorale: cantatas re-set the
same hymn tune); later pieces of a group are left out, so a group never lies in two splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mirprobe.scores.corpus import _field, read_file, tune_id

#: Label order (the genre task's classes).
STYLES = ("chorale", "dance", "folksong", "renaissance")
#: Corpus folders of the styles read here (dance tunes come from :mod:`mirprobe.scores.corpus`).
FOLDERS = {"chorale": "bach", "renaissance": "palestrina", "folksong": "essenFolksong"}
#: Beats a minute (the meter's beat: a quarter in 4/4, a half in Palestrina's 4/2 and 3/2).
BPM = {"chorale": (60.0, 84.0), "renaissance": (56.0, 76.0), "folksong": (72.0, 108.0)}
#: Voices a piece of each style must have.
VOICES = {"chorale": (4, 4), "renaissance": (3, 6), "folksong": (1, 1)}
KRN_BARS = 12  # the bars of a mass movement read (a 5 s clip plays fewer than 4)
_FINGERPRINT_NOTES = 8  # a chorale melody is known by its first intervals

Notes = tuple[tuple[float, float, int], ...]


@dataclass(frozen=True)
class PieceSource:
    """A piece found in the corpus, not yet parsed."""

    style: str
    file: str  # corpus-relative path
    number: int  # the song's position in its file (0 for a one-piece file)
    title: str
    group: str  # "" for a chorale: its melody is known once parsed
    text: str  # a song's ABC text, a mass movement's first bars (Humdrum); "" for a chorale

    @property
    def source(self) -> str:
        return f"{self.file}#{self.number}"


@dataclass(frozen=True)
class Piece:
    """A piece parsed with music21: its voices' notes from the first note on (quarter notes)."""

    source: str
    style: str
    title: str
    group: str  # pieces of one group lie in one split (only the first is used)
    parts: tuple[Notes, ...]
    beat: float  # the meter's beat in quarter notes
    length: float


def piece_sources(root: Path, style: str) -> list[PieceSource]:
    """Every piece of ``style`` in the corpus, in file order."""
    folder = root / FOLDERS[style]
    if style == "folksong":
        return [PieceSource(style, f"{folder.name}/{p.name}", i, title, "song " + (tune_id(title) or title), text)
                for p in sorted(folder.glob("*.abc")) if not p.name.startswith(("test", "variant"))
                for i, text in enumerate(read_file(p))
                if (_field(text, "M") or "none") != "none" and _field(text, "K")
                for title in [_field(text, "T") or f"{p.name}#{i}"]]
    if style == "chorale":
        return [PieceSource(style, f"{folder.name}/{p.name}", 0, p.stem, "", "")
                for p in sorted(folder.glob("bwv*.mxl"))]
    out = []
    for p in sorted(folder.glob("*.krn")):
        text = p.read_bytes().decode("latin-1")
        mass = _field(text, "!!!OPR") or p.name
        out.append(PieceSource(style, f"{folder.name}/{p.name}", 0, f"{mass}: {p.stem}",
                               "mass " + mass, first_bars(text, KRN_BARS)))
    return out


def first_bars(humdrum: str, bars: int) -> str:
    """A Humdrum file cut after its first ``bars`` bars and closed there (every spine ended):
    music21 parses a whole mass movement in about 0.2 s, its first bars in a third of that."""
    lines = humdrum.splitlines()
    barlines = [i for i, line in enumerate(lines) if line.startswith("=")]
    if len(barlines) <= bars:
        return humdrum
    end = barlines[bars]
    return "\n".join([*lines[:end + 1], "\t".join(["*-"] * len(lines[end].split("\t")))]) + "\n"


def parse_piece(src: PieceSource, root: Path) -> Piece | str:
    """The piece, or why it cannot be used (music21's error, its number of voices)."""
    from music21 import converter

    from mirprobe.scores.score import part_notes

    try:
        if src.text:
            score = converter.parseData(src.text, format="abc" if src.style == "folksong" else "humdrum")
        else:
            score = converter.parse(root / src.file, forceSource=True)
        parts = []
        for part in score.parts:
            part.stripTies(inPlace=True)
            parts.append(part_notes(part))
        meters = score.recurse().getElementsByClass("TimeSignature")
        beat = float(meters[0].beatDuration.quarterLength) if meters else 0.0
    except Exception as e:  # music21 raises many kinds on malformed files: the piece is skipped
        return f"music21 could not parse it ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    parts = [p for p in parts if p]
    low, high = VOICES[src.style]
    if not low <= len(parts) <= high:
        return f"{len(parts)} voices, not {low}" + (f" to {high}" if high > low else "")
    if beat <= 0:
        return "no meter"
    start = min(p[0][0] for p in parts)
    moved = tuple(tuple((on - start, d, m) for on, d, m in p) for p in parts)
    length = max(on + d for p in moved for on, d, _ in p)
    return Piece(src.source, src.style, src.title, src.group or _melody(moved[0]), moved, beat, length)


def _melody(notes: Notes) -> str:
    """A chorale melody's identity: its first intervals (re-settings share them)."""
    pitches = [m for _, _, m in notes]
    steps = [b - a for a, b in zip(pitches, pitches[1:], strict=False) if b != a]
    return "melody " + " ".join(str(s) for s in steps[:_FINGERPRINT_NOTES - 1])

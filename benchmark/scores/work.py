"""The scores suite's jobs that run in worker processes: parsing a tune or piece, rendering a clip.

Kept apart from the suite writer so that a worker imports music21 and the renderer only (not
torch): spawned workers start in well under a second.
"""

from __future__ import annotations

from mirprobe.scores.corpus import Candidate, corpus_root
from mirprobe.scores.render import Note, level, synthesize, write_wav
from mirprobe.scores.repertoire import Piece, PieceSource, parse_piece
from mirprobe.scores.score import ParsedTune, parse_tune


def parse(candidate: Candidate) -> ParsedTune | str:
    return parse_tune(candidate)


def parse_piece_job(src: PieceSource) -> Piece | str:
    return parse_piece(src, corpus_root())


def render(job: tuple[list[Note], float, float, str, str]) -> dict[str, float]:
    """Render one clip or note to its WAV file; returns its level as written."""
    notes, seconds, rms_db, soundfont, path = job
    return write_wav(path, level(synthesize(notes, seconds, soundfont), rms_db))

"""Text normalisation and segmentation of clinical notes.

Every segment keeps its character span into the text as submitted, so that evidence can point
back into the note a coder reads.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from models.errors import InputError

# A sentence ends at . ! ? ; followed by space and a character that is not a lower-case letter or a
# digit, or at a line break. "40.2 C" and "i.v. fluids" stay whole; "Dr. Smith" is split (a known limit).
_SENTENCE_END_RE = re.compile(r"(?<=[.!?;])\s+(?=[^a-z0-9])|\n+")
_TOKEN_RE = re.compile(r"[a-z0-9]+")

MAX_NOTE_CHARS = 1_000_000


@dataclass(frozen=True)
class Segment:
    """One sentence of a note: its text and where it sits in the note."""

    start: int
    end: int
    text: str


def check_note(text: object) -> str:
    """Validate a note before any model sees it.

    Raises:
        InputError: if the note is not a string, is empty or whitespace only, or is too long.
    """
    if not isinstance(text, str):
        raise InputError("note text must be a string")
    if not text.strip():
        raise InputError("note text is empty")
    if len(text) > MAX_NOTE_CHARS:
        raise InputError(f"note text is longer than {MAX_NOTE_CHARS} characters")
    return text


def fold(text: str) -> str:
    """Lower-case, strip accents and unify unicode forms (NFKD: ligatures such as "ﬁ" may grow)."""
    if text.isascii():  # NFKD leaves ASCII as it is, and it has no combining marks
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.lower()


def tokenize(text: str) -> list[str]:
    """Alphanumeric tokens of folded text."""
    return _TOKEN_RE.findall(fold(text))


def split_sentences(text: str) -> list[Segment]:
    """Split a note into sentences with their character spans (empty pieces dropped)."""
    segments: list[Segment] = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        _append(segments, text, start, match.start())
        start = match.end()
    _append(segments, text, start, len(text))
    return segments


def _append(segments: list[Segment], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece.rstrip())
    if trail > lead:
        segments.append(Segment(start + lead, start + trail, piece[lead:trail]))


@dataclass(frozen=True, eq=False)
class SentenceEvidence:
    """One note's evidence as the sentence that supports each output column best: an `EvidenceSource`
    (`models.scorer`)."""

    segments: list[Segment]  # the note's sentences
    best_segment: np.ndarray  # (columns,) index into segments, -1 where no sentence supports the column

    def evidence(self, code_indices: list[int]) -> dict[int, Segment | None]:
        """The sentence that supports each asked column best, or None."""
        return {i: self.segments[int(self.best_segment[i])] if self.best_segment[i] >= 0 else None
                for i in code_indices}

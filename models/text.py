"""Text normalisation and segmentation of clinical notes.

Every segment keeps its character span into the text as submitted, so that evidence can point
back into the note a coder reads.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

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


class RecentResults:
    """A small thread-safe memory of per-note results, so that the evidence step after scoring does not
    score the same note again. Keys are the note texts; they stay in process memory only."""

    def __init__(self, size: int = 64) -> None:
        from collections import OrderedDict
        from threading import Lock

        self._items: OrderedDict[str, object] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def get(self, text: str) -> object | None:
        with self._lock:
            value = self._items.get(text)
            if value is not None:
                self._items.move_to_end(text)
            return value

    def put(self, text: str, value: object) -> None:
        with self._lock:
            self._items[text] = value
            self._items.move_to_end(text)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

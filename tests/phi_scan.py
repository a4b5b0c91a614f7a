"""A scan of every log line the test suite writes for note text (PHI).

Test notes carry distinctive markers; every log record of the test process (at DEBUG, whatever handlers a
test installs) and every log file of a server process the tests start is searched for them when the
session ends. A hit fails the run and names where the marker leaked.
"""

from __future__ import annotations

import contextlib
import logging
import re
import traceback
from pathlib import Path

# Words that occur in test notes and in no log message the code writes on purpose. "phimark" is the
# generic marker; "zqvmark" marks the multi-worker notes; "coffee grounds" is from the workbench's note.
MARKERS = re.compile(r"phimark|zqvmark|coffee grounds", re.IGNORECASE)
PHI = "phimark"  # put this word into test notes: `f"Possible pneumonia {PHI}."`


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could write of a record: message, arguments, extras, exception."""
    parts = [str(value) for value in record.__dict__.values() if not isinstance(value, (int, float))]
    with contextlib.suppress(Exception):  # a bad format string is still scanned as its raw parts
        parts.append(record.getMessage())
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


class PhiScanner:
    """Collects where a marker appeared: in a log record of this process or in a log file."""

    def __init__(self) -> None:
        self.leaks: list[str] = []
        self.files: list[Path] = []
        self.records = 0

    def scan_record(self, record: logging.LogRecord) -> None:
        self.records += 1
        match = MARKERS.search(record_text(record))
        if match:
            self.leaks.append(f"log record {record.name}:{record.levelname} {record.pathname}:{record.lineno} "
                              f"contains {match.group(0)!r}")

    def scan_files(self) -> int:
        """Scan the registered server log files; returns how many lines were read."""
        lines = 0
        for path in self.files:
            if not path.is_file():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                lines += 1
                match = MARKERS.search(line)
                if match:
                    self.leaks.append(f"{path}:{number} contains {match.group(0)!r}")
        return lines


SCANNER = PhiScanner()


def install(scanner: PhiScanner = SCANNER) -> None:
    """Route every record any logger handles through the scanner, whatever handlers tests install."""
    original = logging.Logger.handle

    def handle(self: logging.Logger, record: logging.LogRecord) -> None:
        scanner.scan_record(record)
        original(self, record)

    logging.Logger.handle = handle  # type: ignore[method-assign]
    # DEBUG everywhere, so that a library that would log a note at a verbose level is caught too.
    logging.getLogger().setLevel(logging.DEBUG)


def register_log_file(path: Path) -> None:
    """A server process's log file, scanned when the session ends."""
    SCANNER.files.append(Path(path))

"""The suite's PHI log scan finds a marker wherever a handler could write it."""

from __future__ import annotations

import logging
from pathlib import Path

from tests.phi_scan import PhiScanner


def _record(msg: str, *args, exc: BaseException | None = None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("service", logging.INFO, __file__, 1, msg, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    record.__dict__.update(extra)
    return record


def test_markers_are_found_in_messages_arguments_extras_and_exceptions(tmp_path: Path) -> None:
    scanner = PhiScanner()
    scanner.scan_record(_record("request", route="/v1/codes:suggest", status=200))
    assert scanner.leaks == []
    scanner.scan_record(_record("note %s", "Possible pneumonia PHIMARK"))
    scanner.scan_record(_record("request", note="vomiting in coffee grounds"))
    try:
        raise ValueError("cannot code 'zqvmark07'")
    except ValueError as error:
        scanner.scan_record(_record("failed", exc=error))
    assert len(scanner.leaks) == 3 and scanner.records == 4
    log = tmp_path / "server.err"
    log.write_text('{"message": "request"}\n{"message": "text: phimark"}\n', encoding="utf-8")
    scanner.files.append(log)
    assert scanner.scan_files() == 2
    assert scanner.leaks[-1].endswith("server.err:2 contains 'phimark'")

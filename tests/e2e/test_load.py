"""`python -m eval.load` against a real 3-worker server on a fresh PostgreSQL database, for 30 seconds:
mixed traffic from 16 clients with no error, and the database agrees with every answer the clients got.

The tool starts and stops the server itself (the workers load the embedded default model, ~20-30 s each on
two cores); this calls its `main` in-process and reads the JSON report it writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval import load
from tests.service_fixtures import empty_postgres

DURATION_S = 30
CLIENTS = 16
# Far below what a quiet 2-core machine does (~80 requests/s); a floor, not a speed test.
MIN_REQUESTS = 150


@pytest.mark.slow
def test_load_run_has_no_errors_and_the_database_agrees(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    database_url, drop = empty_postgres()
    report_path = tmp_path / "load.json"
    try:
        status = load.main(["--start", "--database-url", database_url, "--workers", "3",
                            "--duration", str(DURATION_S), "--clients", str(CLIENTS), "--seed", "7",
                            "--no-progress", "--json", str(report_path)])
    finally:
        drop()
    captured = capsys.readouterr()
    printed = captured.out
    assert report_path.exists(), f"no report written (exit status {status}):\n{captured.err[-3000:]}"
    report = json.loads(report_path.read_text(encoding="utf-8"))

    assert report["errors"] == 0, report["error_samples"]
    failed = [check for check in report["checks"] if not check["passed"]]
    assert failed == [], failed
    assert status == 0 and report["passed"]
    assert report["totals"]["count"] > MIN_REQUESTS, report["totals"]

    kinds = report["kinds"]
    # Every part of the mix ran, so each check had something to check.
    assert all(kinds[kind]["count"] > 0 for kind in ("suggest", "suggestBatch", "reviews list", "claimNext",
                                                     "resolve", "audit")), kinds
    ledger = report["ledger"]
    assert ledger["queued"] > 0 and ledger["resolves"] > 0 and ledger["reposts"] > 0, ledger
    assert {c["name"][:3] for c in report["checks"]} >= {"(a)", "(b)", "(c)", "(d)"}
    assert "| request | count | errors |" in printed and "| check | result | detail |" in printed

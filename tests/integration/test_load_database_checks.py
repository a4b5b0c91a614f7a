"""The database checks of `python -m eval.load` on a migrated database (SQLite, then PostgreSQL): they pass
when the rows agree with what the clients were told, and fail on a lost item, other final codes, a missing
suggest event and a second holder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eval.load import Ledger, NoteRecord, database_checks
from service import db

RUN = "abc12345"
EHR, ANN, BOB = f"load-{RUN}-ehr", f"load-{RUN}-coder-1", f"load-{RUN}-coder-2"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
I10 = [{"code": "I10", "system": "ICD-10-CM"}]


def _note(n: int) -> str:
    return f"load-{RUN}-n{n:07d}"


def _item(review_id: str, note_id: str, **state) -> db.ReviewItem:
    return db.ReviewItem(id=review_id, note_id=note_id, text="note", priority=0.5, suggestions=[],
                         model_version="m", thresholds={}, created_at=T0, updated_at=T0, **state)


def _event(seconds: int, actor: str, action: str, review_id: str | None, note_id: str) -> db.AuditEvent:
    details = {"lease_seconds": 900} if action == "claim" else {}
    return db.AuditEvent(at=T0 + timedelta(seconds=seconds), actor=actor, role="coder", action=action,
                         review_id=review_id, note_id=note_id, details=details)


def _database(url: str) -> None:
    """Note 1: queued as r1, claimed and resolved by ann with I10. Note 2: answered, not queued."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    with db.make_sessionmaker(engine).begin() as session:
        session.add(_item("r1", _note(1), status="resolved", claimed_by=ANN, resolved_by=ANN, resolved_at=T0,
                          final_codes=I10))
        session.flush()
        session.add_all([
            _event(0, EHR, "enqueue", "r1", _note(1)), _event(1, EHR, "suggest", "r1", _note(1)),
            _event(2, EHR, "suggest", None, _note(2)), _event(3, ANN, "claim", "r1", _note(1)),
            _event(4, ANN, "resolve", "r1", _note(1)),
        ])
    engine.dispose()


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.notes = {_note(1): NoteRecord(0, 5, True, "r1"), _note(2): NoteRecord(0, 5, False, None)}
    ledger.claims = [("r1", ANN)]
    ledger.resolves = {"r1": (ANN, I10)}
    return ledger


def _failed(checks) -> list[str]:
    return [c.name[:4].strip() for c in checks if not c.passed]


def test_checks_pass_when_the_database_agrees_and_fail_when_it_does_not(database_url: str) -> None:
    _database(database_url)
    assert _failed(database_checks(database_url, RUN, EHR, _ledger())) == []

    lost = _ledger()
    lost.notes[_note(3)] = NoteRecord(0, 5, True, "r3")  # answered needs_review, never stored
    other_codes = _ledger()
    other_codes.resolves["r1"] = (ANN, [{"code": "E11.9", "system": "ICD-10-CM"}])
    unrecorded = _ledger()
    unrecorded.notes[_note(2)].answers = 2  # a second answer without its suggest event
    assert _failed(database_checks(database_url, RUN, EHR, lost)) == ["(a)", "(c)"]
    assert _failed(database_checks(database_url, RUN, EHR, other_codes)) == ["(b)"]
    assert _failed(database_checks(database_url, RUN, EHR, unrecorded)) == ["(c)"]

    engine = db.make_engine(database_url)
    with db.make_sessionmaker(engine).begin() as session:  # bob claims r1 after ann resolved it
        session.add(_event(5, BOB, "claim", "r1", _note(1)))
    engine.dispose()
    assert _failed(database_checks(database_url, RUN, EHR, _ledger())) == ["(d)"]

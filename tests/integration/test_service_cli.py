"""`python -m service` admin commands against a real database: keys, migrations, export, accuracy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.__main__ import main
from service.auth import KeyStore, Principal
from service.db import current_revision, make_engine, make_sessionmaker
from service.review_queue import FinalCode, ReviewQueue
from service.settings import get_settings
from training.data import load_jsonl


@pytest.fixture
def cli_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CODER_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


def test_keys_are_created_listed_and_revoked(cli_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--name", "epic", "--role", "ehr"]) == 0
    key = capsys.readouterr().out.strip()
    store = KeyStore(make_sessionmaker(make_engine(cli_database)))
    assert store.authenticate(key) == Principal("epic", "ehr")
    assert main(["keys", "create", "--name", "epic", "--role", "coder"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "epic\tehr" in listing and key not in listing
    assert main(["keys", "revoke", "--name", "epic"]) == 0
    assert store.authenticate(key) is None
    assert main(["keys", "revoke", "--name", "epic"]) == 2


def test_db_commands_move_between_revisions(cli_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(cli_database)
    assert main(["db", "downgrade"]) == 0
    assert current_revision(engine) is None
    assert main(["db", "upgrade"]) == 0
    assert current_revision(engine) == "0001"
    assert main(["db", "current"]) == 0
    assert "0001" in capsys.readouterr().out.splitlines()[-1]


def test_export_and_accuracy_from_the_command_line(
    cli_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = ReviewQueue(make_sessionmaker(make_engine(cli_database)))
    ehr, coder = Principal("ehr", "ehr"), Principal("ann", "coder")
    review_id = queue.record_suggestion(
        ehr, text="Possible pneumonia.", note_id="n-1", needs_review=True, model_version="m-1",
        thresholds={"accept": 0.9},
        codes=[{"code": "J18.9", "system": "ICD-10-CM", "confidence": 0.6, "accepted": False}],
    )
    queue.claim(review_id, coder)
    queue.resolve(review_id, coder, [FinalCode("J15.9", "ICD-10-CM"), FinalCode("0BH17EZ", "ICD-10-PCS")])
    out = tmp_path / "feedback" / "export.jsonl"
    assert main(["export", "--output", str(out)]) == 0
    data = load_jsonl(out)["train"]
    assert data["id"] == ["n-1"] and data[0]["text"] == "Possible pneumonia."
    assert main(["export", "--output", str(out), "--since", "2100-01-01T00:00:00+00:00"]) == 0
    assert out.read_text() == ""
    capsys.readouterr()
    assert main(["accuracy", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["items"] == 1 and report["precision"] == 0.0 and report["recall"] == 0.0
    assert {c["code"] for c in report["per_code"]} == {"J18.9", "J15.9", "0BH17EZ"}
    assert main(["accuracy"]) == 0
    assert "resolved items: 1" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="time zone"):
        main(["accuracy", "--since", "2026-01-01"])

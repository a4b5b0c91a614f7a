"""The US-style note sets in tests/fixtures: every gold code billable, no Excludes1 pair or repeated code in a
note, no note or id shared between sets (a set fitted on must not hold a note the held-out set measures)."""

import json
from pathlib import Path

import pytest

from models.catalog import Catalog
from training.data import load_jsonl

FIXTURES = Path(__file__).parents[1] / "fixtures"
SETS = ("us_notes", "us_notes_2", "us_notes_calibration", "us_notes_holdout")


@pytest.mark.parametrize("name", SETS)
def test_every_gold_code_is_billable_and_no_note_holds_an_excludes1_pair(catalog: Catalog, name: str) -> None:
    rows = load_jsonl(FIXTURES / name / "notes.jsonl", on_unknown="error")["train"]
    assert len(rows) >= 75
    for row in rows:
        assert all(catalog.cm.is_billable(c) for c in row["diagnoses"]), row["id"]
        assert all(catalog.pcs.is_billable(c) for c in row["procedures"]), row["id"]
        assert len(set(row["diagnoses"])) == len(row["diagnoses"]), row["id"]
        assert catalog.cm.excludes1_pairs(list(row["diagnoses"])) == [], row["id"]
        if row["encounter_class"] == "outpatient":
            assert row["procedures"] == [], row["id"]  # ICD-10-PCS codes inpatient procedures only


def test_no_note_or_id_is_shared_between_sets() -> None:
    ids, texts = set(), set()
    for name in SETS:
        rows = [json.loads(line) for line in (FIXTURES / name / "notes.jsonl").read_text(encoding="utf-8").splitlines()]
        assert ids.isdisjoint(r["id"] for r in rows) and texts.isdisjoint(r["text"] for r in rows), name
        ids |= {r["id"] for r in rows}
        texts |= {r["text"] for r in rows}

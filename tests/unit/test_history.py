"""Personal and family history codes read from the tabular list's notes (models.history)."""

import pytest

from models.catalog import Catalog
from models.history import HistoryRange, assign, history_ranges, parse_ranges


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ("Conditions classifiable to C15-C26", [("C15", "C26")]),
        ("Conditions classifiable to C50.-", [("C50", "C50")]),
        ("Conditions classifiable to C7A.022-C7A.025, C7A.029", [("C7A.022", "C7A.025"), ("C7A.029", "C7A.029")]),
        ("Conditions classifiable to C40-C41; C45-C49", [("C40", "C41"), ("C45", "C49")]),
        ("Conditions classifiable elsewhere in F01-F99", [("F01", "F99")]),
        ("Conditions classifiable to Q00-Q89 that have been repaired or corrected", [("Q00", "Q89")]),
        ("Personal history of conditions classifiable to O24.4-", [("O24.4", "O24.4")]),
        ("Healed myocardial infarction", []),
    ],
)
def test_parse_ranges(note: str, expected: list[tuple[str, str]]) -> None:
    assert [(r.low, r.high) for r in parse_ranges("Z99.9", note)] == expected


def test_narrowest_range_wins() -> None:
    codes = ["C18.9", "C61", "C62.90", "D12.6"]
    ranges = [HistoryRange("Z80.49", "C51", "C63"), HistoryRange("Z80.42", "C61", "C61"),
              HistoryRange("Z80.0", "C15", "C26")]
    assert assign(codes, ranges) == ["Z80.0", "Z80.42", "Z80.49", None]
    assert assign(codes, list(reversed(ranges))) == ["Z80.0", "Z80.42", "Z80.49", None]


def test_catalogue_history_codes(catalog: Catalog) -> None:
    personal, family = history_ranges(catalog)
    codes = ["C18.9", "C61", "I63.9", "I21.9", "I10", "E11.9", "K63.5", "C50.911"]
    own = dict(zip(codes, assign(codes, personal)))
    relative = dict(zip(codes, assign(codes, family)))
    assert own == {"C18.9": "Z85.038", "C61": "Z85.46", "I63.9": "Z86.73", "I21.9": "I25.2", "I10": None,
                   "E11.9": None, "K63.5": "Z86.0100", "C50.911": "Z85.3"}
    # Chronic conditions have no personal history code here, but a relative's are coded.
    assert relative == {"C18.9": "Z80.0", "C61": "Z80.42", "I63.9": "Z82.3", "I21.9": "Z82.49", "I10": "Z82.49",
                        "E11.9": "Z83.3", "K63.5": "Z83.711", "C50.911": "Z80.3"}
    assert all(catalog.cm.is_billable(r.code) for r in personal + family)

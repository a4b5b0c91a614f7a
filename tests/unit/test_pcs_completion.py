"""Complete ICD-10-PCS codes from a table row and the note (models.pcs_completion)."""

import pytest

from models.artifact import default_predictor
from models.catalog import Catalog
from models.pcs_completion import complete, stated_approaches, stated_duration


@pytest.mark.parametrize(
    ("prefix", "sentence", "note", "expected"),
    [
        ("0DBN", "Colonoscopy with snare polypectomy of a sigmoid polyp.", "", "0DBN8ZZ"),
        ("0DBN", "Sigmoid polyp biopsied at colonoscopy.", "", "0DBN8ZX"),
        ("0DTJ", "Laparoscopic appendectomy.", "", "0DTJ4ZZ"),
        ("0DTJ", "Appendix removed.", "Procedure: laparoscopic appendectomy. Appendix removed.", "0DTJ4ZZ"),
        ("0DTJ", "Appendectomy.", "", "0DTJ0ZZ"),  # nothing stated: the table's first row
        ("BW20", "Abdominal CT showed a mass.", "", "BW20ZZZ"),  # no contrast unless stated
    ],
)
def test_complete(catalog: Catalog, prefix: str, sentence: str, note: str, expected: str) -> None:
    code = complete(prefix, catalog.pcs.codes_under(prefix), sentence, stated_approaches(note or sentence))
    assert code == expected and catalog.pcs.is_billable(code)


def test_ventilation_takes_the_duration_the_note_states(catalog: Catalog) -> None:
    note = "Intubated in ICU HD1, placed on mechanical ventilation. Extubated HD4 (~70 h on vent). Abx x 7 days."
    assert stated_duration(note) == "4"  # the 7 days of antibiotics are not the ventilation's
    assert stated_duration("On vent x 5 days.") == "5" and stated_duration("Vent 12 hrs.") == "3"
    assert stated_duration("Fever x 3 days. On vent.") is None
    codes = catalog.pcs.codes_under("5A19")
    assert complete("5A19", codes, "Placed on mechanical ventilation.", [], stated_duration(note)) == "5A1945Z"
    assert complete("5A19", codes, "Placed on mechanical ventilation.", []) == "5A1935Z"  # unstated: first row
    assert complete("0DTJ", catalog.pcs.codes_under("0DTJ"), "Appendectomy.", [], "4") == "0DTJ0ZZ"  # no duration


def test_stated_approaches() -> None:
    assert stated_approaches("laparoscopic cholecystectomy") == ["4"]
    assert stated_approaches("EGD, then open conversion") == ["8", "0"]
    assert stated_approaches("Ultrasound-guided paracentesis") == ["3"]
    assert stated_approaches("Chest pain.") == []


def test_matcher_returns_complete_codes(matcher) -> None:
    scores = matcher.match("Colonoscopy with snare polypectomy of a sigmoid colon polyp.").scores
    returned = sorted((i for i in scores.nonzero()[0] if matcher.code_systems[i] == "ICD-10-PCS"), key=lambda i: -scores[i])
    assert all(len(matcher.codes[i]) == 7 for i in returned)
    # PCS guideline B3.4b: the inspection (0DJD8ZZ) is inherent in the excision, which comes first.
    assert matcher.codes[returned[0]] == "0DBN8ZZ"
    assert matcher.match("A colonoscopy was performed.").scores[matcher.code_to_idx["0DJD8ZZ"]] > 0.5


def test_codiesp_form_keeps_table_rows(catalog: Catalog) -> None:
    # CodiEsp's coders wrote the table row where a note did not tell its codes apart.
    predictor = default_predictor(catalog, code_form="codiesp")
    assert predictor.scorer.integral_symptoms == 1.0  # CodiEsp's coders coded symptoms beside diagnoses
    found = predictor.scorer.match("Abdominal CT showed a mass.")
    assert found.scores[predictor.scorer.code_to_idx["BW20"]] > 0

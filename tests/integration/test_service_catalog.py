"""The catalogue endpoints the coder page uses, the coder's view of a note's history, and /v1/me."""

from __future__ import annotations

from tests.service_fixtures import Service


def test_search_finds_codes_by_prefix_and_words(service: Service) -> None:
    by_prefix = service.call("GET", "/v1/catalog/search", "coder", params={"q": "k35.8", "limit": 2}).json()
    assert [h["code"] for h in by_prefix["hits"]] == ["K35.8", "K35.80"]
    by_words = service.call("GET", "/v1/catalog/search", "coder",
                            params={"q": "appendectomy", "system": "ICD-10-PCS"}).json()
    assert by_words["hits"] and all(h["code"].startswith(("0DBJ", "0DTJ")) for h in by_words["hits"])
    empty = service.call("GET", "/v1/catalog/search", "coder", params={"q": ""})
    assert empty.status_code == 422


def test_entry_has_the_tabular_notes(service: Service) -> None:
    entry = service.call("GET", "/v1/catalog/codes/E11.9", "coder").json()
    assert entry["system"] == "ICD-10-CM" and entry["billable"]
    assert any("E10" in note for note in entry["excludes1"])
    assert any("Z79.4" in note for note in entry["use_additional"])
    category = service.call("GET", "/v1/catalog/codes/S72.001", "coder").json()
    assert not category["billable"] and "S72.001A" in category["billable_alternatives"]
    pcs = service.call("GET", "/v1/catalog/codes/0DTJ4ZZ", "coder").json()
    assert pcs["system"] == "ICD-10-PCS" and "Appendix" in pcs["description"]
    missing = service.call("GET", "/v1/catalog/codes/Q99.999", "coder")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_check_flags_rule_breaking_code_sets(service: Service) -> None:
    body = {"codes": [{"code": "E11.9"}, {"code": "E10.9"}, {"code": "S72.001"}, {"code": "I10"},
                      {"code": "ZZZ.99"}]}
    result = service.call("POST", "/v1/catalog:check", "coder", json=body).json()
    warnings = {c["code"]: c["warnings"] for c in result["codes"]}
    assert not result["ok"]
    assert warnings["E11.9"] == ["excludes1:E10.9"] and warnings["E10.9"] == ["excludes1:E11.9"]
    assert warnings["S72.001"] == ["not_billable", "missing_7th_character"]
    assert warnings["I10"] == [] and warnings["ZZZ.99"] == ["not_in_catalogue"]
    fine = service.call("POST", "/v1/catalog:check", "coder", json={"codes": [{"code": "I10"}]}).json()
    assert fine["ok"]


def test_a_coder_sees_the_history_of_a_note_and_who_they_are(service: Service) -> None:
    review_id = service.call("POST", "/v1/codes:suggest", "ehr",
                             json={"text": "Possible pneumonia.", "note_id": "h-1"}).json()["review_id"]
    service.call("POST", f"/v1/reviews/{review_id}:claim", "coder")
    history = service.call("GET", f"/v1/reviews/{review_id}/history", "coder").json()["events"]
    assert [(e["action"], e["actor"]) for e in history] == [
        ("enqueue", "ehr-1"), ("suggest", "ehr-1"), ("claim", "coder-1")]
    assert service.call("GET", "/v1/reviews/nope/history", "coder").status_code == 404
    assert service.call("GET", "/v1/me", "coder").json() == {"name": "coder-1", "role": "coder"}

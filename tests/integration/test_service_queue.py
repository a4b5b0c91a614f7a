"""The review queue through the API, on SQLite and on PostgreSQL: suggest, queue, claim, resolve,
audit, accuracy and export; and claims under concurrency."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import get_args

from models.predictor import ENCOUNTER_CLASSES
from service.auth import Principal
from service.review_queue import ReviewQueue
from service.schemas import EncounterClass
from tests.phi_scan import PHI
from tests.service_fixtures import Service
from training.data import load_jsonl

# Every note carries the PHI marker: the suite's log scan (tests/phi_scan.py) proves none reaches a log.
UNSURE = f"Type 2 diabetes mellitus. Possible pneumonia on the chest film. Seen at {PHI} clinic."
SURE = f"Type 2 diabetes mellitus and essential hypertension. Seen at {PHI} clinic."


def _suggest(svc: Service, text: str, note_id: str | None = None, **extra) -> dict:
    response = svc.call("POST", "/v1/codes:suggest", "ehr", json={"text": text, "note_id": note_id, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_confident_note_flows_on_and_unsure_note_is_queued_once(service: Service) -> None:
    sure = _suggest(service, SURE, "n-sure")
    assert not sure["needs_review"] and sure["review_id"] is None
    assert [c["code"] for c in sure["codes"]] == ["E11.9", "I10"]
    unsure = _suggest(service, UNSURE, "n-1", encounter_id="enc-9")
    assert unsure["needs_review"] and unsure["review_id"]
    assert unsure["model_version"] == "keyword-1"
    again = _suggest(service, UNSURE, "n-1")
    assert again["review_id"] == unsure["review_id"]
    page = service.call("GET", "/v1/reviews", "coder").json()
    assert page["total"] == 1 and page["items"][0]["note_id"] == "n-1"
    assert page["items"][0]["encounter_id"] == "enc-9"
    assert "text" not in page["items"][0]
    # Without a note_id there is nothing to be idempotent on: each post is a new note.
    _suggest(service, UNSURE)
    _suggest(service, UNSURE)
    assert service.call("GET", "/v1/reviews", "coder").json()["total"] == 3


def test_claim_resolve_round_trip_reports_the_coders_changes(service: Service) -> None:
    review_id = _suggest(service, UNSURE, "n-2")["review_id"]
    claimed = service.call("POST", f"/v1/reviews/{review_id}:claim", "coder")
    assert claimed.status_code == 200
    assert claimed.json()["claimed_by"] == "coder-1" and claimed.json()["text"] == UNSURE
    # Another coder cannot take it, release it or resolve it.
    other = service.call("POST", f"/v1/reviews/{review_id}:claim", "coder2")
    assert other.status_code == 409 and other.json()["error"]["code"] == "review_claimed"
    assert service.call("POST", f"/v1/reviews/{review_id}:release", "coder2").status_code == 409
    body = {"codes": [{"code": "e119"}, {"code": "J15.9"}, {"code": "0DTJ4ZZ", "system": "ICD-10-PCS"}]}
    refused = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder2", json=body)
    assert refused.status_code == 409
    resolved = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder", json=body)
    assert resolved.status_code == 200, resolved.text
    result = resolved.json()
    assert result["accepted"] == ["E11.9"]
    assert result["removed"] == ["J18.9"]
    assert result["added"] == ["J15.9", "0DTJ4ZZ"]
    assert result["item"]["status"] == "resolved" and result["item"]["resolved_by"] == "coder-1"
    assert {"code": "0DTJ4ZZ", "system": "ICD-10-PCS"} in result["item"]["final_codes"]
    again = service.call("POST", f"/v1/reviews/{review_id}:claim", "coder")
    assert again.status_code == 409 and again.json()["error"]["code"] == "review_resolved"


def test_resolve_refuses_unknown_codes_and_keeps_the_claim(service: Service) -> None:
    review_id = _suggest(service, UNSURE, "n-3")["review_id"]
    service.call("POST", f"/v1/reviews/{review_id}:claim", "coder")
    bad = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder",
                       json={"codes": [{"code": "E11.9"}, {"code": "Z99.999"}]})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_input" and "codes[1]" in bad.json()["error"]["message"]
    item = service.call("GET", f"/v1/reviews/{review_id}", "coder").json()
    assert item["status"] == "claimed" and item["final_codes"] is None
    empty = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder", json={"codes": []})
    assert empty.status_code == 422


def test_release_returns_the_item_and_a_lapsed_lease_frees_it(service: Service) -> None:
    review_id = _suggest(service, UNSURE, "n-4")["review_id"]
    service.call("POST", f"/v1/reviews/{review_id}:claim", "coder")
    released = service.call("POST", f"/v1/reviews/{review_id}:release", "coder")
    assert released.status_code == 200 and released.json()["status"] == "open"
    queue: ReviewQueue = service.client.app.state.queue
    # Long enough that the claim below comes within the lease on a loaded machine too.
    short = ReviewQueue(queue.sessions, lease_seconds=3)
    short.claim(review_id, Principal("coder-1", "coder"))
    assert service.call("POST", f"/v1/reviews/{review_id}:claim", "coder2").status_code == 409
    time.sleep(3.2)
    # A lapsed claim holds nothing: its old holder must claim again before resolving.
    late = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder", json={"codes": [{"code": "J18.9"}]})
    assert late.status_code == 409 and late.json()["error"]["code"] == "review_not_claimed"
    held = service.call("GET", "/v1/reviews", "coder", params={"claimed_by": "coder-1"}).json()
    assert held["total"] == 0
    listed = service.call("GET", "/v1/reviews", "coder", params={"status": "open"}).json()
    assert [i["id"] for i in listed["items"]] == [review_id] and listed["items"][0]["claimed_by"] is None
    taken = service.call("POST", f"/v1/reviews/{review_id}:claim", "coder2")
    assert taken.status_code == 200 and taken.json()["claimed_by"] == "coder-2"


def test_queue_lists_least_confident_first_with_filters_and_paging(service: Service) -> None:
    ids = {}
    # Confidence of a note = its best code: 0.6 for only-possible findings, 0.95 with a sure one.
    ids["low-a"] = _suggest(service, "Possible pneumonia.", "low-a")["review_id"]
    ids["high"] = _suggest(service, "Hypertension. Possible pneumonia.", "high")["review_id"]
    ids["low-b"] = _suggest(service, "Possible diabetes.", "low-b")["review_id"]
    order = [i["note_id"] for i in service.call("GET", "/v1/reviews", "coder").json()["items"]]
    assert order == ["low-a", "low-b", "high"]
    newest = service.call("GET", "/v1/reviews", "coder", params={"order": "newest"}).json()["items"]
    assert [i["note_id"] for i in newest] == ["low-b", "high", "low-a"]
    page = service.call("GET", "/v1/reviews", "coder", params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 3 and [i["note_id"] for i in page["items"]] == ["high"]
    low = service.call("GET", "/v1/reviews", "coder", params={"max_confidence": 0.7}).json()
    assert low["total"] == 2
    service.call("POST", f"/v1/reviews/{ids['low-a']}:claim", "coder")
    claimed = service.call("GET", "/v1/reviews", "coder", params={"status": "claimed"}).json()
    assert [i["note_id"] for i in claimed["items"]] == ["low-a"]
    mine = service.call("GET", "/v1/reviews", "coder", params={"claimed_by": "coder-1"}).json()
    assert mine["total"] == 1 and [i["note_id"] for i in mine["items"]] == ["low-a"]
    nxt = service.call("POST", "/v1/reviews:claimNext", "coder2")
    assert nxt.status_code == 200 and nxt.json()["note_id"] == "low-b"
    bad = service.call("GET", "/v1/reviews", "coder", params={"order": "random"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_claim_next_says_204_when_the_queue_is_empty(service: Service) -> None:
    assert service.call("POST", "/v1/reviews:claimNext", "coder").status_code == 204
    missing = service.call("GET", "/v1/reviews/no-such-item", "coder")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "review_not_found"


def test_audit_accuracy_and_export_close_the_loop(service: Service, tmp_path: Path) -> None:
    first = _suggest(service, UNSURE, "n-10")["review_id"]
    second = _suggest(service, "Possible hypertension. Appendectomy done.", "n-11")["review_id"]
    _suggest(service, SURE, "n-12")
    for review_id, codes in ((first, ["E11.9", "J18.9"]), (second, ["I10", "0DTJ4ZZ", "K35.80"])):
        service.call("POST", f"/v1/reviews/{review_id}:claim", "coder")
        response = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder",
                                json={"codes": [{"code": c} for c in codes]})
        assert response.status_code == 200, response.text

    events = service.call("GET", "/v1/audit", "admin", params={"note_id": "n-10"}).json()["events"]
    assert [e["action"] for e in events] == ["enqueue", "suggest", "claim", "resolve"]
    resolve = events[-1]
    assert resolve["actor"] == "coder-1" and resolve["model_version"] == "keyword-1"
    assert resolve["thresholds"]["accept"] == 0.9 and resolve["details"]["accepted"] == ["E11.9", "J18.9"]
    served = service.call("GET", "/v1/audit", "admin", params={"action": "suggest"}).json()["events"]
    assert len(served) == 3 and served[2]["details"]["needs_review"] is False
    by_coder = service.call("GET", "/v1/audit", "admin", params={"actor": "coder-1"}).json()["events"]
    assert {e["action"] for e in by_coder} == {"claim", "resolve"}
    assert all(UNSURE not in json.dumps(e) for e in events)

    report = service.call("GET", "/v1/audit/accuracy", "admin").json()
    # Suggested: {E11.9, J18.9} and {I10, 0DTJ4ZZ}; final: {E11.9, J18.9} and {I10, 0DTJ4ZZ, K35.80}.
    assert report["items"] == 2
    assert report["precision"] == 1.0 and abs(report["recall"] - 4 / 5) < 1e-9
    per_code = {c["code"]: c for c in report["per_code"]}
    assert per_code["K35.80"] == {"code": "K35.80", "suggested": 0, "final": 1, "agreed": 0,
                                  "precision": 0.0, "recall": 0.0}
    future = service.call("GET", "/v1/audit/accuracy", "admin", params={"since": "2100-01-01T00:00:00Z"}).json()
    assert future["items"] == 0

    exported = service.call("GET", "/v1/reviews:export", "admin")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/x-ndjson")
    path = tmp_path / "feedback.jsonl"
    path.write_text(exported.text, encoding="utf-8")
    data = load_jsonl(path)["train"]
    assert sorted(data["id"]) == ["n-10", "n-11"]
    row = data[data["id"].index("n-11")]
    assert row["text"].startswith("Possible hypertension")
    exports = service.call("GET", "/v1/audit", "admin", params={"action": "export"}).json()["events"]
    assert exports[0]["details"]["items"] == 2


def test_batch_codes_many_notes_in_one_call(service: Service) -> None:
    notes = [{"text": SURE, "note_id": "b-1"}, {"text": UNSURE, "note_id": "b-2"},
             {"text": "Appendectomy.", "note_id": "b-3", "systems": ["ICD-10-PCS"]}]
    response = service.call("POST", "/v1/codes:suggestBatch", "ehr", json={"notes": notes})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["note_id"] for r in results] == ["b-1", "b-2", "b-3"]
    assert [r["needs_review"] for r in results] == [False, True, False]
    assert [c["code"] for c in results[2]["codes"]] == ["0DTJ4ZZ"]
    assert results[1]["review_id"]
    too_many = service.call("POST", "/v1/codes:suggestBatch", "ehr",
                            json={"notes": [{"text": SURE}] * (service.settings.max_batch_notes + 1)})
    assert too_many.status_code == 422


def test_an_outpatient_note_gets_diagnosis_codes_only(service: Service) -> None:
    # ICD-10-PCS codes inpatient stays; the encounter class says which a note is.
    text = f"Appendectomy. Type 2 diabetes mellitus. Seen at {PHI} clinic."
    systems = [{c["system"] for c in _suggest(service, text, encounter_class=cls)["codes"]}
               for cls in ("inpatient", "outpatient")]
    assert systems == [{"ICD-10-CM", "ICD-10-PCS"}, {"ICD-10-CM"}]
    notes = [{"text": text, "note_id": "o-1", "encounter_class": "outpatient"}, {"text": text, "note_id": "o-2"}]
    results = service.call("POST", "/v1/codes:suggestBatch", "ehr", json={"notes": notes}).json()["results"]
    assert [{c["system"] for c in r["codes"]} for r in results] == [{"ICD-10-CM"}, {"ICD-10-CM", "ICD-10-PCS"}]
    refused = service.call("POST", "/v1/codes:suggest", "ehr",
                           json={"text": text, "encounter_class": "outpatient", "systems": ["ICD-10-PCS"]})
    assert refused.status_code == 422 and "outpatient note has no ICD-10-PCS codes" in refused.text
    unknown = service.call("POST", "/v1/codes:suggest", "ehr", json={"text": text, "encounter_class": "ambulatory"})
    assert unknown.status_code == 422 and "encounter_class" in unknown.text
    assert get_args(EncounterClass) == ENCOUNTER_CLASSES  # the API offers the classes the model knows


def test_twenty_coders_claim_a_hundred_items_each_exactly_once(service: Service) -> None:
    queue: ReviewQueue = service.client.app.state.queue
    ehr = Principal("ehr-1", "ehr")
    for n in range(100):
        queue.record_suggestion(
            ehr, text=f"Possible pneumonia, note {n}.", note_id=f"c-{n}", needs_review=True,
            codes=[{"code": "J18.9", "system": "ICD-10-CM", "confidence": 0.5 + n / 1000, "accepted": False}],
            model_version="keyword-1", thresholds={"accept": 0.9},
        )
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def coder(number: int) -> None:
        me = Principal(f"coder-{number}", "coder")
        mine = claimed.setdefault(me.name, [])
        try:
            start.wait()
            while (item := queue.claim_next(me)) is not None:
                mine.append(item.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=coder, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    every = [item for items in claimed.values() for item in items]
    assert len(every) == 100 and len(set(every)) == 100
    assert sum(1 for items in claimed.values() if items) > 1  # the work was shared, not serialised
    holders = {i.id: i.claimed_by for i in queue.list(status="claimed", limit=500).items}
    assert all(holders[item] == name for name, items in claimed.items() for item in items)


def test_concurrent_posts_of_one_note_make_one_item(service: Service) -> None:
    results: list[str] = []

    def post() -> None:
        results.append(_suggest(service, UNSURE, "same-note")["review_id"])

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert service.call("GET", "/v1/reviews", "coder").json()["total"] == 1

"""Hostile input. Schemathesis sends every operation what the OpenAPI document allows and what it does not;
hand-made cases then try what a fuzzer seldom finds: empty and enormous bodies, bytes that are not UTF-8,
JSON nested 10,000 deep, NUL and other control characters, wrong types, unicode, SQL and HTML in every
string, on SQLite and on PostgreSQL. Whatever comes in, the answer is a success or a JSON error with a stable
code, never a 500 and never the note's text, and whatever is stored comes back exactly as it was sent."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import ASGIClient, get_client
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, inspect, select

from models.predictor import Predictor
from service.app import create_app
from service.db import ApiKey, AuditEvent, ReviewItem
from service.settings import Settings
from tests.phi_scan import PHI
from tests.service_fixtures import Service, make_service

SUGGEST, BATCH, FHIR = "/v1/codes:suggest", "/v1/codes:suggestBatch", "/fhir/r4/DocumentReference/$suggest"
JSON_HEADERS = {"Content-Type": "application/json"}
FHIR_HEADERS = {"Content-Type": "application/fhir+json"}
NOTE = f"Possible pneumonia, {PHI}."  # queued for review: the keyword model is 0.6 sure of J18.9
TABLES = {"api_keys", "review_items", "audit_events", "model_deployments"}

# --- schemathesis over the OpenAPI document ------------------------------------------------------------

FUZZ_CONFIG = schemathesis.Config.from_dict({
    # The same cases on every run, so that a CI failure reproduces; valid ("positive") and invalid
    # ("negative") cases alike; at most 20 generated per operation and phase keeps the run under a minute.
    "seed": 20261127,
    "generation": {"mode": "all", "max-examples": 20, "deterministic": True},
})
# No 5xx; a status, media type, headers and body the operation documents; schema-violating input refused (a
# numeric string for an integer would pass: pydantic's lax mode reads "5" as 5, see test_top_k_...). The /ui
# static files are no operation of the document (a mount), and /metrics documents text/plain, which has no
# schema for a body to conform to: the document leaves both out, not this test. `positive_data_acceptance` is
# not run, because refusing schema-valid input is by design where the schema cannot say what is valid: a code
# the catalogue does not know ("0"), a FHIR body that is no DocumentReference (`{}`).
FUZZ_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance, negative_data_rejection]
KNOWN_CODES = ["E11.9", "E11", "S72.001", "0DTJ4ZZ", "0DT"]  # billable, a category, a 7th-character case, PCS


def _openapi_document() -> dict:
    """The service's OpenAPI document, from an app that is never started (in-memory database, no model)."""
    return create_app(Settings(database_url="sqlite://", auto_migrate=False, models_dir="unused")).openapi()


schema = schemathesis.openapi.from_dict(_openapi_document(), config=FUZZ_CONFIG)


@dataclass
class FuzzTarget:
    session: ASGIClient
    headers: dict[str, str]
    existing: dict[str, list[str]]  # path parameter -> values that name something that exists


@pytest.fixture(scope="module")
def fuzz_target(predictor: Predictor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """The app on SQLite with four queued notes (one resolved), called in-process through schemathesis's ASGI
    client with an admin key (admin may call every operation)."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    svc = make_service(f"sqlite:///{tmp / 'coder.db'}", predictor, tmp)
    review_ids = []
    for n, finding in enumerate(["pneumonia", "diabetes", "hypertension", "pneumonia"]):
        response = svc.call("POST", SUGGEST, "ehr", json={"text": f"Possible {finding}, note {n}.",
                                                            "note_id": f"fuzz-{n}"})
        review_ids.append(response.json()["review_id"])
    assert svc.call("POST", f"/v1/reviews/{review_ids[0]}:claim", "coder").status_code == 200
    assert svc.call("POST", f"/v1/reviews/{review_ids[0]}:resolve", "coder",
                    json={"codes": [{"code": "J18.9"}]}).status_code == 200
    # A name no generated `POST /v1/keys/{name}:revoke` will hit, so the run keeps its key.
    admin = svc.client.app.state.keys.create("schemathesis-admin-7f3c9e", "admin").key
    session = get_client(svc.client.app)
    yield FuzzTarget(session, {"X-API-Key": admin}, {"review_id": review_ids, "code": KNOWN_CODES})
    session.close()
    svc.client.app.state.engine.dispose()


def _aim_at_existing(case: schemathesis.Case, existing: dict[str, list[str]]) -> None:
    """Point about half the cases at a review item or code that exists: a generated one never does, and an
    operation that only ever answers 404 never has its success response checked. Chosen from the generated
    value, so the run stays as reproducible as the values are."""
    for name, values in existing.items():
        value = (case.path_parameters or {}).get(name)
        if isinstance(value, str) and len(value) % 2 == 0:
            case.path_parameters[name] = values[len(value) // 2 % len(values)]


@schema.parametrize()
def test_every_operation_meets_its_document_whatever_it_is_sent(case: schemathesis.Case,
                                                                fuzz_target: FuzzTarget) -> None:
    _aim_at_existing(case, fuzz_target.existing)
    case.call_and_validate(session=fuzz_target.session, base_url="http://testserver",
                           headers=fuzz_target.headers, checks=FUZZ_CHECKS)


# --- hand-made cases, on SQLite and PostgreSQL ---------------------------------------------------------


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    """A JSON error of this status with this stable code, quoting no note text."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert PHI not in response.text


def _queued(service: Service, **filters: str) -> list[dict]:
    response = service.call("GET", "/v1/reviews", "coder", params={**filters, "limit": 500})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _claimed_item(service: Service, note_id: str = "claimed-1") -> str:
    review_id = service.call("POST", SUGGEST, "ehr", json={"text": NOTE, "note_id": note_id}).json()["review_id"]
    assert service.call("POST", f"/v1/reviews/{review_id}:claim", "coder").status_code == 200
    return review_id


def _document(text: str = NOTE, **fields) -> dict:
    return {
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Patient/1"},
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64.b64encode(text.encode()).decode()}}],
        **fields,
    }


def _post_raw(service: Service, path: str, body: bytes | str, role: str = "ehr", fhir: bool = False):
    headers = {**service.headers(role), **(FHIR_HEADERS if fhir else JSON_HEADERS)}
    return service.client.post(path, content=body, headers=headers)


@pytest.mark.parametrize(("body", "code"), [
    pytest.param({"text": ""}, "invalid_request", id="empty"),
    pytest.param({"text": " \t\r\n\u00a0\u2003\u3000 "}, "invalid_input", id="whitespace"),
    pytest.param({"notes": [{"text": NOTE, "note_id": "b-1"}, {"text": "\n \n"}]}, "invalid_input",
                 id="whitespace-in-batch"),
])
def test_an_empty_note_is_refused_and_nothing_is_queued(service: Service, body: dict, code: str) -> None:
    _assert_error(service.call("POST", BATCH if "notes" in body else SUGGEST, "ehr", json=body), 422, code)
    assert _queued(service) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_ten_megabyte_body_is_refused_and_the_server_answers_on(service: Service, chunked: bool) -> None:
    body = json.dumps({"text": f"Possible pneumonia {PHI} " * 400_000}).encode()  # about 10 MB
    assert len(body) > 5 * service.settings.max_body_bytes
    # A generator has no length: httpx sends it chunked, with no Content-Length to refuse it by.
    content = (body[i:i + 65_536] for i in range(0, len(body), 65_536)) if chunked else body
    response = service.client.post(SUGGEST, content=content, headers={**service.headers("ehr"), **JSON_HEADERS})
    _assert_error(response, 413, "body_too_large")
    assert service.client.get("/healthz").status_code == 200
    assert service.call("POST", SUGGEST, "ehr", json={"text": NOTE, "note_id": "after"}).status_code == 200
    assert [item["note_id"] for item in _queued(service)] == ["after"]


INVALID_UTF8 = b'{"text": "Possible pneumonia ' + PHI.encode() + b' \xff\xfe\xc3\x28 \xed\xa0\x80"}'


@pytest.mark.parametrize(("path", "role", "fhir"), [
    (SUGGEST, "ehr", False), (BATCH, "ehr", False), (FHIR, "ehr", True), ("/v1/reviews/{id}:resolve", "coder", False),
    ("/v1/catalog:check", "coder", False), ("/v1/keys", "admin", False),
])
def test_a_body_that_is_not_utf8_is_refused(service: Service, path: str, role: str, fhir: bool) -> None:
    path = path.format(id=_claimed_item(service))
    _assert_error(_post_raw(service, path, INVALID_UTF8, role, fhir), 422, "invalid_request")


DEEP_ARRAYS = "[" * 10_000 + "]" * 10_000
DEEP_OBJECTS = '{"a":' * 10_000 + f'"{PHI}"' + "}" * 10_000


@pytest.mark.parametrize(("path", "body", "role", "fhir"), [
    pytest.param(SUGGEST, DEEP_ARRAYS, "ehr", False, id="suggest-arrays"),
    pytest.param(SUGGEST, DEEP_OBJECTS, "ehr", False, id="suggest-objects"),
    pytest.param(BATCH, '{"notes": ' + DEEP_ARRAYS + "}", "ehr", False, id="batch-arrays-in-field"),
    pytest.param(FHIR, DEEP_OBJECTS, "ehr", True, id="fhir-objects"),
    pytest.param("/v1/reviews/{id}:resolve", '{"codes": [' + DEEP_OBJECTS + "]}", "coder", False,
                 id="resolve-objects-in-field"),
])
def test_json_nested_ten_thousand_deep_is_refused(service: Service, path: str, body: str, role: str,
                                                  fhir: bool) -> None:
    path = path.format(id=_claimed_item(service))
    _assert_error(_post_raw(service, path, body, role, fhir), 422, "invalid_request")
    assert service.client.get("/healthz").status_code == 200


def test_a_fhir_document_too_deep_to_validate_is_refused(service: Service) -> None:
    extension: dict = {"url": "https://example.org/leaf", "valueString": PHI}
    for _ in range(200):  # decodes fine; fhir.resources' recursive validation would exhaust the stack
        extension = {"url": "https://example.org/node", "extension": [extension]}
    response = _post_raw(service, FHIR, json.dumps(_document(id="deep-1", extension=[extension])), fhir=True)
    _assert_error(response, 422, "invalid_request")
    assert _queued(service) == []


CONTROL = "esc \x1b[31m red \x1b[0m, rlo \u202e desrever \u202c, bell \x07, del \x7f, ls \u2028, bom \ufeff, \t\r\n"


@pytest.mark.parametrize("field", ["text", "note_id", "encounter_id", "comment"])
def test_control_characters_are_stored_and_come_back_exactly(service: Service, field: str) -> None:
    sent = {"text": NOTE, "note_id": "ctrl-1", "encounter_id": "enc-1", "comment": "checked"}
    sent[field] = f"{NOTE} {CONTROL}" if field == "text" else CONTROL
    suggested = service.call("POST", SUGGEST, "ehr", json={k: v for k, v in sent.items() if k != "comment"})
    assert suggested.status_code == 200, suggested.text
    review_id = suggested.json()["review_id"]
    assert service.call("POST", f"/v1/reviews/{review_id}:claim", "coder").status_code == 200
    resolved = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder",
                            json={"codes": [{"code": "J18.9"}], "comment": sent["comment"]})
    assert resolved.status_code == 200, resolved.text
    item = service.call("GET", f"/v1/reviews/{review_id}", "coder").json()
    assert {name: item[name] for name in sent} == sent
    if field in ("note_id", "encounter_id"):
        assert [i["id"] for i in _queued(service, **{field: sent[field]})] == [review_id]


def test_nul_is_refused_in_every_string_that_is_stored_or_looked_up(service: Service) -> None:
    """PostgreSQL text cannot hold NUL (SQLite can): both databases refuse it alike, with a 422."""
    review_id = _claimed_item(service)
    nul = f"a\x00{PHI}"
    nul_in_url = "a\x00b"  # the test client logs URLs: no note marker in them
    refused = [
        service.call("POST", SUGGEST, "ehr", json={"text": f"{NOTE} \x00"}),
        service.call("POST", SUGGEST, "ehr", json={"text": NOTE, "note_id": nul}),
        service.call("POST", SUGGEST, "ehr", json={"text": NOTE, "note_id": "n-1", "encounter_id": nul}),
        service.call("POST", BATCH, "ehr", json={"notes": [{"text": NOTE}, {"text": f"{NOTE}\x00"}]}),
        _post_raw(service, FHIR, json.dumps(_document(f"{NOTE}\x00", id="nul-1")), fhir=True),
        _post_raw(service, FHIR, json.dumps(_document(identifier=[{"value": nul}])), fhir=True),
        service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder",
                     json={"codes": [{"code": "J18.9"}], "comment": nul}),
        service.call("POST", "/v1/keys", "admin", json={"name": "key\x00", "role": "ehr"}),
        service.call("POST", "/v1/keys/ehr-1%00:revoke", "admin"),
        *(service.call(method, f"/v1/reviews/{review_id[:8]}%00{suffix}", "coder") for method, suffix in (
            ("GET", ""), ("GET", "/history"), ("POST", ":claim"), ("POST", ":release"))),
        *(service.call("GET", "/v1/reviews", "coder", params={name: nul_in_url})
          for name in ("note_id", "encounter_id", "claimed_by", "model_version")),
        *(service.call("GET", "/v1/audit", "admin", params={name: nul_in_url})
          for name in ("note_id", "review_id", "actor", "action")),
    ]
    for response in refused:
        _assert_error(response, 422, "invalid_request")
    assert [item["id"] for item in _queued(service)] == [review_id]
    item = service.call("GET", f"/v1/reviews/{review_id}", "coder").json()
    assert item["status"] == "claimed" and item["comment"] is None
    assert service.call("GET", "/v1/me", "ehr").status_code == 200  # the key was not revoked


WRONG_TYPES = {
    # SuggestRequest
    "text": [None, 42, 4.2, True, [], {}, [NOTE], {"text": NOTE}],
    "top_k": [None, "five", 2.5, [], {}, [5]],
    "systems": ["ICD-10-CM", 7, {}, [7], ["ICD-9-CM"], [None], [["ICD-10-CM"]]],
    "note_id": [42, True, [], {}, ""],
    "encounter_id": [42, False, [], {}, ""],
    # ResolveRequest
    "codes": [None, "J18.9", {"code": "J18.9"}, [7], ["J18.9"], [None], [{"code": 7}], [{"code": None}],
              [{"code": "J18.9", "system": "ICD-9-CM"}], [{"code": ""}], [{"code": "J18.9", "extra": 1}]],
    "comment": [42, True, [], {"text": "x"}, "x" * 2001],
}


@pytest.mark.parametrize("field", list(WRONG_TYPES))
def test_a_wrong_type_in_any_field_is_refused_and_changes_nothing(service: Service, field: str) -> None:
    if field in ("codes", "comment"):
        review_id = _claimed_item(service)
        path, role, valid = f"/v1/reviews/{review_id}:resolve", "coder", {"codes": [{"code": "J18.9"}]}
    else:
        review_id, path, role, valid = None, SUGGEST, "ehr", {"text": NOTE, "note_id": "typed-1"}
    for value in WRONG_TYPES[field]:
        _assert_error(service.call("POST", path, role, json={**valid, field: value}), 422, "invalid_request")
    if review_id is None:
        assert _queued(service) == []
    else:
        item = service.call("GET", f"/v1/reviews/{review_id}", "coder").json()
        assert item["status"] == "claimed" and item["final_codes"] is None


@pytest.mark.parametrize(("top_k", "status"), [
    ("0", 422), ("-1", 422), ("101", 422), ("100000000000000000000", 422), ("1.5", 422), ("1e400", 422),
    ("NaN", 422), ('"5"', 200), ('"1"', 200),
])
def test_top_k_out_of_range_or_fractional_is_refused(service: Service, top_k: str, status: int) -> None:
    body = f'{{"text": "Possible pneumonia and diabetes, {PHI}.", "top_k": {top_k}}}'
    response = _post_raw(service, SUGGEST, body)
    if status == 422:
        _assert_error(response, 422, "invalid_request")
    else:  # a numeric string is read as its number (pydantic's lax mode), and honoured
        assert response.status_code == 200, response.text
        assert len(response.json()["codes"]) == min(2, int(json.loads(top_k)))


@pytest.mark.parametrize(("path", "role", "body"), [
    pytest.param(SUGGEST, "ehr", {"text": NOTE, "colour": "red"}, id="suggest"),
    pytest.param(BATCH, "ehr", {"notes": [{"text": NOTE, "priority": 1}]}, id="batch-note"),
    pytest.param(BATCH, "ehr", {"notes": [{"text": NOTE}], "async": True}, id="batch"),
    pytest.param("/v1/reviews/{id}:resolve", "coder", {"codes": [], "comment": "x", "force": True}, id="resolve"),
    pytest.param("/v1/reviews/{id}:resolve", "coder", {"codes": [{"code": "J18.9", "poa": "Y"}]}, id="resolve-code"),
    pytest.param("/v1/catalog:check", "coder", {"codes": [], "strict": True}, id="check"),
    pytest.param("/v1/keys", "admin", {"name": "k-1", "role": "ehr", "expires": "never"}, id="key"),
])
def test_an_unknown_field_is_refused(service: Service, path: str, role: str, body: dict) -> None:
    path = path.format(id=_claimed_item(service))
    _assert_error(service.call("POST", path, role, json=body), 422, "invalid_request")
    assert len(_queued(service)) == 1  # only the claimed item made for the resolve cases


def test_a_fhir_document_that_breaks_a_note_limit_is_refused(service: Service) -> None:
    for document in [
        _document(identifier=[{"value": "x" * 201}]),  # valid FHIR; a note_id has at most 200 characters
        _document(id="long-enc", context={"encounter": [{"reference": "Encounter/" + "7" * 200}]}),
        _document(id="extra", colour="red"),
        _document(" \n\t ", id="blank"),
    ]:
        _assert_error(_post_raw(service, FHIR, json.dumps(document), fhir=True), 422, "invalid_request")
    assert _queued(service) == []


def test_query_values_out_of_range_are_refused(service: Service) -> None:
    for path, role, params in [
        ("/v1/reviews", "coder", {"offset": 2**63}),
        ("/v1/audit", "admin", {"offset": 10**30}),
        ("/v1/audit", "admin", {"since": "2026-01-01T00:00:00"}),  # no zone: which midnight?
        ("/v1/audit", "admin", {"since": "2026"}),  # not 2026 seconds after 1970
        ("/v1/audit/accuracy", "admin", {"until": "2026-01-01"}),
        ("/v1/reviews:export", "admin", {"since": "9999-12-31T23:00:00-05:00"}),  # year 10000 in UTC
        ("/v1/audit", "admin", {"until": "0001-01-01T00:00:00+01:00"}),  # year 0 in UTC
    ]:
        _assert_error(service.call("GET", path, role, params=params), 422, "invalid_request")
    assert service.call("GET", "/v1/reviews", "coder", params={"offset": 2**63 - 1}).status_code == 200


UNICODE = {
    "emoji": "\U0001fa7a \U0001f469\U0001f3fd\u200d\u2695\ufe0f \U0001f1fa\U0001f1e6 \U0001fac0",
    "rtl": "\u0645\u0631\u064a\u0636 \u200f\u05e9\u05dc\u05d5\u05dd \u202b\u0639\u0631\u0628\u064a\u202c",
    "combining": "e\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0352\u0353 \u0915\u094d\u0937",  # not normalised
    "cjk": "\u7cd6\u5c3f\u75c5 \u9ad8\u8840\u538b \ub2f9\ub1e8\ubcd1 \u3068\u3046\u306b\u3087\u3046",
}


@pytest.mark.parametrize("script", list(UNICODE))
def test_unicode_in_every_string_field_round_trips_exactly(service: Service, script: str) -> None:
    chars = UNICODE[script]
    note_id, encounter_id, comment = f"note {chars}", f"enc {chars}", f"checked {chars}"
    text = f"{chars} Possible pneumonia {PHI}. {chars}"
    suggested = service.call("POST", SUGGEST, "ehr", json={"text": text, "note_id": note_id,
                                                           "encounter_id": encounter_id}).json()
    assert suggested["note_id"] == note_id
    span = suggested["codes"][0]["evidence"][0]  # offsets count characters (code points), not bytes
    assert text[span["start"]:span["end"]] == "pneumonia"
    review_id = suggested["review_id"]
    assert [i["id"] for i in _queued(service, note_id=note_id)] == [review_id]
    assert [i["id"] for i in _queued(service, encounter_id=encounter_id)] == [review_id]
    assert service.call("POST", f"/v1/reviews/{review_id}:claim", "coder").status_code == 200
    resolved = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder",
                            json={"codes": [{"code": "J18.9"}], "comment": comment}).json()
    assert resolved["item"]["comment"] == comment
    item = service.call("GET", f"/v1/reviews/{review_id}", "coder").json()
    assert (item["text"], item["note_id"], item["encounter_id"], item["comment"]) == (
        text, note_id, encounter_id, comment)
    events = service.call("GET", "/v1/audit", "admin", params={"note_id": note_id}).json()["events"]
    assert {e["action"] for e in events} >= {"suggest", "enqueue", "claim", "resolve"}
    assert {e["note_id"] for e in events} == {note_id}
    exported = service.call("GET", "/v1/reviews:export", "admin")
    assert [(r["id"], r["text"]) for r in map(json.loads, exported.text.splitlines())] == [(note_id, text)]
    search = service.call("GET", "/v1/catalog/search", "coder", params={"q": chars})
    assert search.status_code == 200 and search.json()["query"] == chars
    key = service.call("POST", "/v1/keys", "admin", json={"name": f"key {chars}", "role": "coder"}).json()
    assert key["name"] == f"key {chars}"
    assert service.client.get("/v1/me", headers={"X-API-Key": key["key"]}).json()["name"] == f"key {chars}"


def _table_counts(service: Service) -> dict[str, int]:
    engine = service.client.app.state.engine
    assert TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        return {table.__tablename__: connection.scalar(select(func.count()).select_from(table))
                for table in (ApiKey, ReviewItem, AuditEvent)}


@pytest.mark.parametrize("attack", ["'; DROP TABLE review_items; --", '" OR 1=1 --', "%' OR '%'='%"])
def test_sql_in_ids_comments_searches_paths_and_key_names_is_only_data(service: Service, attack: str) -> None:
    other = service.call("POST", SUGGEST, "ehr", json={"text": NOTE, "note_id": "other-1"}).json()["review_id"]
    suggested = service.call("POST", SUGGEST, "ehr", json={"text": f"{NOTE} {attack}", "note_id": attack,
                                                           "encounter_id": attack}).json()
    review_id = suggested["review_id"]
    before = _table_counts(service)

    assert [i["id"] for i in _queued(service, note_id=attack)] == [review_id]
    assert [i["id"] for i in _queued(service, encounter_id=attack)] == [review_id]
    assert _queued(service, claimed_by=attack) == [] and _queued(service, model_version=attack) == []
    _assert_error(service.call("GET", f"/v1/reviews/{quote(attack, safe='')}", "coder"), 404, "review_not_found")
    _assert_error(service.call("POST", f"/v1/reviews/{quote(attack, safe='')}:claim", "coder"), 404,
                  "review_not_found")
    assert service.call("GET", "/v1/catalog/search", "coder", params={"q": attack}).status_code == 200
    assert service.call("GET", "/v1/audit", "admin", params={"actor": attack}).json()["events"] == []
    assert {e["review_id"] for e in service.call("GET", "/v1/audit", "admin", params={"note_id": attack}).json()[
        "events"]} == {review_id}
    assert service.call("POST", f"/v1/reviews/{review_id}:claim", "coder").status_code == 200
    resolved = service.call("POST", f"/v1/reviews/{review_id}:resolve", "coder",
                            json={"codes": [{"code": "J18.9"}], "comment": attack})
    assert resolved.status_code == 200 and resolved.json()["item"]["comment"] == attack
    created = service.call("POST", "/v1/keys", "admin", json={"name": attack, "role": "ehr"})
    assert created.status_code == 201 and created.json()["name"] == attack
    assert service.call("POST", f"/v1/keys/{quote(attack, safe='')}:revoke", "admin").status_code == 204
    _assert_error(service.call("POST", f"/v1/keys/{quote(attack, safe='')}:revoke", "admin"), 404, "not_found")

    after = _table_counts(service)
    assert after["review_items"] == before["review_items"] == 2
    assert after["api_keys"] == before["api_keys"] + 1
    keys = {k["name"]: k["revoked_at"] for k in service.call("GET", "/v1/keys", "admin").json()["keys"]}
    assert keys.pop(attack) is not None and all(revoked is None for revoked in keys.values())
    assert service.call("GET", f"/v1/reviews/{other}", "coder").json()["status"] == "open"


@pytest.mark.parametrize("markup", ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"])
def test_html_in_ids_text_and_comments_is_stored_and_returned_as_json_data(service: Service, markup: str) -> None:
    text = f"{markup} {NOTE} {markup}"
    responses: list[httpx.Response] = []

    def call(method: str, path: str, role: str, **kwargs) -> httpx.Response:
        responses.append(service.call(method, path, role, **kwargs))
        return responses[-1]

    review_id = call("POST", SUGGEST, "ehr", json={"text": text, "note_id": markup,
                                                    "encounter_id": markup}).json()["review_id"]
    call("POST", f"/v1/reviews/{review_id}:claim", "coder")
    call("POST", f"/v1/reviews/{review_id}:resolve", "coder", json={"codes": [{"code": "J18.9"}], "comment": markup})
    item = call("GET", f"/v1/reviews/{review_id}", "coder").json()
    assert (item["text"], item["note_id"], item["encounter_id"], item["comment"]) == (text, markup, markup, markup)
    call("GET", f"/v1/reviews/{quote(markup, safe='')}", "coder")  # a 404, and JSON too
    call("GET", "/v1/catalog/search", "coder", params={"q": markup})
    call("GET", "/v1/reviews", "coder", params={"note_id": markup})
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 404, 200, 200]
    assert all(r.headers["content-type"] == "application/json" for r in responses)


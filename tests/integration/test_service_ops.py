"""Operating the service: no note text in logs, errors or metrics; request ids; Prometheus metrics; the
FHIR endpoint; migrations on SQLite and PostgreSQL and the append-only audit log; the body size limit."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.routing import APIRoute, iter_route_contexts
from fhir.resources.R4B.bundle import Bundle
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, func, inspect, select, update
from sqlalchemy.exc import DBAPIError

from models.errors import CoderError
from models.predictor import Predictor
from service import audit, db, fhir
from service.auth import SYSTEM
from service.db import AuditEvent, Base
from service.deps import get_predictor
from service.observability import configure_logging
from tests.service_fixtures import Service, empty_postgres, make_service

TABLES = {"api_keys", "review_items", "audit_events", "model_deployments"}
FHIR_HEADERS = {"Content-Type": "application/fhir+json"}


def _document(text: str | None = None, *, data: str | None = None, doc_id: str | None = "doc-1",
              subject: dict | None = None, **extra) -> dict:
    """A DocumentReference with one text/plain attachment (the text base64-encoded, or `data` as given)."""
    document = {
        "resourceType": "DocumentReference", "status": "current",
        "subject": subject if subject is not None else {"reference": "Patient/1"},
        "context": {"encounter": [{"reference": "Encounter/7"}]},
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": data if data is not None else base64.b64encode(text.encode()).decode()}}],
        **extra,
    }
    if doc_id is not None:
        document["id"] = doc_id
    return document


def _post_fhir(svc: Service, document: dict, role: str = "ehr", **kwargs):
    return svc.client.post("/fhir/r4/DocumentReference/$suggest", content=json.dumps(document),
                           headers={**FHIR_HEADERS, **svc.headers(role)}, **kwargs)


# --- logs, errors and metrics carry no note text ------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The service's JSON log handler (as `configure_logging("DEBUG")` installs it) writing to a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    uvicorn = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
               for name in ("uvicorn", "uvicorn.error")}
    access_disabled = logging.getLogger("uvicorn.access").disabled
    configure_logging("DEBUG")
    handler = root.handlers[0]
    stream = io.StringIO()
    handler.setStream(stream)
    # pytest's own capture handlers stay beside ours: it adds and removes them around each test phase.
    root.handlers[:] = [*saved_handlers, handler]
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, (handlers, propagate) in uvicorn.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
        logging.getLogger("uvicorn.access").disabled = access_disabled


def _log_lines(stream: io.StringIO) -> list[dict]:
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all("request_id" in r and "level" in r and "message" in r for r in records), records
    return records


class _FailingPredictor:
    """A model that puts the note into its exception message, as a careless one might."""

    def __init__(self, inner: Predictor, error: type[Exception] = CoderError) -> None:
        self.inner, self.error = inner, error

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def predict(self, text: str, **_) -> None:
        raise self.error(f"cannot code {text!r}")

    def predict_batch(self, texts: list[str], **_) -> None:
        raise self.error(f"cannot code {texts!r}")


def test_note_text_is_in_no_log_line_error_or_metric(service: Service, json_log: io.StringIO) -> None:
    marker = f"Zq{uuid.uuid4().hex}"
    responses = []

    def send(method: str, url: str, role: str, expected: int, headers: dict | None = None, **kwargs):
        headers = {**service.headers(role), **(headers or {})}
        response = service.client.request(method, url, headers=headers, **kwargs)
        assert response.status_code == expected, (url, response.status_code, response.text[:300])
        responses.append(response)
        return response

    send("POST", "/v1/codes:suggest", "ehr", 200, json={"text": f"Type 2 diabetes, {marker}.", "note_id": "phi-1"},
         headers={"X-Request-ID": "phi-suggest"})
    send("POST", "/v1/codes:suggestBatch", "ehr", 200, json={"notes": [
        {"text": f"{marker} appendectomy."}, {"text": f"Possible pneumonia {marker}.", "note_id": "phi-2"}]})
    document = _document(f"Hypertension. {marker}", doc_id="phi-3")
    assert _post_fhir(service, document).status_code == 200
    review_id = send("POST", "/v1/codes:suggest", "ehr", 200,
                     json={"text": f"Possible pneumonia. {marker}", "note_id": "phi-4"}).json()["review_id"]
    assert review_id
    claimed = service.call("POST", f"/v1/reviews/{review_id}:claim", "coder")
    assert claimed.status_code == 200 and marker in claimed.json()["text"]  # the coder's view: the point of it
    send("POST", f"/v1/reviews/{review_id}:resolve", "coder", 200, json={"codes": [{"code": "J18.9"}]})

    errors = [
        send("POST", "/v1/codes:suggest", "ehr", 422, json={"text": f"Pneumonia {marker}", "top_k": 0}),
        send("POST", "/v1/codes:suggest", "ehr", 422, json={"text": marker, "colour": marker}),
        send("POST", "/v1/codes:suggest", "ehr", 422, json={"text": marker, "systems": [marker]}),
        send("POST", "/v1/codes:suggest", "ehr", 422, content=f'{{"text": "{marker}",}}',
             headers={"Content-Type": "application/json"}),
        send("POST", "/v1/codes:suggestBatch", "ehr", 422, json={"notes": [{"text": marker, "top_k": 1000}]}),
        send("POST", "/v1/codes:suggest", "ehr", 413,
             json={"text": marker * (service.settings.max_body_bytes // len(marker) + 1)}),
        _post_fhir(service, _document(data=f"Possible pneumonia {marker}!!")),
        _post_fhir(service, _document(f"Pneumonia {marker}", date=marker)),
        _post_fhir(service, _document(f"Pneumonia {marker}", subject={})),
        _post_fhir(service, {**_document(f"Pneumonia {marker}"), "resourceType": marker}),
        send("POST", f"/v1/reviews/{review_id}:resolve", "coder", 409, json={"codes": [{"code": "J18.9"}]}),
    ]
    # A model error whose message quotes the note: the service reports it without the message.
    app = service.client.app
    app.dependency_overrides[get_predictor] = lambda: _FailingPredictor(app.state.registry.serving.predictor)
    try:
        failed = service.call("POST", "/v1/codes:suggest", "ehr", json={"text": f"Pneumonia {marker}"})
    finally:
        del app.dependency_overrides[get_predictor]
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "coder_error"
    errors.append(failed)
    # Any other exception: the same, through the last-resort handler (no traceback with the message).
    app.dependency_overrides[get_predictor] = lambda: _FailingPredictor(
        app.state.registry.serving.predictor, RuntimeError)
    try:
        crashed = service.call("POST", "/v1/codes:suggest", "ehr", json={"text": f"Pneumonia {marker}"})
    finally:
        del app.dependency_overrides[get_predictor]
    assert crashed.status_code == 500 and crashed.json()["error"]["code"] == "internal_error"
    errors.append(crashed)
    for response in errors:
        assert response.status_code >= 400 and response.json()["error"]["code"], response.text[:300]
        assert marker not in response.text, response.text[:300]

    metrics = service.call("GET", "/metrics", "admin")
    assert metrics.status_code == 200 and "coder_notes_served_total" in metrics.text
    assert marker not in metrics.text
    events = service.call("GET", "/v1/audit", "admin", params={"limit": 1000})
    assert len(events.json()["events"]) >= 10 and marker not in events.text

    records = _log_lines(json_log)
    assert marker not in json_log.getvalue()
    served = [r for r in records if r["message"] == "request" and r["request_id"] == "phi-suggest"]
    assert len(served) == 1 and served[0]["route"] == "/v1/codes:suggest" and served[0]["status"] == 200
    assert any(r["message"] == "coder error" and r["level"] == "ERROR"
               and r["request_id"] == failed.headers["x-request-id"] for r in records)
    assert any(r["message"] == "unhandled error" and r["error_type"] == "RuntimeError"
               and r["request_id"] == crashed.headers["x-request-id"] for r in records)
    logged_statuses = sorted(r["status"] for r in records if r["message"] == "request")
    assert {413, 422, 500} <= set(logged_statuses)


def test_request_ids_are_echoed_or_made_fresh(service: Service, json_log: io.StringIO) -> None:
    given = service.client.get("/healthz", headers={"X-Request-ID": "trace-42.a:b_c"})
    assert given.headers["x-request-id"] == "trace-42.a:b_c"
    fresh = [service.client.get("/healthz").headers["x-request-id"] for _ in range(2)]
    # Letters and digits outside ASCII (sent as the Latin-1 bytes HTTP carries) are not echoed either.
    for bad in ("two words", "x" * 101, "a;b", "", "trac\xe9-1", "\xb2\xb3"):
        made = service.client.get("/healthz", headers={"X-Request-ID": bad.encode("latin-1")}).headers["x-request-id"]
        assert made != bad
        fresh.append(made)
    assert all(len(rid) == 32 and set(rid) <= set("0123456789abcdef") for rid in fresh)
    assert len(set(fresh)) == len(fresh)
    refused = service.client.get("/v1/model", headers={"X-Request-ID": "no-key-1"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "no-key-1"

    logged = [r["request_id"] for r in _log_lines(json_log) if r["message"] == "request"]
    assert logged == ["trace-42.a:b_c", *fresh, "no-key-1"]


def _scrape(svc: Service) -> list:
    response = svc.call("GET", "/metrics", "admin")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return list(text_string_to_metric_families(response.text))


def _value(families: list, sample_name: str, **labels: str) -> float:
    return sum(s.value for family in families for s in family.samples
               if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_describe_traffic_queue_and_model(service: Service) -> None:
    before = _scrape(service)
    bodies = [{"text": "Type 2 diabetes mellitus and essential hypertension."},
              {"text": "Possible pneumonia.", "note_id": "m-1"}, {"text": "Possible diabetes.", "note_id": "m-2"}]
    results = [service.call("POST", "/v1/codes:suggest", "ehr", json=b).json() for b in bodies]
    results += service.call("POST", "/v1/codes:suggestBatch", "ehr",
                            json={"notes": [{"text": "Appendectomy."}]}).json()["results"]
    review_ids = [r["review_id"] for r in results if r["review_id"]]
    assert len(review_ids) == 2
    assert service.call("POST", f"/v1/reviews/{review_ids[0]}:claim", "coder").status_code == 200
    assert service.call("GET", f"/v1/reviews/{review_ids[1]}", "coder").status_code == 200
    after = _scrape(service)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("coder_notes_served_total", needs_review="true") == 2
    assert delta("coder_notes_served_total", needs_review="false") == 2
    for system in ("ICD-10-CM", "ICD-10-PCS"):
        for accepted in (True, False):
            served = sum(1 for r in results for c in r["codes"] if c["system"] == system and c["accepted"] == accepted)
            assert delta("coder_codes_suggested_total", system=system, accepted=str(accepted).lower()) == served
    assert delta("coder_codes_suggested_total", system="ICD-10-PCS", accepted="true") == 1

    open_items = service.call("GET", "/v1/reviews", "coder", params={"status": "open"}).json()["total"]
    assert open_items == 1 and _value(after, "coder_review_queue_depth") == open_items
    assert _value(after, "coder_model_info", model_version="keyword-1") == 1

    latency = next(f for f in after if f.name == "coder_request_duration_seconds")
    assert latency.type == "histogram"
    assert delta("coder_request_duration_seconds_count", method="POST", route="/v1/codes:suggest", status="200") == 3
    assert delta("coder_request_duration_seconds_count", method="GET", route="/v1/reviews/{review_id}",
                 status="200") == 1
    assert delta("coder_request_duration_seconds_bucket", route="/v1/reviews/{review_id}:claim", le="+Inf") == 1
    templates = {ctx.path for ctx in iter_route_contexts(service.client.app.routes)
                 if isinstance(ctx.original_route, APIRoute)}
    routes = {s.labels["route"] for s in latency.samples}
    assert routes <= templates | {"unmatched"}, routes - templates
    assert not any(review_id in line for review_id in review_ids
                   for line in service.call("GET", "/metrics", "admin").text.splitlines())


# --- the FHIR endpoint --------------------------------------------------------------------------------


def test_fhir_document_reference_becomes_a_bundle(service: Service) -> None:
    response = _post_fhir(service, _document("Essential hypertension. Laparoscopic appendectomy performed."))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(response.json())
    assert bundle.type == "collection" and bundle.identifier.value == "doc-1"
    found = {}
    for entry in bundle.entry:
        resource = entry.resource
        (coding,) = resource.code.coding
        expected = {"Condition": "http://hl7.org/fhir/sid/icd-10-cm",
                    "Procedure": "http://www.cms.gov/Medicare/Coding/ICD10"}[resource.get_resource_type()]
        assert coding.system == expected
        assert resource.subject.reference == "Patient/1" and resource.encounter.reference == "Encounter/7"
        found[coding.code] = resource.get_resource_type()
    assert found == {"I10": "Condition", "0DTJ4ZZ": "Procedure"}
    # An outpatient's procedures are not ICD-10-PCS: only the Condition.
    outpatient = _post_fhir(service, _document("Essential hypertension. Laparoscopic appendectomy performed."),
                            params={"encounter_class": "outpatient"})
    assert outpatient.status_code == 200, outpatient.text
    resources = [entry.resource for entry in Bundle.model_validate(outpatient.json()).entry]
    assert [r.get_resource_type() for r in resources] == ["Condition"]


def test_fhir_document_without_subject_is_refused_before_coding(service: Service) -> None:
    document = _document("Possible pneumonia.", doc_id="no-subject")
    del document["subject"]
    for refused in (document, {**document, "subject": {}}):
        response = _post_fhir(service, refused)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
        assert "subject" in response.json()["error"]["message"]
    assert service.call("GET", "/v1/reviews", "coder").json()["total"] == 0
    for action in ("suggest", "enqueue"):
        assert service.call("GET", "/v1/audit", "admin", params={"action": action}).json()["events"] == []
    # The same document with a subject is coded and queued: the refusal above was the subject, nothing else.
    assert _post_fhir(service, {**document, "subject": {"reference": "Patient/1"}}).status_code == 200
    assert service.call("GET", "/v1/reviews", "coder").json()["total"] == 1


def test_fhir_bad_base64_is_refused_without_echoing_the_note(service: Service) -> None:
    response = _post_fhir(service, _document(data="Possible pneumonia, left lower lobe!!"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "base64" in error["message"]
    assert "pneumonia" not in response.text.lower() and "lobe" not in response.text


def test_fhir_posting_one_document_twice_queues_it_once(service: Service) -> None:
    document = _document("Possible pneumonia on the chest film.", doc_id="doc-twice")
    review_ids = []
    for _ in range(2):
        response = _post_fhir(service, document)
        assert response.status_code == 200, response.text
        tags = {t["system"]: t for t in response.json()["meta"]["tag"]}
        review_ids.append(tags[fhir.REVIEW_SYSTEM]["display"])
    assert review_ids[0] and review_ids[0] == review_ids[1]
    page = service.call("GET", "/v1/reviews", "coder").json()
    assert page["total"] == 1 and page["items"][0]["note_id"] == "doc-twice"
    assert page["items"][0]["encounter_id"] == "Encounter/7"


# --- migrations and the append-only audit log ---------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url, drop = empty_postgres()
    yield url
    drop()


@pytest.fixture
def engine(empty_database: str):
    engine = db.make_engine(empty_database)
    yield engine
    engine.dispose()


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_migrations_go_up_down_and_up_again(engine) -> None:
    assert set(Base.metadata.tables) == TABLES
    head = ScriptDirectory.from_config(db.alembic_config(engine)).get_current_head()
    assert not _tables(engine) & TABLES
    db.upgrade(engine)
    assert TABLES <= _tables(engine) and db.current_revision(engine) == head
    db.downgrade(engine)
    assert not _tables(engine) & TABLES and db.current_revision(engine) is None
    # Upgrading again also shows the downgrade dropped PostgreSQL's trigger function (CREATE FUNCTION would fail).
    db.upgrade(engine)
    assert TABLES <= _tables(engine) and db.current_revision(engine) == head


def test_the_orm_models_match_the_migrations(engine) -> None:
    db.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        # Nothing is ignored: alembic's own version table is not in Base.metadata and compare_metadata
        # leaves it out by itself.
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_the_audit_log_is_append_only_in_the_database(engine) -> None:
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    with sessions.begin() as session:
        audit.record(session, SYSTEM, "export", details={"items": 1})
    changes: list[Callable] = [
        lambda s: s.execute(update(AuditEvent).values(actor="someone-else")),
        lambda s: s.execute(delete(AuditEvent)),
    ]
    for change in changes:
        with pytest.raises(DBAPIError, match="append-only"), sessions.begin() as session:
            change(session)
    with sessions.begin() as session:
        audit.record(session, SYSTEM, "export", details={"items": 2})
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 2
        assert set(session.scalars(select(AuditEvent.actor))) == {"system"}


# --- the body size limit ------------------------------------------------------------------------------


def test_bodies_over_the_limit_are_refused_with_413(predictor: Predictor, tmp_path: Path) -> None:
    svc = make_service(f"sqlite:///{tmp_path / 'coder.db'}", predictor, tmp_path, max_body_bytes=2000)
    with svc.client:
        under = {"text": "Possible pneumonia. " + "x" * 1500, "note_id": "fits"}
        assert svc.call("POST", "/v1/codes:suggest", "ehr", json=under).status_code == 200
        over = {"text": "Possible pneumonia. " + "x" * 2500, "note_id": "too-big"}
        refused = svc.call("POST", "/v1/codes:suggest", "ehr", json=over)
        assert refused.status_code == 413
        assert refused.json()["error"] == {"code": "body_too_large", "message": "request body over 2000 bytes"}
        fhir_refused = _post_fhir(svc, _document(over["text"], doc_id="too-big-fhir"))
        assert fhir_refused.status_code == 413 and fhir_refused.json()["error"]["code"] == "body_too_large"

        # Without a Content-Length (chunked) the limit holds as the body is read.
        def chunks(body: dict) -> Iterator[bytes]:
            data = json.dumps(body).encode()
            yield from (data[i:i + 500] for i in range(0, len(data), 500))

        headers = {**svc.headers("ehr"), "Content-Type": "application/json"}
        streamed = svc.client.post("/v1/codes:suggest", headers=headers, content=chunks(over))
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "body_too_large"
        small = svc.client.post("/v1/codes:suggest", headers=headers, content=chunks({**under, "note_id": "s"}))
        assert small.status_code == 200
        queued = {i["note_id"] for i in svc.call("GET", "/v1/reviews", "coder").json()["items"]}
        assert queued == {"fits", "s"}

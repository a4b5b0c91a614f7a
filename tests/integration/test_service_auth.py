"""Who may call what: every operation of the OpenAPI document against no key, bad keys, revoked keys and
each role, on SQLite and on PostgreSQL; and API keys managed through the API."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import uuid

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.auth import KeyStore, Principal
from service.db import ApiKey
from service.settings import Settings
from tests.service_fixtures import Service, make_service

Operation = tuple[str, str]
ROLES = ("ehr", "coder", "admin")
PUBLIC, ANY = "none", "any"

# The least role each operation needs; `admin` may do everything. A new route fails
# `test_every_operation_states_its_role` until it is added here.
ROLE_NEEDED: dict[Operation, str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): "admin",
    ("POST", "/v1/codes:suggest"): "ehr",
    ("POST", "/v1/codes:suggestBatch"): "ehr",
    ("POST", "/fhir/r4/DocumentReference/$suggest"): "ehr",
    ("GET", "/v1/reviews"): "coder",
    ("POST", "/v1/reviews:claimNext"): "coder",
    ("GET", "/v1/reviews/{review_id}"): "coder",
    ("POST", "/v1/reviews/{review_id}:claim"): "coder",
    ("POST", "/v1/reviews/{review_id}:release"): "coder",
    ("POST", "/v1/reviews/{review_id}:resolve"): "coder",
    ("GET", "/v1/reviews/{review_id}/history"): "coder",
    ("GET", "/v1/catalog/search"): "coder",
    ("GET", "/v1/catalog/codes/{code}"): "coder",
    ("POST", "/v1/catalog:check"): "coder",
    ("GET", "/v1/me"): ANY,
    ("GET", "/v1/reviews:export"): "admin",
    ("GET", "/v1/model"): ANY,
    ("GET", "/v1/models"): "admin",
    ("POST", "/v1/models/{name}:activate"): "admin",
    ("POST", "/v1/models:rollback"): "admin",
    ("GET", "/v1/keys"): "admin",
    ("POST", "/v1/keys"): "admin",
    ("POST", "/v1/keys/{name}:revoke"): "admin",
    ("GET", "/v1/audit"): "admin",
    ("GET", "/v1/audit/accuracy"): "admin",
}

NOTE = "Essential hypertension. Possible pneumonia."
FHIR_DOCUMENT = {
    "resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Patient/1"},
    "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(NOTE.encode()).decode()}}],
}
# Valid bodies, so that a request that passes authorisation is not refused by validation instead.
BODIES: dict[Operation, dict] = {
    ("POST", "/v1/codes:suggest"): {"json": {"text": NOTE}},
    ("POST", "/v1/codes:suggestBatch"): {"json": {"notes": [{"text": NOTE}, {"text": "Appendectomy."}]}},
    ("POST", "/v1/catalog:check"): {"json": {"codes": [{"code": "E11.9"}]}},
    ("POST", "/fhir/r4/DocumentReference/$suggest"): {
        "content": json.dumps(FHIR_DOCUMENT), "headers": {"Content-Type": "application/fhir+json"}},
    ("POST", "/v1/reviews/{review_id}:resolve"): {"json": {"codes": [{"code": "J18.9"}]}},
}
# What an allowed caller may get: success, or a domain refusal (never 401/403, a 5xx or a validation error).
ALLOWED_OUTCOMES = {200, 201, 204, 404, 409}


def _operations(app) -> set[Operation]:
    return {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}


def _may(needed: str, role: str | None) -> bool:
    if needed == PUBLIC:
        return True
    if role is None:
        return False
    return needed == ANY or role == needed or role == "admin"


def _queued_review(svc: Service, claimed_by: Principal | None = None) -> str:
    queue = svc.client.app.state.queue
    review_id = queue.record_suggestion(
        Principal("ehr-1", "ehr"), text=NOTE, needs_review=True, model_version="keyword-1",
        codes=[{"code": "J18.9", "system": "ICD-10-CM", "confidence": 0.6, "accepted": False}],
        thresholds={"accept": 0.9},
    )
    if claimed_by is not None:
        queue.claim(review_id, claimed_by)
    return review_id


def _request(svc: Service, operation: Operation, role: str | None) -> tuple[str, dict]:
    """A URL with real path parameters, and a valid body, for one call of `operation` by `role`."""
    path = operation[1]
    kwargs = copy.deepcopy(BODIES.get(operation, {}))
    if path == "/v1/keys":
        kwargs = {"json": {"name": f"key-{uuid.uuid4().hex[:8]}", "role": "ehr"}}
    caller = Principal(f"{role}-1", role) if role in ("coder", "admin") else None
    if "{review_id}" in path:
        holds = caller if path.endswith((":release", ":resolve")) else None
        path = path.replace("{review_id}", _queued_review(svc, holds))
    if path.endswith("{name}:revoke"):
        name = f"doomed-{uuid.uuid4().hex[:8]}"
        KeyStore(svc.client.app.state.queue.sessions).create(name, "ehr")
        path = path.replace("{name}", name)
    # Activating a real model would stop serving the keyword predictor: an unknown name still reaches the route.
    path = path.replace("{name}", "no-such-model").replace("{code}", "E11.9")
    if path == "/v1/catalog/search":
        kwargs["params"] = {"q": "diabetes"}
    if role is not None:
        kwargs.setdefault("headers", {})["X-API-Key"] = svc.keys[role]
    return path, kwargs


def _call(svc: Service, operation: Operation, role: str | None = None, key: str | None = None):
    url, kwargs = _request(svc, operation, role)
    if key is not None:
        kwargs.setdefault("headers", {})["X-API-Key"] = key
    return svc.client.request(operation[0], url, **kwargs)


def test_every_operation_states_its_role(service: Service) -> None:
    app = service.client.app
    assert _operations(app) == set(ROLE_NEEDED)
    # A route left out of the OpenAPI document would escape the matrix below.
    routed = {(m, r.path) for r in iter_route_contexts(app.routes) if isinstance(r.original_route, APIRoute)
              for m in r.methods}
    assert routed == set(ROLE_NEEDED)


def test_no_bad_or_revoked_key_gets_in(service: Service) -> None:
    store = KeyStore(service.client.app.state.queue.sessions)
    revoked = store.create("revoked-admin", "admin").key
    store.revoke("revoked-admin")
    bad_keys = {
        "no key": None,
        "wrong key": "icd_" + uuid.uuid4().hex,
        "not a key": "not-a-key",
        "revoked key": revoked,
        "a key's hash": hashlib.sha256(service.keys["admin"].encode()).hexdigest(),
    }
    failures = []
    for operation in sorted(_operations(service.client.app)):
        for label, key in bad_keys.items():
            response = _call(service, operation, key=key)
            if ROLE_NEEDED[operation] == PUBLIC:
                if response.status_code != 200:
                    failures.append(f"{operation} with {label}: {response.status_code}")
                continue
            if response.status_code != 401 or response.json()["error"]["code"] != "unauthorized":
                failures.append(f"{operation} with {label}: {response.status_code} {response.text[:200]}")
            elif response.headers.get("www-authenticate") != "Bearer":
                failures.append(f"{operation} with {label}: no WWW-Authenticate challenge")
    assert not failures, "\n".join(failures)


def test_each_role_gets_exactly_its_operations(service: Service) -> None:
    failures = []
    for operation in sorted(_operations(service.client.app)):
        needed = ROLE_NEEDED[operation]
        for role in ROLES:
            response = _call(service, operation, role)
            status = response.status_code
            if not _may(needed, role):
                if status != 403 or response.json()["error"]["code"] != "forbidden":
                    failures.append(f"{operation} as {role}: expected 403 forbidden, got {status}")
            elif status not in ALLOWED_OUTCOMES:
                failures.append(f"{operation} as {role}: {status} {response.text[:200]}")
            elif status == 404 and response.json()["error"]["code"] == "not_found":
                # The generic code is what an unmatched URL gets: the call never reached the route.
                failures.append(f"{operation} as {role}: the URL matched no route")
    assert not failures, "\n".join(failures)


def test_a_bearer_token_works_like_the_api_key_header(service: Service) -> None:
    def bearer(role_or_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {service.keys.get(role_or_key, role_or_key)}"}

    model = service.client.get("/v1/model", headers=bearer("ehr"))
    assert model.status_code == 200 and model.json()["model_version"] == "keyword-1"
    assert service.client.get("/metrics", headers=bearer("admin")).status_code == 200
    refused = service.client.get("/metrics", headers=bearer("coder"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    suggested = service.client.post("/v1/codes:suggest", headers=bearer("ehr"), json={"text": NOTE})
    assert suggested.status_code == 200
    assert service.client.get("/v1/model", headers=bearer("icd_" + uuid.uuid4().hex)).status_code == 401
    basic = {"Authorization": "Basic " + base64.b64encode(f"x:{service.keys['admin']}".encode()).decode()}
    assert service.client.get("/v1/model", headers=basic).status_code == 401


def test_admin_creates_lists_and_revokes_keys(service: Service) -> None:
    created = service.call("POST", "/v1/keys", "admin", json={"name": "epic-prod", "role": "ehr"})
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert body["name"] == "epic-prod" and body["role"] == "ehr" and key.startswith("icd_") and len(key) > 40
    assert set(body) == {"name", "role", "key"}
    headers = {"X-API-Key": key}
    assert service.client.post("/v1/codes:suggest", headers=headers, json={"text": NOTE}).status_code == 200
    assert service.client.get("/v1/reviews", headers=headers).status_code == 403

    listed = service.call("GET", "/v1/keys", "admin")
    assert listed.status_code == 200
    entry = next(k for k in listed.json()["keys"] if k["name"] == "epic-prod")
    assert entry["role"] == "ehr" and entry["revoked_at"] is None and key.startswith(entry["key_prefix"])
    key_hash = hashlib.sha256(key.encode()).hexdigest()
    for secret in (key, key_hash, key[len(entry["key_prefix"]):]):
        assert secret not in listed.text

    duplicate = service.call("POST", "/v1/keys", "admin", json={"name": "epic-prod", "role": "coder"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "conflict"
    assert key not in duplicate.text

    revoked = service.call("POST", "/v1/keys/epic-prod:revoke", "admin")
    assert revoked.status_code == 204 and not revoked.content
    after = service.client.post("/v1/codes:suggest", headers=headers, json={"text": NOTE})
    assert after.status_code == 401 and after.json()["error"]["code"] == "unauthorized"
    again = service.call("POST", "/v1/keys/epic-prod:revoke", "admin")
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    listed = service.call("GET", "/v1/keys", "admin").json()["keys"]
    assert next(k for k in listed if k["name"] == "epic-prod")["revoked_at"] is not None

    # Stored hashed: the plain key is in no column of any row, and the hash is its SHA-256.
    with service.client.app.state.queue.sessions() as session:
        rows = list(session.scalars(select(ApiKey)))
    assert len(rows) == len(service.keys) + 1
    for row in rows:
        stored = " ".join(str(getattr(row, c.key)) for c in ApiKey.__table__.columns)
        assert key not in stored and key[len(row.key_prefix):] not in stored
    assert next(r for r in rows if r.name == "epic-prod").key_hash == key_hash
    audit = service.call("GET", "/v1/audit", "admin", params={"action": "key_create"})
    assert audit.status_code == 200 and key not in audit.text and key_hash not in audit.text


def test_cors_is_closed_unless_configured(database_url: str, predictor, tmp_path) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "X-API-Key"}
    closed = make_service(database_url, predictor, tmp_path)
    with closed.client:
        response = closed.client.options("/v1/codes:suggest", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        simple = closed.client.get("/v1/me", headers={**closed.headers("ehr"), "Origin": "https://evil.example"})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers
    settings = Settings(database_url=database_url, models_dir=str(tmp_path), cors_origins=["https://ehr.example"])
    with TestClient(create_app(settings, predictor=predictor)) as client:
        allowed = client.options("/v1/codes:suggest", headers={**preflight, "Origin": "https://ehr.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://ehr.example"
        refused = client.options("/v1/codes:suggest", headers=preflight)
        assert "access-control-allow-origin" not in refused.headers


def test_a_key_with_the_right_prefix_but_wrong_secret_is_refused(service: Service) -> None:
    real = service.keys["admin"]
    forged = real[:10] + ("A" if real[10] != "A" else "B") + real[11:]
    assert service.client.get("/v1/me", headers={"X-API-Key": forged}).status_code == 401
    assert service.client.get("/v1/me", headers={"X-API-Key": real}).status_code == 200

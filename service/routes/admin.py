"""The admin side: models, API keys, the audit log, accuracy, and the training-data export."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from service.auth import KeyManagementError, Principal
from service.deps import AdminDep, AnyRoleDep, AuditDep, KeysDep, PredictorDep, QueueDep, RegistryDep
from service.model_registry import ModelRegistry
from service.routes.common import JsonBodyRoute, Offset, errors
from service.schemas import (
    AccuracyReportPublic,
    AuditEventPublic,
    AuditPage,
    CodeAgreementPublic,
    DeploymentPublic,
    KeyCreated,
    KeyCreateRequest,
    KeyList,
    KeyPublic,
    Me,
    ModelEntryPublic,
    ModelInfo,
    ModelList,
    NoNulStr,
    UtcDatetime,
)

router = APIRouter(route_class=JsonBodyRoute)


def _model_info(registry: ModelRegistry, principal: Principal) -> ModelInfo:
    serving = registry.serving
    if serving is None:
        raise HTTPException(503, "no model loaded yet", headers={"Retry-After": "5"})
    # Where the artifact lies on the server is the operators' business, not an EHR's or a coder's.
    shown = serving.path is not None and principal.role == "admin"
    return ModelInfo(model_version=serving.predictor.model_version, kind=serving.kind, name=serving.name,
                     artifact=str(serving.path) if shown else None,
                     codes=len(serving.predictor.scorer.codes), metrics=serving.metrics)


@router.get("/v1/model", tags=["models"], responses=errors(503))
def model_info(principal: AnyRoleDep, _: PredictorDep, registry: RegistryDep) -> ModelInfo:
    """Which model is serving, and the evaluation that came with it (its folder on the server for admins only)."""
    return _model_info(registry, principal)


@router.get("/v1/models", tags=["models"], responses=errors())
def list_models(_: AdminDep, registry: RegistryDep) -> ModelList:
    """Every artifact in the model folder with its metrics, and the deployment history."""
    active = registry.serving.name if registry.serving else None
    return ModelList(
        models=[ModelEntryPublic(name=e.name, kind=e.kind, active=e.name == active, metrics=e.metrics)
                for e in registry.entries()],
        history=[DeploymentPublic(model=d.artifact, model_version=d.model_version, activated_by=d.activated_by,
                                  activated_at=d.activated_at) for d in registry.history()],
    )


@router.post("/v1/models/{name}:activate", tags=["models"], responses=errors(404, 409))
def activate_model(name: str, principal: AdminDep, registry: RegistryDep) -> ModelInfo:
    """Serve another model, without a restart; requests in flight finish on the old one."""
    registry.activate(name, principal)
    return _model_info(registry, principal)


@router.post("/v1/models:rollback", tags=["models"], responses=errors(409))
def rollback_model(principal: AdminDep, registry: RegistryDep) -> ModelInfo:
    """Serve the model that was active before the current one."""
    registry.rollback(principal)
    return _model_info(registry, principal)


@router.get("/v1/me", tags=["keys"], responses=errors())
def me(principal: AnyRoleDep) -> Me:
    """The name and role of the calling key."""
    return Me(name=principal.name, role=principal.role)


@router.get("/v1/keys", tags=["keys"], responses=errors())
def list_keys(_: AdminDep, keys: KeysDep) -> KeyList:
    """Every API key (names, roles, prefixes; never the keys)."""
    return KeyList(keys=[KeyPublic.model_validate(k) for k in keys.list()])


@router.post("/v1/keys", tags=["keys"], status_code=201, responses=errors(409, 422))
def create_key(body: KeyCreateRequest, principal: AdminDep, keys: KeysDep) -> KeyCreated:
    """Create an API key; the response is the only place the key is ever shown."""
    try:
        created = keys.create(body.name, body.role, by=principal)
    except KeyManagementError as exc:
        raise HTTPException(409, str(exc)) from exc
    return KeyCreated(name=created.name, role=created.role, key=created.key)


@router.post("/v1/keys/{name}:revoke", tags=["keys"], status_code=204, responses=errors(404))
def revoke_key(name: NoNulStr, principal: AdminDep, keys: KeysDep) -> Response:
    """Revoke an API key; it is refused from the next request on."""
    try:
        keys.revoke(name, by=principal)
    except KeyManagementError as exc:
        raise HTTPException(404, str(exc)) from exc
    return Response(status_code=204)


@router.get("/v1/audit", tags=["audit"], responses=errors(422))
def audit_events(
    _: AdminDep,
    log: AuditDep,
    note_id: NoNulStr | None = None,
    review_id: NoNulStr | None = None,
    actor: Annotated[NoNulStr | None, Query(description="the API key name of whoever acted")] = None,
    action: NoNulStr | None = None,
    since: UtcDatetime | None = None,
    until: UtcDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> AuditPage:
    """Audit events by note, review item, actor, action and period, oldest first."""
    events = log.events(note_id=note_id, review_id=review_id, actor=actor, action=action, since=since,
                        until=until, limit=limit, offset=offset)
    return AuditPage(events=[AuditEventPublic.model_validate(e) for e in events], limit=limit, offset=offset)


@router.get("/v1/audit/accuracy", tags=["audit"], responses=errors(422))
def accuracy(
    _: AdminDep, log: AuditDep, since: UtcDatetime | None = None, until: UtcDatetime | None = None
) -> AccuracyReportPublic:
    """Agreement between the model's suggestions and coders' final codes, overall and per code."""
    report = log.accuracy(since, until)
    return AccuracyReportPublic(
        since=report.since, until=report.until, items=report.items, precision=report.precision,
        recall=report.recall, f1=report.f1, accepted_precision=report.accepted_precision,
        per_code=[CodeAgreementPublic(code=c.code, suggested=c.suggested, final=c.final, agreed=c.agreed,
                                      precision=c.precision, recall=c.recall) for c in report.per_code],
    )


@router.get(
    "/v1/reviews:export", tags=["audit"],
    responses={**errors(422), 200: {"content": {"application/x-ndjson": {"example": (
        '{"id": "note-1001", "text": "…", "diagnoses": ["E11.9", "I10"], "procedures": []}\n')}}}},
    response_class=Response,
)
def export(principal: AdminDep, queue: QueueDep, since: UtcDatetime | None = None,
           until: UtcDatetime | None = None) -> Response:
    """Resolved review items as JSON Lines that `python -m training --data` reads."""
    records = queue.export(principal, since, until)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return Response(body, media_type="application/x-ndjson")

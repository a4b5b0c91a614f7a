"""FastAPI dependencies: the parts a route needs, and who is calling.

Every part lives on `app.state` (built once by `create_app`); a test swaps any of them with
`app.dependency_overrides`. Dependencies that only look something up are `async`: FastAPI runs a plain
function in a worker thread, a hop that costs more than the lookup. `authenticate` asks the database, so
it stays in a thread.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from models.predictor import Predictor
from service.audit import AuditLog
from service.auth import KeyStore, Principal
from service.model_registry import ModelRegistry
from service.review_queue import ReviewQueue
from service.settings import Settings, get_settings

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")
_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token (for Prometheus, say)")


async def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


async def get_queue(request: Request) -> ReviewQueue:
    return request.app.state.queue


async def get_audit_log(request: Request) -> AuditLog:
    return request.app.state.audit_log


async def get_keys(request: Request) -> KeyStore:
    return request.app.state.keys


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
QueueDep = Annotated[ReviewQueue, Depends(get_queue)]
AuditDep = Annotated[AuditLog, Depends(get_audit_log)]
KeysDep = Annotated[KeyStore, Depends(get_keys)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_predictor(registry: RegistryDep) -> Predictor:
    """The model in service; 503 until one is loaded."""
    serving = registry.serving
    if serving is None:
        raise HTTPException(503, "no model loaded yet", headers={"Retry-After": "5"})
    return serving.predictor


PredictorDep = Annotated[Predictor, Depends(get_predictor)]


def authenticate(
    request: Request,
    keys: KeysDep,
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Principal:
    """The caller of an active API key (X-API-Key or Authorization: Bearer); 401 otherwise."""
    key = api_key or (bearer.credentials if bearer else None)
    if not key:
        raise HTTPException(401, "an API key is required (X-API-Key header)", headers={"WWW-Authenticate": "Bearer"})
    principal = keys.authenticate(key)
    if principal is None:
        raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


def require(role: str):
    """A dependency that lets the given role (and admins) through, 403 for other roles."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(role):
            raise HTTPException(403, f"this needs the {role!r} role; the key {principal.name!r} has {principal.role!r}")
        return principal

    return check


EhrDep = Annotated[Principal, Depends(require("ehr"))]
CoderDep = Annotated[Principal, Depends(require("coder"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]
AnyRoleDep = Annotated[Principal, Depends(authenticate)]

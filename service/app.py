"""The FastAPI application factory: settings in, app out. Routes live in `service.routes`."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.errors import ArtifactError, CoderError, InputError
from models.predictor import Predictor
from service import db, observability
from service.audit import AuditLog
from service.auth import KeyStore
from service.model_registry import ModelError, ModelRegistry
from service.review_queue import ReviewError, ReviewQueue
from service.routes import router
from service.routes.catalog import code_search
from service.settings import Settings, get_settings

logger = logging.getLogger("service")
UI_DIR = Path(__file__).parent / "ui"
RETRY_AFTER_S = 5  # told to clients while the database is down, busy, full or read-only

HTTP_CODES = {
    401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
    413: "body_too_large", 422: "invalid_request", 503: "not_ready",
}

DESCRIPTION = """Clinical note in, ranked ICD-10-CM and ICD-10-PCS codes out, each with a calibrated
confidence and the text that supports it. Notes that are not confident enough go to a review queue that
coders work; every suggestion and decision is audited and can be exported as training data.

Every endpoint but `/healthz` and `/readyz` needs an API key (`X-API-Key` header, or `Authorization:
Bearer`). Roles: `ehr` (suggest), `coder` (review queue), `admin` (models, keys, audit; and everything
else). Errors are `{"error": {"code": ..., "message": ...}}` with a stable code; no error or log line
ever contains note text."""


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _unexpected(exc: BaseException) -> JSONResponse:
    """A 500 for an error nobody foresaw. Its message (and so a traceback) may quote the note: log only
    its type and where it was raised."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    logger.error("unhandled error", extra={
        "error_type": type(exc).__name__, "where": f"{frame.filename}:{frame.lineno}" if frame else "?"})
    return _error(500, "internal_error", "the service failed on this request")


class _BodyLimit:
    """Counts the body as the app reads it: a chunked body has no Content-Length to refuse it by."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise StarletteHTTPException(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """Build the app: database (migrated unless told not to), queue, audit, keys, models, routes.

    Args:
        settings: the service settings (default: from the environment).
        predictor: a ready predictor to serve instead of loading one (the test seam).
    """
    settings = settings or get_settings()
    engine = db.make_engine(settings.database_url)
    if settings.auto_migrate:
        db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    registry = ModelRegistry(sessions, settings.models_dir, settings.artifact, settings.valid_codes_only,
                             runtime=settings.runtime, head_precision=settings.head_precision,
                             batch_max_notes=settings.batch_max_notes, batch_wait_ms=settings.batch_wait_ms)
    if predictor is not None:
        registry.serve(predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # The coders' code-search index (about a second) is built now, not on the first search.
        threading.Thread(target=code_search, name="code-search-index", daemon=True).start()
        if predictor is None:
            # Loading takes seconds: answer /healthz meanwhile, with /readyz false until it is done.
            registry.run_sync(settings.model_sync_seconds)
        yield
        registry.stop()
        engine.dispose()

    app = FastAPI(title="ICD-10 code suggestion service", version="0.2.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.registry = registry
    app.state.queue = ReviewQueue(sessions, lease_seconds=settings.claim_lease_seconds)
    app.state.audit_log = AuditLog(sessions)
    app.state.keys = KeyStore(sessions)

    async def these_settings() -> Settings:  # async: no worker-thread hop to hand over an object
        return settings

    app.dependency_overrides[get_settings] = these_settings

    if settings.cors_origins:
        # Closed unless configured: the workbench is served from the same origin and needs no CORS.
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type", "X-Request-ID"])
    # Added first, so it sits inside `observe`: an error raised in a receive that `observe` wraps would
    # reach the route inside an exception group and become a 400.
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        request_id = observability.new_request_id(request.headers.get("x-request-id"))
        token = observability.request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
                response = _error(413, "body_too_large", f"request body over {settings.max_body_bytes} bytes")
            else:
                try:
                    response = await call_next(request)
                except Exception as exc:  # noqa: BLE001 - the last line of defence
                    response = _unexpected(exc)
            elapsed = time.perf_counter() - started
            route = getattr(request.scope.get("route"), "path", "unmatched")
            observability.REQUEST_LATENCY.labels(request.method, route, str(response.status_code)).observe(elapsed)
            # Only the route template, never the URL: a query string could carry identifiers.
            logger.info("request", extra={"method": request.method, "route": route,
                                          "status": response.status_code, "ms": round(elapsed * 1000, 1)})
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            observability.request_id_var.reset(token)

    @app.exception_handler(InputError)
    async def input_error(_: Request, exc: InputError) -> JSONResponse:
        return _error(422, "invalid_input", str(exc))

    @app.exception_handler(ArtifactError)
    async def artifact_error(_: Request, exc: ArtifactError) -> JSONResponse:
        return _error(409, "artifact_error", str(exc))

    @app.exception_handler(CoderError)
    async def coder_error(_: Request, exc: CoderError) -> JSONResponse:
        logger.error("coder error", extra={"error_type": type(exc).__name__})
        return _error(500, "coder_error", "the coder failed on this request")

    @app.exception_handler(ReviewError)
    async def review_error(_: Request, exc: ReviewError) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc))

    @app.exception_handler(ModelError)
    async def model_error(_: Request, exc: ModelError) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc))

    @app.exception_handler(SQLAlchemyError)
    async def database_error(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        # Every database call of every route and dependency (the API key check too) ends here, so an
        # outage is one answer everywhere: 503 and Retry-After, never a 500 or a 401.
        outage = db.outage(exc)
        if outage is None:
            return _unexpected(exc)
        cause = getattr(exc, "orig", None) or exc
        logger.warning("database unavailable",
                       extra={"error_code": outage.code, "error_type": type(cause).__name__})
        return _error(503, outage.code, f"{outage.reason}; retry later",
                      headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Pydantic's default body echoes the input, which may be note text: report places only.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        )
        return _error(422, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    app.include_router(router)
    # The coder workbench: static files that call the API above with the coder's key (no data in them).
    app.router.add_route("/ui", lambda _: RedirectResponse("/ui/"), include_in_schema=False)
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app

"""The FastAPI application factory: settings in, app out. Routes live in `service.routes`."""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.artifact import default_predictor, load_artifact, read_config
from models.errors import ArtifactError, CoderError, InputError
from models.predictor import Predictor
from service.routes import router
from service.settings import Settings, get_settings

logger = logging.getLogger("service")


class PredictorHolder:
    """The one model in service; swapped whole, so a request in flight keeps the model it started with."""

    def __init__(self) -> None:
        self._predictor: Predictor | None = None
        self.kind = "matcher"
        self.artifact: str | None = None
        self.metrics: dict = {}
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._predictor is not None

    def get(self) -> Predictor | None:
        return self._predictor

    def set(self, predictor: Predictor, kind: str, artifact: str | None, metrics: dict) -> None:
        with self._lock:
            self._predictor, self.kind, self.artifact, self.metrics = predictor, kind, artifact, metrics

    def load(self, artifact: str | None, valid_only: bool = True) -> None:
        """Load the named artifact, or the embedded default; raises ArtifactError naming the file."""
        started = time.perf_counter()
        if artifact:
            predictor = load_artifact(artifact)
            predictor.valid_only = valid_only
            config = read_config(artifact)
            metrics_path = Path(artifact) / "metrics.json"
            metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
            self.set(predictor, config["kind"], artifact, metrics)
        else:
            self.set(default_predictor(), "matcher", None, {})
        logger.info(
            "model loaded", extra={"model_version": self._predictor.model_version,  # type: ignore[union-attr]
                                   "seconds": round(time.perf_counter() - started, 2)}
        )


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """Build the app.

    Args:
        settings: the service settings (default: from the environment).
        predictor: a ready predictor to serve instead of loading one (the test seam).
    """
    settings = settings or get_settings()
    holder = PredictorHolder()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if predictor is not None:
            holder.set(predictor, "custom", None, {})
        else:
            holder.load(settings.artifact, valid_only=settings.valid_codes_only)
        yield

    app = FastAPI(
        title="ICD-10 code suggestion service",
        version="0.1.0",
        description="Clinical note in, ranked ICD-10-CM and ICD-10-PCS codes out, each with a confidence "
        "and the text that supports it.",
        lifespan=lifespan,
    )
    app.state.holder = holder
    app.state.settings = settings
    app.dependency_overrides[get_settings] = lambda: settings

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return _error(413, "body_too_large", f"request body over {settings.max_body_bytes} bytes")
        return await call_next(request)

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

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Pydantic's default body echoes the input, which may be note text: report places only.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        )
        return _error(422, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 503: "not_ready"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    app.include_router(router)
    return app

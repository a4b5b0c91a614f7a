"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service import observability
from service.deps import AdminDep, PredictorDep, QueueDep
from service.routes.common import JsonBodyRoute, errors
from service.schemas import ErrorResponse, Status

router = APIRouter(tags=["operations"], route_class=JsonBodyRoute)


@router.get("/healthz", response_model_exclude_none=True)
def healthz() -> Status:
    """Liveness: the process answers."""
    return Status(status="ok")


@router.get("/readyz", responses={503: {"model": ErrorResponse}})
def readyz(predictor: PredictorDep) -> Status:
    """Readiness: a model is loaded."""
    return Status(status="ready", model_version=predictor.model_version)


@router.get("/metrics", response_class=Response, responses={
    **errors(), 200: {"content": {"text/plain": {"example": "coder_review_queue_depth 3.0\n"}}}})
def metrics(_: AdminDep, queue: QueueDep) -> Response:
    """Prometheus metrics (latency, notes and codes served, queue depth, model version)."""
    body, content_type = observability.render_metrics(queue.depth)
    return Response(body, media_type=content_type)

"""HTTP routes. Sync routes run in the thread pool, so model inference never blocks the event loop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request

from models.predictor import Predictor
from service.schemas import ErrorResponse, ModelInfo, SuggestRequest, SuggestResponse

router = APIRouter()

ERRORS = {422: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}


def get_predictor(request: Request) -> Predictor:
    """The model in service; 503 until one is loaded."""
    predictor = request.app.state.holder.get()
    if predictor is None:
        raise HTTPException(503, "no model loaded yet", headers={"Retry-After": "5"})
    return predictor


PredictorDep = Annotated[Predictor, Depends(get_predictor)]


@router.get("/healthz", tags=["operations"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"], responses=ERRORS)
def readyz(predictor: PredictorDep) -> dict[str, str]:
    """Readiness: a model is loaded."""
    return {"status": "ready", "model_version": predictor.model_version}


@router.post("/v1/codes:suggest", tags=["codes"], responses=ERRORS)
def suggest(body: SuggestRequest, predictor: PredictorDep) -> SuggestResponse:
    """Suggest ICD-10 codes for one clinical note."""
    prediction = predictor.predict(body.text, top_k=body.top_k, systems=body.systems)
    return SuggestResponse.from_prediction(prediction, note_id=body.note_id)


@router.get("/v1/model", tags=["model"], responses=ERRORS)
def model_info(request: Request, predictor: PredictorDep) -> ModelInfo:
    """Which model is serving, and the evaluation that came with it."""
    holder = request.app.state.holder
    return ModelInfo(
        model_version=predictor.model_version,
        kind=holder.kind,
        artifact=holder.artifact,
        codes=len(predictor.scorer.codes),
        metrics=holder.metrics,
    )

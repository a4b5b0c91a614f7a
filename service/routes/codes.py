"""The EHR side: code one note, a batch of notes, or a FHIR DocumentReference."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from models.predictor import Prediction, Predictor
from service import fhir, observability
from service.auth import Principal
from service.deps import EhrDep, PredictorDep, QueueDep, SettingsDep
from service.review_queue import ReviewQueue
from service.routes.common import JsonBodyRoute, errors
from service.schemas import (
    BatchSuggestRequest,
    BatchSuggestResponse,
    CodeSystem,
    EncounterClass,
    SuggestRequest,
    SuggestResponse,
)

router = APIRouter(tags=["codes"], route_class=JsonBodyRoute)

FHIR_JSON = "application/fhir+json"
_DOCUMENT_EXAMPLE = {
    "resourceType": "DocumentReference",
    "id": "note-1001",
    "status": "current",
    "subject": {"reference": "Patient/123"},
    "context": {"encounter": [{"reference": "Encounter/77"}]},
    "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                "data": "VHlwZSAyIGRpYWJldGVzIG1lbGxpdHVzIHdpdGhvdXQgY29tcGxpY2F0aW9ucy4="}}],
}


# Where each SuggestRequest field of a FHIR call comes from in the DocumentReference.
_DOCUMENT_FIELDS = {
    "text": "DocumentReference.content.attachment.data",
    "note_id": "DocumentReference.id (or identifier[0].value)",
    "encounter_id": "DocumentReference.context.encounter[0].reference",
}


def _document_problems(exc: ValidationError) -> str:
    """The SuggestRequest errors of a FHIR call, by DocumentReference path; places and rules, never values."""
    problems = []
    for error in exc.errors(include_input=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        problems.append(f"{_DOCUMENT_FIELDS.get(field, 'DocumentReference')}: {error['msg']}")
    return "; ".join(problems)


def _serve(
    predictions: list[Prediction], requests: list[SuggestRequest], predictor: Predictor, queue: ReviewQueue,
    principal: Principal,
) -> list[SuggestResponse]:
    thresholds = {"accept": predictor.thresholds.accept, "suggest": predictor.thresholds.suggest,
                  "review_band": predictor.thresholds.review_band}
    responses = []
    for request, prediction in zip(requests, predictions):
        response = SuggestResponse.from_prediction(prediction, note_id=request.note_id)
        codes = [c.model_dump() for c in response.codes]
        response.review_id = queue.record_suggestion(
            principal, text=request.text, codes=codes, needs_review=prediction.needs_review,
            model_version=prediction.model_version, thresholds=thresholds, note_id=request.note_id,
            encounter_id=request.encounter_id, systems=request.systems,
        )
        observability.count_served(prediction.needs_review, [(c.system, c.accepted) for c in response.codes])
        responses.append(response)
    return responses


@router.post("/v1/codes:suggest", responses=errors(413, 422, 503))
def suggest(
    body: SuggestRequest, principal: EhrDep, predictor: PredictorDep, queue: QueueDep
) -> SuggestResponse:
    """Suggest ICD-10 codes for one clinical note."""
    # The transformer scores it in one pass with the notes of other requests waiting at the same moment.
    prediction = predictor.predict(body.text, top_k=body.top_k, systems=body.systems)
    return _serve([prediction], [body], predictor, queue, principal)[0]


@router.post("/v1/codes:suggestBatch", responses=errors(413, 422, 503))
def suggest_batch(
    body: BatchSuggestRequest, principal: EhrDep, predictor: PredictorDep, queue: QueueDep, settings: SettingsDep
) -> BatchSuggestResponse:
    """Suggest ICD-10 codes for several notes in one call."""
    if len(body.notes) > settings.max_batch_notes:
        raise HTTPException(422, f"notes: at most {settings.max_batch_notes} notes per batch, got {len(body.notes)}")
    predictions: list[Prediction] = []
    # Notes asking for the same top_k and systems are scored together, in one model pass.
    groups: dict[tuple, list[int]] = {}
    for position, note in enumerate(body.notes):
        groups.setdefault((note.top_k, tuple(note.systems or ())), []).append(position)
    by_position: dict[int, Prediction] = {}
    for (top_k, systems), positions in groups.items():
        batch = predictor.predict_batch([body.notes[p].text for p in positions], top_k=top_k,
                                        systems=list(systems) or None)
        by_position.update(zip(positions, batch))
    predictions = [by_position[p] for p in range(len(body.notes))]
    return BatchSuggestResponse(results=_serve(predictions, body.notes, predictor, queue, principal))


@router.post(
    "/fhir/r4/DocumentReference/$suggest",
    # Response, not JSONResponse: the Bundle is application/fhir+json, while errors stay application/json.
    response_class=Response,
    responses={**errors(413, 422, 503), 200: {
        "description": "a FHIR R4 Bundle (type collection) of Condition (ICD-10-CM) and Procedure (ICD-10-PCS)",
        "content": {FHIR_JSON: {"example": {"resourceType": "Bundle", "type": "collection", "entry": [{
            "fullUrl": "urn:uuid:0b1c…", "resource": {
                "resourceType": "Condition", "subject": {"reference": "Patient/123"},
                "code": {"coding": [{"system": fhir.CM_SYSTEM, "code": "E11.9",
                                     "display": "Type 2 diabetes mellitus without complications"}]}}}]}}},
    }},
)
def suggest_fhir(
    document: Annotated[dict[str, Any], Body(openapi_examples={"note": {"value": _DOCUMENT_EXAMPLE}},
                                             media_type=FHIR_JSON)],
    principal: EhrDep,
    predictor: PredictorDep,
    queue: QueueDep,
    top_k: Annotated[int, Query(ge=1, le=100)] = 10,
    system: Annotated[list[CodeSystem] | None, Query(description="restrict to these code systems")] = None,
    encounter_class: Annotated[EncounterClass | None, Query(
        description="the encounter's class: an outpatient note gets ICD-10-CM codes only")] = None,
) -> JSONResponse:
    """Code a FHIR R4 DocumentReference (text/plain attachment) into a Bundle of Condition and Procedure."""
    try:
        note = fhir.document_text(document)
    except fhir.FhirError as exc:
        raise HTTPException(422, str(exc)) from exc
    if not note.subject:  # absent, or an empty Reference ({}) that points at no one
        # Checked before coding, so a refused document leaves no audit event and no queue item behind.
        raise HTTPException(422, "DocumentReference.subject: required to build Condition and Procedure resources")
    try:
        request = SuggestRequest(text=note.text, note_id=note.note_id, top_k=top_k, systems=system,
                                 encounter_id=(note.encounter or {}).get("reference"), encounter_class=encounter_class)
    except ValidationError as exc:
        # Valid FHIR can still break a note's limits (a 300-character identifier, a NUL in the text).
        raise HTTPException(422, _document_problems(exc)) from None
    prediction = predictor.predict(request.text, top_k=top_k, systems=request.systems)
    response = _serve([prediction], [request], predictor, queue, principal)[0]
    try:
        bundle = fhir.suggestion_bundle(response.model_dump(), note.subject, note.encounter)
    except fhir.FhirError as exc:
        raise HTTPException(422, str(exc)) from exc
    return JSONResponse(bundle, media_type=FHIR_JSON)

"""The coder side: the review queue."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from models.catalog import get_catalog
from service.deps import AuditDep, CoderDep, QueueDep, SettingsDep
from service.review_queue import Order, check_final_codes
from service.routes.common import JsonBodyRoute, Offset, errors
from service.schemas import (
    AuditEventPublic,
    AuditPage,
    NoNulStr,
    ResolveRequest,
    ResolveResponse,
    ReviewItemDetail,
    ReviewItemPublic,
    ReviewPage,
)

router = APIRouter(tags=["review queue"], route_class=JsonBodyRoute)


@router.get("/v1/reviews", responses=errors(422))
def list_reviews(
    _: CoderDep,
    queue: QueueDep,
    settings: SettingsDep,
    status: Annotated[Literal["open", "claimed", "resolved"] | None,
                      Query(description="open includes expired claims")] = None,
    claimed_by: Annotated[NoNulStr | None, Query(description="the coder holding the item now")] = None,
    resolved_by: NoNulStr | None = None,
    model_version: NoNulStr | None = None,
    encounter_id: NoNulStr | None = None,
    note_id: NoNulStr | None = None,
    max_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
    order: Annotated[Order | None,
                     Query(description="priority (least confident first, then oldest), oldest, newest")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> ReviewPage:
    """List review items, filtered and paged, in priority order by default."""
    page = queue.list(
        status=status, claimed_by=claimed_by, resolved_by=resolved_by, model_version=model_version, encounter_id=encounter_id,
        note_id=note_id, max_confidence=max_confidence, order=order or settings.queue_order, limit=limit,
        offset=offset,
    )
    return ReviewPage(items=[ReviewItemPublic.model_validate(i) for i in page.items], total=page.total,
                      limit=limit, offset=offset)


@router.post("/v1/reviews:claimNext", responses={**errors(), 204: {"description": "the queue is empty"}})
def claim_next(principal: CoderDep, queue: QueueDep, settings: SettingsDep) -> ReviewItemDetail:
    """Claim the next item in queue order (204 when none is waiting)."""
    item = queue.claim_next(principal, order=settings.queue_order)
    if item is None:
        return Response(status_code=204)  # type: ignore[return-value]
    return ReviewItemDetail.model_validate(item)


@router.get("/v1/reviews/{review_id}", responses=errors(404))
def get_review(review_id: NoNulStr, _: CoderDep, queue: QueueDep) -> ReviewItemDetail:
    """One review item, with the note text."""
    return ReviewItemDetail.model_validate(queue.get(review_id))


@router.get("/v1/reviews/{review_id}/history", responses=errors(404))
def review_history(review_id: NoNulStr, _: CoderDep, queue: QueueDep, log: AuditDep) -> AuditPage:
    """The audit trail of one review item, oldest first."""
    queue.get(review_id)  # 404 for an unknown item
    events = log.events(review_id=review_id, limit=1000)
    return AuditPage(events=[AuditEventPublic.model_validate(e) for e in events], limit=1000, offset=0)


@router.post("/v1/reviews/{review_id}:claim", responses=errors(404, 409))
def claim(review_id: NoNulStr, principal: CoderDep, queue: QueueDep) -> ReviewItemDetail:
    """Claim an item: only this coder may resolve it until the lease ends (claiming again renews it)."""
    return ReviewItemDetail.model_validate(queue.claim(review_id, principal))


@router.post("/v1/reviews/{review_id}:release", responses=errors(404, 409))
def release(review_id: NoNulStr, principal: CoderDep, queue: QueueDep) -> ReviewItemPublic:
    """Give a claimed item back to the queue."""
    return ReviewItemPublic.model_validate(queue.release(review_id, principal))


@router.post("/v1/reviews/{review_id}:resolve", responses=errors(404, 409, 422))
def resolve(review_id: NoNulStr, body: ResolveRequest, principal: CoderDep, queue: QueueDep) -> ResolveResponse:
    """Resolve a claimed item with the final code set; says which suggestions were kept, removed, added."""
    if not body.codes and not body.comment:
        raise HTTPException(422, "codes: give at least one code, or a comment saying why there is none")
    codes = check_final_codes(get_catalog(), [(c.code, c.system) for c in body.codes])
    resolution = queue.resolve(review_id, principal, codes, comment=body.comment)
    return ResolveResponse(item=ReviewItemPublic.model_validate(resolution.item), accepted=resolution.accepted,
                           removed=resolution.removed, added=resolution.added)

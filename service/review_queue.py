"""The review queue: notes whose suggestions are not confident enough, and coders' decisions on them.

Claims are atomic conditional updates (`UPDATE … WHERE id = ? AND <claimable>`), so two coders can
never hold one item, on SQLite or PostgreSQL; `claim_next` on PostgreSQL picks its item with
`SELECT … FOR UPDATE SKIP LOCKED`, so concurrent coders do not queue up behind one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from models.catalog import Catalog
from models.codes import normalize_cm, normalize_pcs
from models.errors import InputError
from service import audit
from service.auth import Principal
from service.db import ReviewItem, utcnow

Order = Literal["priority", "oldest", "newest"]
Status = Literal["open", "claimed", "resolved"]
ORDERS: dict[str, tuple] = {
    # Least confident first, then oldest: the notes a coder's judgement changes most.
    "priority": (ReviewItem.priority.asc(), ReviewItem.created_at.asc(), ReviewItem.id.asc()),
    "oldest": (ReviewItem.created_at.asc(), ReviewItem.id.asc()),
    "newest": (ReviewItem.created_at.desc(), ReviewItem.id.desc()),
}


class ReviewError(Exception):
    """A queue operation that cannot be done; `code` is the stable error code, `status` the HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class FinalCode:
    code: str
    system: str


@dataclass(frozen=True)
class Resolution:
    """What the coder did to the model's suggestions."""

    item: ReviewItem
    accepted: list[str]
    removed: list[str]
    added: list[str]


@dataclass(frozen=True)
class Page:
    items: list[ReviewItem]
    total: int


def note_confidence(codes: list[dict[str, Any]]) -> float:
    """A note's priority key: its best code's confidence (0 when the model found nothing)."""
    return max((float(c["confidence"]) for c in codes), default=0.0)


def check_final_codes(catalog: Catalog, codes: list[tuple[str, str | None]]) -> list[FinalCode]:
    """Normalise a coder's codes and check each exists in ICD-10-CM FY2026 or ICD-10-PCS.

    Args:
        codes: (code, system or None) pairs; without a system, the code's shape and the catalogue decide.

    Raises:
        InputError: naming the first code (by position) that is malformed, unknown or ambiguous.
    """
    out: list[FinalCode] = []
    for position, (code, system) in enumerate(codes):
        where = f"codes[{position}]"
        candidates = []
        if system in (None, "ICD-10-CM") and catalog.cm.is_valid(code):
            candidates.append(FinalCode(normalize_cm(code), "ICD-10-CM"))
        if system in (None, "ICD-10-PCS") and catalog.pcs.is_valid(code):
            candidates.append(FinalCode(normalize_pcs(code), "ICD-10-PCS"))
        if not candidates:
            known = system or "ICD-10-CM or ICD-10-PCS"
            raise InputError(f"{where}: {code!r} is not a valid {known} code")
        if len(candidates) > 1:
            raise InputError(f"{where}: {code!r} is valid in both systems; give its system")
        if candidates[0] not in out:
            out.append(candidates[0])
    return out


class ReviewQueue:
    """The queue's operations; each is one transaction together with its audit event."""

    def __init__(self, sessions: sessionmaker, lease_seconds: int = 900) -> None:
        self.sessions = sessions
        self.lease = timedelta(seconds=lease_seconds)

    # --- the EHR side -------------------------------------------------------------------------------
    def record_suggestion(
        self,
        principal: Principal,
        *,
        text: str,
        codes: list[dict[str, Any]],
        needs_review: bool,
        model_version: str,
        thresholds: dict[str, float],
        note_id: str | None = None,
        encounter_id: str | None = None,
        systems: list[str] | None = None,
    ) -> str | None:
        """Audit a suggestion served and, when it needs review, queue the note once per `note_id`.

        Returns:
            the review id (an existing one when this note_id was queued before), or None.
        """
        served = [{"code": c["code"], "system": c["system"], "confidence": round(float(c["confidence"]), 6),
                   "accepted": bool(c["accepted"])} for c in codes]
        for attempt in range(2):
            try:
                with self.sessions.begin() as session:
                    review_id = None
                    if note_id is not None:
                        review_id = session.scalar(select(ReviewItem.id).where(ReviewItem.note_id == note_id))
                    if review_id is None and needs_review:
                        now = utcnow()
                        item = ReviewItem(
                            note_id=note_id, encounter_id=encounter_id, text=text, systems=systems,
                            status="open", priority=note_confidence(codes), suggestions=_stored(codes),
                            model_version=model_version, thresholds=thresholds, created_at=now, updated_at=now,
                        )
                        session.add(item)
                        session.flush()
                        review_id = item.id
                        audit.record(session, principal, "enqueue", review_id=review_id, note_id=note_id,
                                     model_version=model_version, thresholds=thresholds)
                    audit.record(
                        session, principal, "suggest", review_id=review_id, note_id=note_id,
                        model_version=model_version, thresholds=thresholds,
                        details={"codes": served, "needs_review": needs_review},
                    )
                    return review_id
            except IntegrityError:
                # Another request queued this note_id between our read and our insert: use its item.
                if attempt:
                    raise
        return None  # unreachable: the loop returns or raises

    # --- the coder side -----------------------------------------------------------------------------
    def get(self, review_id: str) -> ReviewItem:
        """The item, with an expired claim shown as open. Raises ReviewError 404."""
        with self.sessions() as session:
            item = session.get(ReviewItem, review_id)
        if item is None:
            raise ReviewError(404, "review_not_found", f"no review item {review_id!r}")
        return _effective(item)

    def list(
        self,
        *,
        status: Status | None = None,
        claimed_by: str | None = None,
        resolved_by: str | None = None,
        model_version: str | None = None,
        encounter_id: str | None = None,
        note_id: str | None = None,
        max_confidence: float | None = None,
        order: Order = "priority",
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """A page of items matching every given filter, in the given order, with the total count."""
        now = utcnow()
        query = select(ReviewItem)
        if status == "open":
            query = query.where(_claimable(now))
        elif status == "claimed":
            query = query.where(ReviewItem.status == "claimed", ReviewItem.claim_expires_at >= now)
        elif status == "resolved":
            query = query.where(ReviewItem.status == "resolved")
        if claimed_by is not None:
            # The current holder: a lapsed or finished claim holds nothing.
            query = query.where(ReviewItem.claimed_by == claimed_by, ReviewItem.status == "claimed",
                                ReviewItem.claim_expires_at >= now)
        for column, value in (
            (ReviewItem.resolved_by, resolved_by), (ReviewItem.model_version, model_version),
            (ReviewItem.encounter_id, encounter_id), (ReviewItem.note_id, note_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if max_confidence is not None:
            query = query.where(ReviewItem.priority <= max_confidence)
        # The total comes with the page, from one statement: a separate count would see other rows than
        # the page under concurrent claims.
        counted = query.add_columns(func.count().over().label("total"))
        with self.sessions() as session:
            rows = session.execute(counted.order_by(*ORDERS[order]).offset(offset).limit(limit)).all()
            if rows:
                total = rows[0].total
            else:
                total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        return Page(items=[_effective(row[0], now) for row in rows], total=total)

    def depth(self) -> int:
        """Items waiting for a coder (open, or claimed with an expired lease)."""
        with self.sessions() as session:
            return session.scalar(select(func.count()).where(_claimable(utcnow()))) or 0

    def claim(self, review_id: str, principal: Principal) -> ReviewItem:
        """Hold the item for this coder until the lease ends (claiming it again renews the lease).

        Raises:
            ReviewError: 404 unknown item; 409 held by another coder, or already resolved.
        """
        now = utcnow()
        mine = and_(ReviewItem.status == "claimed", ReviewItem.claimed_by == principal.name)
        condition = or_(_claimable(now), mine)
        if self._take(review_id, principal, now, condition):
            return self.get(review_id)
        item = self.get(review_id)
        if item.status == "resolved":
            raise ReviewError(409, "review_resolved", f"review item {review_id!r} is already resolved")
        raise ReviewError(409, "review_claimed",
                          f"review item {review_id!r} is held by {item.claimed_by} until "
                          f"{item.claim_expires_at.isoformat() if item.claim_expires_at else '?'}")

    def claim_next(self, principal: Principal, order: Order = "priority") -> ReviewItem | None:
        """Claim the first claimable item in `order`; None when there is none."""
        while True:
            now = utcnow()
            with self.sessions.begin() as session:
                query: Select = select(ReviewItem.id).where(_claimable(now)).order_by(*ORDERS[order])
                if session.get_bind().dialect.name == "postgresql":
                    # Lock the row we take; rows other coders hold are skipped, not waited on.
                    review_id = session.scalar(query.limit(1).with_for_update(skip_locked=True))
                    if review_id is None:
                        return None
                    taken = self._take(review_id, principal, now, _claimable(now), session)
                else:
                    taken = None
                    candidates = list(session.scalars(query.limit(20)))
            if taken is not None:
                if taken:
                    return self.get(review_id)
                continue
            if not candidates:
                return None
            # SQLite: each conditional update is atomic under SQLite's single writer; a lost race moves on.
            for review_id in candidates:
                if self._take(review_id, principal, now, _claimable(now)):
                    return self.get(review_id)

    def release(self, review_id: str, principal: Principal) -> ReviewItem:
        """Give the item back to the queue. Only its holder (or an admin) may.

        Raises:
            ReviewError: 404 unknown item; 409 not claimed by this coder.
        """
        condition = ReviewItem.status == "claimed"
        if principal.role != "admin":
            condition = and_(condition, ReviewItem.claimed_by == principal.name,
                             ReviewItem.claim_expires_at >= utcnow())
        with self.sessions.begin() as session:
            item = session.get(ReviewItem, review_id)
            done = session.execute(
                update(ReviewItem).where(ReviewItem.id == review_id, condition)
                .values(status="open", claimed_by=None, claim_expires_at=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
            if done:
                audit.record(session, principal, "release", review_id=review_id,
                             note_id=item.note_id if item else None)
        if not done:
            self._refuse(review_id, principal)
        return self.get(review_id)

    def resolve(
        self, review_id: str, principal: Principal, codes: list[FinalCode], comment: str | None = None
    ) -> Resolution:
        """Close the item with the coder's final code set. The coder must hold the claim.

        Raises:
            ReviewError: 404 unknown item; 409 not claimed by this coder, or already resolved.
        """
        final = [{"code": c.code, "system": c.system} for c in codes]
        now = utcnow()
        with self.sessions.begin() as session:
            done = session.execute(
                update(ReviewItem)
                .where(ReviewItem.id == review_id, ReviewItem.status == "claimed",
                       ReviewItem.claimed_by == principal.name, ReviewItem.claim_expires_at >= now)
                .values(status="resolved", resolved_by=principal.name, resolved_at=now, final_codes=final,
                        comment=comment, claim_expires_at=None, updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if done:
                item = session.get(ReviewItem, review_id)
                suggested = [s["code"] for s in item.suggestions]
                chosen = [c.code for c in codes]
                resolution = Resolution(
                    item=item,
                    accepted=[c for c in suggested if c in chosen],
                    removed=[c for c in suggested if c not in chosen],
                    added=[c for c in chosen if c not in suggested],
                )
                audit.record(
                    session, principal, "resolve", review_id=review_id, note_id=item.note_id,
                    model_version=item.model_version, thresholds=item.thresholds,
                    details={"final_codes": final, "accepted": resolution.accepted, "removed": resolution.removed,
                             "added": resolution.added, "commented": bool(comment)},
                )
        if not done:
            self._refuse(review_id, principal)
        return resolution

    def resolved(self, since: datetime | None = None, until: datetime | None = None) -> list[ReviewItem]:
        """Resolved items, oldest resolution first, resolved in [since, until)."""
        query = select(ReviewItem).where(ReviewItem.status == "resolved")
        if since is not None:
            query = query.where(ReviewItem.resolved_at >= since)
        if until is not None:
            query = query.where(ReviewItem.resolved_at < until)
        with self.sessions() as session:
            return list(session.scalars(query.order_by(ReviewItem.resolved_at, ReviewItem.id)))

    def export(
        self, principal: Principal, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Resolved items as records of the JSONL that `python -m training` reads (`training.data.load_jsonl`):
        `id`, `text`, `diagnoses`, `procedures`; plus provenance fields the loader ignores."""
        items = self.resolved(since, until)
        with self.sessions.begin() as session:
            audit.record(session, principal, "export", details={
                "items": len(items), "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None})
        return [
            {
                "id": item.note_id or item.id,
                "text": item.text,
                "diagnoses": [c["code"] for c in item.final_codes or [] if c["system"] == "ICD-10-CM"],
                "procedures": [c["code"] for c in item.final_codes or [] if c["system"] == "ICD-10-PCS"],
                "review_id": item.id,
                "resolved_by": item.resolved_by,
                "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
                "model_version": item.model_version,
            }
            for item in items
        ]

    # --- helpers ------------------------------------------------------------------------------------
    def _take(self, review_id: str, principal: Principal, now: datetime, condition: Any, session: Any = None) -> bool:
        if session is None:
            with self.sessions.begin() as own:
                return self._take(review_id, principal, now, condition, own)
        done = session.execute(
            update(ReviewItem).where(ReviewItem.id == review_id, condition)
            .values(status="claimed", claimed_by=principal.name, claim_expires_at=now + self.lease, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done:
            note_id = session.scalar(select(ReviewItem.note_id).where(ReviewItem.id == review_id))
            audit.record(session, principal, "claim", review_id=review_id, note_id=note_id,
                         details={"lease_seconds": int(self.lease.total_seconds())})
        return bool(done)

    def _refuse(self, review_id: str, principal: Principal) -> None:
        item = self.get(review_id)
        if item.status == "resolved":
            raise ReviewError(409, "review_resolved", f"review item {review_id!r} is already resolved")
        if item.status == "claimed" and item.claimed_by != principal.name:
            raise ReviewError(409, "review_claimed", f"review item {review_id!r} is held by {item.claimed_by}")
        raise ReviewError(409, "review_not_claimed",
                          f"claim review item {review_id!r} first (a claim lapses after its lease)")


def _claimable(now: datetime) -> Any:
    return or_(
        ReviewItem.status == "open",
        and_(ReviewItem.status == "claimed", ReviewItem.claim_expires_at < now),
    )


def _effective(item: ReviewItem, now: datetime | None = None) -> ReviewItem:
    """Show an expired claim as an open item (the row itself is left for the next claim to overwrite)."""
    now = now or utcnow()
    if item.status == "claimed" and item.claim_expires_at is not None and item.claim_expires_at < now:
        item.status, item.claimed_by, item.claim_expires_at = "open", None, None
    return item


def _stored(codes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("code", "system", "description", "confidence", "accepted", "billable", "valid", "warnings", "evidence")
    return [{k: c[k] for k in keep if k in c} for c in codes]

"""The append-only audit log, and the accuracy report a coding supervisor audits.

Every suggestion served and every coder or admin action is one `AuditEvent`, written in the same
transaction as the change it records. Events carry codes, ids and versions, never note text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from eval.metrics import binarize, micro_prf
from service.db import AuditEvent, ReviewItem, utcnow

if TYPE_CHECKING:
    from service.auth import Principal

ACTIONS = (
    "suggest", "enqueue", "claim", "release", "resolve", "model_activate", "key_create", "key_revoke", "export",
)


def record(
    session: Session,
    principal: Principal,
    action: str,
    *,
    review_id: str | None = None,
    note_id: str | None = None,
    model_version: str | None = None,
    thresholds: dict | None = None,
    details: dict | None = None,
) -> None:
    """Add one event to the session's transaction (committed, or rolled back, with the change itself)."""
    session.add(
        AuditEvent(
            at=utcnow(), actor=principal.name, role=principal.role, action=action, review_id=review_id,
            note_id=note_id, model_version=model_version, thresholds=thresholds, details=details or {},
        )
    )


@dataclass
class CodeAgreement:
    code: str
    suggested: int
    final: int
    agreed: int

    @property
    def precision(self) -> float:
        return self.agreed / self.suggested if self.suggested else 0.0

    @property
    def recall(self) -> float:
        return self.agreed / self.final if self.final else 0.0


@dataclass
class AccuracyReport:
    """Agreement of the model's suggestions with coders' final codes over resolved review items.

    `suggested` counts every code the model returned for the note; `accepted_*` only those it marked
    confident enough to assign without review.
    """

    since: datetime | None
    until: datetime | None
    items: int
    precision: float
    recall: float
    f1: float
    accepted_precision: float
    per_code: list[CodeAgreement] = field(default_factory=list)


class AuditLog:
    """Read the audit log and report model-coder agreement."""

    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def events(
        self,
        *,
        note_id: str | None = None,
        review_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEvent]:
        """Events matching every given filter, oldest first; `until` is exclusive."""
        query = select(AuditEvent)
        for column, value in (
            (AuditEvent.note_id, note_id), (AuditEvent.review_id, review_id),
            (AuditEvent.actor, actor), (AuditEvent.action, action),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if until is not None:
            query = query.where(AuditEvent.at < until)
        with self.sessions() as session:
            return list(session.scalars(query.order_by(AuditEvent.id).offset(offset).limit(limit)))

    def accuracy(self, since: datetime | None = None, until: datetime | None = None) -> AccuracyReport:
        """Precision and recall of suggestions against coders' final codes, items resolved in [since, until)."""
        query = select(ReviewItem.suggestions, ReviewItem.final_codes).where(ReviewItem.status == "resolved")
        if since is not None:
            query = query.where(ReviewItem.resolved_at >= since)
        if until is not None:
            query = query.where(ReviewItem.resolved_at < until)
        with self.sessions() as session:
            rows = session.execute(query).all()
        suggested = [{_key(s) for s in suggestions} for suggestions, _ in rows]
        accepted = [{_key(s) for s in suggestions if s.get("accepted")} for suggestions, _ in rows]
        final = [{_key(c) for c in codes or []} for _, codes in rows]
        labels = sorted(set().union(*suggested, *final)) if rows else []
        if labels:
            y_true, _ = binarize(final, labels)
            overall = micro_prf(y_true, binarize(suggested, labels)[0])
            accepted_overall = micro_prf(y_true, binarize(accepted, labels)[0])
        else:
            overall = accepted_overall = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        counts: dict[str, Counter] = {"suggested": Counter(), "final": Counter(), "agreed": Counter()}
        for s, f in zip(suggested, final):
            counts["suggested"].update(s)
            counts["final"].update(f)
            counts["agreed"].update(s & f)
        per_code = [
            CodeAgreement(code=code, suggested=counts["suggested"][code], final=counts["final"][code],
                          agreed=counts["agreed"][code])
            for code in labels
        ]
        per_code.sort(key=lambda c: (-(c.final + c.suggested), c.code))
        return AccuracyReport(
            since=since, until=until, items=len(rows), precision=overall["precision"], recall=overall["recall"],
            f1=overall["f1"], accepted_precision=accepted_overall["precision"], per_code=per_code,
        )


def _key(code: dict[str, Any]) -> str:
    return code["code"]

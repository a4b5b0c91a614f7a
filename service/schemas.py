"""Request and response schemas of the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from models.errors import InputError
from models.predictor import Prediction, encounter_systems

CodeSystem = Literal["ICD-10-CM", "ICD-10-PCS"]
EncounterClass = Literal["inpatient", "outpatient"]  # models.predictor.ENCOUNTER_CLASSES
# A string the service stores or looks up: PostgreSQL text cannot hold NUL (SQLite can), so it is refused at
# the edge and both databases answer alike, 422, where PostgreSQL alone would fail with a 500. As a pattern, so
# the OpenAPI document says it too.
NoNulStr = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]


def _iso_8601(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected an ISO 8601 date and time, e.g. 2026-11-27T09:30:00Z") from None


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00:00-05:00 is in no year the database can store
        raise ValueError("out of range once converted to UTC") from None


# A moment to filter by: ISO 8601 only (pydantic alone would read `since=2026` as 2026 seconds after 1970),
# with its zone (a naive time would be read in an unknown one; the CLI refuses it too), in UTC, and within the
# years a database stores.
UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_8601), AfterValidator(_in_utc)]


class SuggestRequest(BaseModel):
    """One clinical note to code."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{
                "text": "Type 2 diabetes mellitus without complications. Essential hypertension.",
                "note_id": "note-1001", "encounter_id": "enc-77", "top_k": 5,
            }]
        },
    )

    text: NoNulStr = Field(..., min_length=1, description="the note, plain text")
    top_k: int = Field(10, ge=1, le=100, description="most codes to return")
    systems: list[CodeSystem] | None = Field(None, description="restrict to these code systems")
    note_id: NoNulStr | None = Field(
        None, min_length=1, max_length=200,
        description="the EHR's id of the note, echoed back; posting one note_id again never queues it twice",
    )
    encounter_id: NoNulStr | None = Field(None, min_length=1, max_length=200, description="the EHR's encounter id")
    encounter_class: EncounterClass | None = Field(
        None, description="the encounter's class: an outpatient note gets ICD-10-CM codes only (ICD-10-PCS codes the "
                          "procedures of inpatient stays)",
    )

    @model_validator(mode="after")
    def _systems_of_the_encounter(self) -> SuggestRequest:
        try:
            self.systems = encounter_systems(self.encounter_class, self.systems)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return self


class EvidenceSpan(BaseModel):
    """Character offsets into the submitted text, end exclusive."""

    start: int
    end: int


class CodeSuggestion(BaseModel):
    """One suggested code."""

    code: str
    system: CodeSystem
    description: str
    confidence: float = Field(..., ge=0, le=1)
    accepted: bool = Field(..., description="confident enough to be assigned without review")
    billable: bool
    valid: bool = Field(..., description="known to the ICD-10-CM FY2026 / ICD-10-PCS catalogue")
    warnings: list[str] = Field(
        default_factory=list,
        description="guideline flags: not_billable, missing_7th_character, excludes1:<code>, not_in_catalogue",
    )
    billable_alternatives: list[str] = Field(
        default_factory=list, description="for a non-billable code, its most likely billable codes"
    )
    evidence: list[EvidenceSpan]


class SuggestResponse(BaseModel):
    """Ranked codes for one note."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "note_id": "note-1001",
        "codes": [{
            "code": "E11.9", "system": "ICD-10-CM", "description": "Type 2 diabetes mellitus without complications",
            "confidence": 0.91, "accepted": True, "billable": True, "valid": True, "warnings": [],
            "billable_alternatives": [], "evidence": [{"start": 0, "end": 46}],
        }],
        "needs_review": True, "review_id": "3f2b8c1e-5d7a-4c0e-9a61-2b8f4e6d1c90", "model_version": "matcher-2026",
    }]})

    note_id: str | None = None
    codes: list[CodeSuggestion]
    needs_review: bool
    review_id: str | None = Field(None, description="the review-queue item, when the note needs review")
    model_version: str

    @classmethod
    def from_prediction(
        cls, prediction: Prediction, note_id: str | None = None, review_id: str | None = None
    ) -> SuggestResponse:
        return cls(
            note_id=note_id,
            review_id=review_id,
            codes=[
                CodeSuggestion(
                    code=c.code,
                    system=c.system,  # type: ignore[arg-type]
                    description=c.description,
                    confidence=min(max(c.confidence, 0.0), 1.0),
                    accepted=c.accepted,
                    billable=c.billable,
                    valid=c.valid,
                    warnings=c.warnings,
                    billable_alternatives=c.billable_alternatives,
                    evidence=[EvidenceSpan(start=e.start, end=e.end) for e in c.evidence],
                )
                for c in prediction.codes
            ],
            needs_review=prediction.needs_review,
            model_version=prediction.model_version,
        )


def _examples(*examples: dict) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


_REVIEW_ID = "3f2b8c1e-5d7a-4c0e-9a61-2b8f4e6d1c90"
_TIME = "2026-11-27T09:30:00Z"


class BatchSuggestRequest(BaseModel):
    """Several notes in one call (coded together, in one model pass)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"notes": [
        {"text": "Essential hypertension.", "note_id": "note-1"},
        {"text": "Acute appendicitis; laparoscopic appendectomy performed.", "note_id": "note-2"},
    ]}]})

    notes: list[SuggestRequest] = Field(..., min_length=1)


class BatchSuggestResponse(BaseModel):
    """One result per note, in the order the notes were sent."""

    model_config = _examples({"results": SuggestResponse.model_config["json_schema_extra"]["examples"]})

    results: list[SuggestResponse]


class ModelInfo(BaseModel):
    """The model in service."""

    model_config = _examples({"model_version": "matcher-2026", "kind": "matcher", "name": "default",
                              "artifact": None, "codes": 152734, "metrics": {}})

    model_version: str
    kind: str
    name: str = Field(..., description="the name an admin activates it by")
    artifact: str | None = Field(None, description="the artifact's folder on the server (admin keys only)")
    codes: int
    metrics: dict


class ModelEntryPublic(BaseModel):
    """An artifact in the model folder."""

    name: str
    kind: str
    active: bool
    metrics: dict = Field(default_factory=dict, description="the artifact's metrics.json")


class DeploymentPublic(BaseModel):
    model: str
    model_version: str
    activated_by: str
    activated_at: datetime


class ModelList(BaseModel):
    """Every model the service can serve, and the deployment history (newest first)."""

    model_config = _examples({
        "models": [{"name": "default", "kind": "matcher", "active": False, "metrics": {}},
                   {"name": "linear-v2", "kind": "linear", "active": True, "metrics": {"diagnoses": {"map": 0.21}}}],
        "history": [{"model": "linear-v2", "model_version": "linear-3a9f", "activated_by": "admin",
                     "activated_at": _TIME}],
    })

    models: list[ModelEntryPublic]
    history: list[DeploymentPublic]


class ReviewSuggestion(BaseModel):
    """A code the model suggested for a queued note."""

    code: str
    system: CodeSystem
    description: str = ""
    confidence: float
    accepted: bool
    billable: bool | None = None
    valid: bool | None = None
    warnings: list[str] = Field(default_factory=list)
    evidence: list[EvidenceSpan] = Field(default_factory=list)


class FinalCode(BaseModel):
    """A code a coder assigns."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(..., min_length=1, max_length=10)
    system: CodeSystem | None = Field(None, description="inferred from the code when left out")


_ITEM_EXAMPLE = {
    "id": _REVIEW_ID, "note_id": "note-1001", "encounter_id": "enc-77", "status": "claimed", "confidence": 0.62,
    "suggestions": [{"code": "E11.9", "system": "ICD-10-CM", "description": "Type 2 diabetes mellitus without "
                     "complications", "confidence": 0.62, "accepted": False, "evidence": [{"start": 0, "end": 46}]}],
    "model_version": "matcher-2026", "thresholds": {"accept": 0.85, "suggest": 0.0, "review_band": 0.2},
    "created_at": _TIME, "updated_at": _TIME, "claimed_by": "coder-ann", "claim_expires_at": "2026-11-27T09:45:00Z",
    "resolved_by": None, "resolved_at": None, "final_codes": None, "comment": None,
}


class ReviewItemPublic(BaseModel):
    """A note in the review queue (without its text; see `ReviewItemDetail`)."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_ITEM_EXAMPLE]})

    id: str
    note_id: str | None
    encounter_id: str | None
    status: Literal["open", "claimed", "resolved"]
    confidence: float = Field(..., validation_alias="priority", description="the note's best code's confidence")
    suggestions: list[ReviewSuggestion]
    model_version: str
    thresholds: dict
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None
    claim_expires_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    final_codes: list[FinalCode] | None
    comment: str | None


class ReviewItemDetail(ReviewItemPublic):
    """A queued note with its text, for the coder working it."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={
        "examples": [{**_ITEM_EXAMPLE, "text": "Type 2 diabetes mellitus without complications."}]})

    text: str


class ReviewPage(BaseModel):
    """A page of the queue."""

    model_config = _examples({"items": [_ITEM_EXAMPLE], "total": 1, "limit": 50, "offset": 0})

    items: list[ReviewItemPublic]
    total: int
    limit: int
    offset: int


class ResolveRequest(BaseModel):
    """The coder's final code set for the note (any valid ICD-10-CM / ICD-10-PCS codes)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "codes": [{"code": "E11.9"}, {"code": "I10", "system": "ICD-10-CM"}], "comment": "hypertension documented",
    }]})

    codes: list[FinalCode] = Field(..., max_length=200)
    comment: NoNulStr | None = Field(None, max_length=2000)


class ResolveResponse(BaseModel):
    """The resolved item and what the coder did to the suggestions."""

    model_config = _examples({"item": {**_ITEM_EXAMPLE, "status": "resolved"}, "accepted": ["E11.9"],
                              "removed": [], "added": ["I10"]})

    item: ReviewItemPublic
    accepted: list[str] = Field(..., description="suggested codes the coder kept")
    removed: list[str] = Field(..., description="suggested codes the coder dropped")
    added: list[str] = Field(..., description="codes the coder added")


class AuditEventPublic(BaseModel):
    """One audit record: who did what, when, with which model and thresholds. Never note text."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": 42, "at": _TIME, "actor": "coder-ann", "role": "coder", "action": "resolve", "review_id": _REVIEW_ID,
        "note_id": "note-1001", "model_version": "matcher-2026", "thresholds": {"accept": 0.85},
        "details": {"accepted": ["E11.9"], "removed": [], "added": ["I10"]},
    }]})

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    review_id: str | None
    note_id: str | None
    model_version: str | None
    thresholds: dict | None
    details: dict


class AuditPage(BaseModel):
    model_config = _examples({"events": [AuditEventPublic.model_config["json_schema_extra"]["examples"][0]],
                              "limit": 100, "offset": 0})

    events: list[AuditEventPublic]
    limit: int
    offset: int


class CodeAgreementPublic(BaseModel):
    code: str
    suggested: int
    final: int
    agreed: int
    precision: float
    recall: float


class AccuracyReportPublic(BaseModel):
    """Model-coder agreement over resolved review items."""

    model_config = _examples({
        "since": "2026-11-01T00:00:00Z", "until": None, "items": 120, "precision": 0.41, "recall": 0.63,
        "f1": 0.5, "accepted_precision": 0.88,
        "per_code": [{"code": "I10", "suggested": 50, "final": 48, "agreed": 45, "precision": 0.9, "recall": 0.94}],
    })

    since: datetime | None
    until: datetime | None
    items: int
    precision: float
    recall: float
    f1: float
    accepted_precision: float = Field(..., description="precision of the codes marked confident enough to assign")
    per_code: list[CodeAgreementPublic]


class KeyCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "epic-prod", "role": "ehr"}]})

    name: NoNulStr = Field(..., min_length=1, max_length=100)
    role: Literal["ehr", "coder", "admin"]


class KeyPublic(BaseModel):
    """An API key's metadata (never the key)."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "name": "epic-prod", "role": "ehr", "key_prefix": "icd_Xk3v9a", "created_at": _TIME, "revoked_at": None}]})

    name: str
    role: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyList(BaseModel):
    model_config = _examples({"keys": [KeyPublic.model_config["json_schema_extra"]["examples"][0]]})

    keys: list[KeyPublic]


class KeyCreated(BaseModel):
    """The new key: shown this once, stored only hashed."""

    model_config = _examples({"name": "epic-prod", "role": "ehr", "key": "icd_Xk3v9a…"})

    name: str
    role: str
    key: str


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error: a stable machine-readable code and a message that never contains note text."""

    model_config = _examples({"error": {"code": "review_claimed", "message": "review item … is held by coder-bob"}})

    error: ErrorBody


class Status(BaseModel):
    model_config = _examples({"status": "ok"})

    status: str
    model_version: str | None = None


class Me(BaseModel):
    """Who the key belongs to."""

    model_config = _examples({"name": "coder-ann", "role": "coder"})

    name: str
    role: str


class CodeHitPublic(BaseModel):
    code: str
    system: CodeSystem
    description: str
    billable: bool


class CodeSearchResult(BaseModel):
    """Codes found by code prefix or description words."""

    model_config = _examples({"query": "diab mell type 2", "hits": [
        {"code": "E11.9", "system": "ICD-10-CM", "description": "Type 2 diabetes mellitus without complications",
         "billable": True}]})

    query: str
    hits: list[CodeHitPublic]


class CatalogEntry(BaseModel):
    """What the catalogue says about a code: description, billability and the tabular list's notes."""

    model_config = _examples({
        "code": "E11.9", "system": "ICD-10-CM", "description": "Type 2 diabetes mellitus without complications",
        "billable": True, "inclusion_terms": [], "excludes1": ["type 1 diabetes mellitus (E10.-)"],
        "excludes2": [], "code_first": [], "use_additional": ["code to identify control using insulin (Z79.4)"],
        "billable_alternatives": [],
    })

    code: str
    system: CodeSystem
    description: str
    billable: bool
    inclusion_terms: list[str]
    excludes1: list[str]
    excludes2: list[str]
    code_first: list[str]
    use_additional: list[str]
    billable_alternatives: list[str] = Field(..., description="for a non-billable code, a few billable codes under it")


class CodeSetCheckRequest(BaseModel):
    """A code set a coder is about to resolve with."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"codes": [{"code": "E11.9"}, {"code": "E10.9"}, {"code": "S72.001"}]}]})

    codes: list[FinalCode] = Field(..., max_length=200)


class CodeCheckPublic(BaseModel):
    code: str
    system: CodeSystem
    valid: bool
    billable: bool
    warnings: list[str] = Field(..., description="not_in_catalogue, not_billable, missing_7th_character, "
                                "excludes1:<code>")


class CodeSetCheck(BaseModel):
    """The guideline warnings of a code set; `ok` when there is none."""

    model_config = _examples({"ok": False, "codes": [
        {"code": "E11.9", "system": "ICD-10-CM", "valid": True, "billable": True, "warnings": ["excludes1:E10.9"]},
        {"code": "E10.9", "system": "ICD-10-CM", "valid": True, "billable": True, "warnings": ["excludes1:E11.9"]},
        {"code": "S72.001", "system": "ICD-10-CM", "valid": True, "billable": False,
         "warnings": ["not_billable", "missing_7th_character"]}]})

    ok: bool
    codes: list[CodeCheckPublic]

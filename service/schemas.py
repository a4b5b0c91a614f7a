"""Request and response schemas of the HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.predictor import Prediction

CodeSystem = Literal["ICD-10-CM", "ICD-10-PCS"]


class SuggestRequest(BaseModel):
    """One clinical note to code."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "Type 2 diabetes mellitus without complications. Essential hypertension.", "top_k": 5}]
        },
    )

    text: str = Field(..., min_length=1, description="the note, plain text")
    top_k: int = Field(10, ge=1, le=100, description="most codes to return")
    systems: list[CodeSystem] | None = Field(None, description="restrict to these code systems")
    note_id: str | None = Field(None, max_length=200, description="the EHR's id of the note, echoed back")


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

    note_id: str | None = None
    codes: list[CodeSuggestion]
    needs_review: bool
    review_id: str | None = Field(None, description="the review-queue item, when the note needs review")
    model_version: str

    @classmethod
    def from_prediction(cls, prediction: Prediction, note_id: str | None = None) -> SuggestResponse:
        return cls(
            note_id=note_id,
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


class ModelInfo(BaseModel):
    """The model in service."""

    model_version: str
    kind: str
    artifact: str | None
    codes: int
    metrics: dict


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error: a stable machine-readable code and a message that never contains note text."""

    error: ErrorBody

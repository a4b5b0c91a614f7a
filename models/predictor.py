"""The seam between the service and the model: `Predictor.predict(text)` -> ranked, decided codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.catalog import Catalog
from models.decision import Thresholds, decide
from models.errors import InputError
from models.guidelines import check_codes
from models.scorer import SYSTEMS, CoalescingScorer, CompositeScorer, EvidenceSource, Scorer
from models.text import check_note

ENCOUNTER_CLASSES = ("inpatient", "outpatient")


def encounter_systems(encounter_class: str | None, systems: list[str] | None) -> list[str] | None:
    """The code systems to return for a note of an encounter class (None: as asked). ICD-10-PCS codes the
    procedures of inpatient hospital stays; an outpatient's are coded in CPT / HCPCS, so an outpatient note
    gets its ICD-10-CM codes only.

    Raises:
        InputError: an unknown encounter class, or an outpatient note asked for ICD-10-PCS codes alone.
    """
    if encounter_class is None or encounter_class == "inpatient":
        return systems
    if encounter_class != "outpatient":
        raise InputError(f"encounter_class: expected one of {list(ENCOUNTER_CLASSES)}, got {encounter_class!r}")
    kept = [s for s in (systems or SYSTEMS) if s != "ICD-10-PCS"]
    if not kept:
        raise InputError("systems: an outpatient note has no ICD-10-PCS codes (those are for inpatient stays); "
                         "ask for ICD-10-CM")
    return kept


@dataclass(frozen=True)
class Evidence:
    """A span of the submitted text, end exclusive."""

    start: int
    end: int


@dataclass(frozen=True)
class SuggestedCode:
    """One ranked code for a note."""

    code: str
    system: str
    description: str
    confidence: float
    accepted: bool
    billable: bool
    evidence: list[Evidence] = field(default_factory=list)
    valid: bool = True
    warnings: list[str] = field(default_factory=list)
    billable_alternatives: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Prediction:
    """What the model says about one note."""

    codes: list[SuggestedCode]
    needs_review: bool
    model_version: str


class Predictor:
    """A scorer with its thresholds and the catalogue, ready to serve."""

    def __init__(
        self, scorer: Scorer, catalog: Catalog, thresholds: Thresholds, model_version: str, valid_only: bool = False
    ) -> None:
        """`valid_only` keeps codes the FY2026 catalogue does not know (a CodiEsp-trained model's CIE10-2018
        codes, say) out of the answer; the service turns it on."""
        self.scorer = scorer
        self.catalog = catalog
        self.thresholds = thresholds
        self.model_version = model_version
        systems = np.asarray(scorer.code_systems)
        self._system_masks = {s: systems == s for s in SYSTEMS}
        # Descriptions and billability do not depend on the note: look them up once.
        self._descriptions = [catalog.describe(c, s) for c, s in zip(scorer.codes, scorer.code_systems)]
        self._billable = [
            (catalog.cm if s == "ICD-10-CM" else catalog.pcs).is_billable(c)
            for c, s in zip(scorer.codes, scorer.code_systems)
        ]
        self._valid = np.asarray([
            (catalog.cm if s == "ICD-10-CM" else catalog.pcs).is_valid(c)
            for c, s in zip(scorer.codes, scorer.code_systems)
        ])
        self.valid_only = valid_only
        self._index = {(s, c): i for i, (c, s) in enumerate(zip(scorer.codes, scorer.code_systems))}

    def parts(self) -> list[Any]:
        """The scorers that do the work: a hybrid's components, or the scorer itself."""
        if isinstance(self.scorer, CompositeScorer):
            return list(self.scorer.components.values())
        return [self.scorer]

    def batch_concurrent_calls(self, max_notes: int = 16, max_wait_ms: float = 2.0) -> int:
        """Let concurrent `predict` calls share model passes where a part gains from it (the transformer):
        a note waits at most `max_wait_ms` for others, `max_notes` at most per pass. The other parts run
        in the calling threads. Returns how many parts batch. `close()` ends it."""
        batching = [part for part in self.parts() if isinstance(part, CoalescingScorer)]
        for part in batching:
            part.coalesce(max_notes, max_wait_ms)
        return len(batching)

    def close(self) -> None:
        """Stop the batching threads; the predictor still works, unbatched (calls in flight finish)."""
        for part in self.parts():
            if isinstance(part, CoalescingScorer):
                part.close()

    def predict(self, text: str, top_k: int = 10, systems: list[str] | None = None) -> Prediction:
        """Suggest codes for one note.

        Raises:
            InputError: for an empty or overlong note, a bad `top_k` or an unknown code system.
        """
        return self.predict_batch([text], top_k=top_k, systems=systems)[0]

    def predict_batch(self, texts: list[str], top_k: int = 10, systems: list[str] | None = None) -> list[Prediction]:
        """Suggest codes for several notes at once (one scorer call)."""
        for text in texts:
            check_note(text)
        allowed = self._allowed(systems)
        probs, sources = self.scorer.score(texts)  # (docs, codes), each note's evidence
        return [self._decide(row, source, top_k, allowed) for row, source in zip(probs, sources)]

    def _allowed(self, systems: list[str] | None) -> np.ndarray | None:
        mask = self._valid if self.valid_only else None
        if not systems:
            return mask
        unknown = [s for s in systems if s not in self._system_masks]
        if unknown:
            raise InputError(f"unknown code system(s) {unknown}; expected some of {list(SYSTEMS)}")
        chosen = np.logical_or.reduce([self._system_masks[s] for s in systems])
        return chosen if mask is None else chosen & mask

    def _decide(self, probs: np.ndarray, source: EvidenceSource, top_k: int, allowed: np.ndarray | None
                ) -> Prediction:
        decision = decide(probs, top_k, self.thresholds, allowed)
        spans = source.evidence(decision.ranked)
        pairs = [(self.scorer.code_systems[i], self.scorer.codes[i]) for i in decision.ranked]
        checks = check_codes(self.catalog, pairs, decision.accepted, _ScoreLookup(self._index, probs))
        codes = []
        for idx, accepted, check in zip(decision.ranked, decision.accepted, checks):
            segment = spans.get(idx)
            codes.append(
                SuggestedCode(
                    code=self.scorer.codes[idx],
                    system=self.scorer.code_systems[idx],
                    description=self._descriptions[idx],
                    confidence=float(probs[idx]),
                    accepted=accepted,
                    billable=self._billable[idx],
                    evidence=[Evidence(segment.start, segment.end)] if segment else [],
                    valid=check.valid,
                    warnings=check.warnings,
                    billable_alternatives=check.billable_alternatives,
                )
            )
        # Accepted codes that exclude each other (Excludes1) need a coder to choose.
        conflict = any(c.accepted and any(w.startswith("excludes1:") for w in c.warnings) for c in codes)
        return Prediction(codes=codes, needs_review=decision.needs_review or conflict,
                          model_version=self.model_version)


class _ScoreLookup(dict):
    """(system, code) -> this note's score, looked up lazily in the score row."""

    def __init__(self, index: dict[tuple[str, str], int], probs: np.ndarray) -> None:
        super().__init__()
        self._index, self._probs = index, probs

    def get(self, key, default=0.0):  # type: ignore[override]
        i = self._index.get(key)
        return float(self._probs[i]) if i is not None else default

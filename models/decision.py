"""The decision rule: one function turns per-code confidences into what is returned and whether a coder
must look. The service and the evaluation both call `decide()`, so that what is measured is what is served.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.errors import ArtifactError, InputError


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds; they belong to the trained artifact (`thresholds.json`).

    Attributes:
        accept: a code at or above this confidence may be assigned without review.
        suggest: codes below this confidence are not returned at all.
        review_band: a note needs review when any returned code lies in [suggest, accept) and is at or
            above this value, or when no code reaches `accept`. It lets a model ignore long-tail
            suggestions that are clearly wrong while still sending borderline notes to a coder.
    """

    accept: float = 0.5
    suggest: float = 0.0
    review_band: float = 0.2

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise ArtifactError(f"threshold {name}={value} is outside [0, 1]")

    @classmethod
    def from_dict(cls, data: dict) -> Thresholds:
        """Build from `thresholds.json` content; unknown keys are an error."""
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except (AttributeError, TypeError, ValueError) as exc:
            raise ArtifactError(f"bad thresholds: {exc}") from exc

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """Outcome for one note."""

    ranked: list[int]  # code indices, best first, at most top_k
    accepted: list[bool]  # per ranked code: at or above `accept`
    needs_review: bool


def decide(probs: np.ndarray, top_k: int, thresholds: Thresholds, allowed: np.ndarray | None = None) -> Decision:
    """Rank codes for one note and decide whether a coder must review it.

    Args:
        probs: (n_codes,) confidences in [0, 1].
        top_k: most codes to return (>= 1).
        thresholds: the artifact's thresholds.
        allowed: optional (n_codes,) boolean mask of codes that may be returned (code-system filter,
            validity rules).
    Returns:
        The ranked code indices, which of them are accepted, and `needs_review`.
    Raises:
        InputError: when `top_k` < 1 or `probs` is not one-dimensional.
    """
    if top_k < 1:
        raise InputError(f"top_k must be at least 1, got {top_k}")
    if probs.ndim != 1:
        raise InputError(f"probs must be one-dimensional, got shape {probs.shape}")
    masked = np.where(allowed, probs, -1.0) if allowed is not None else probs
    k = min(top_k, masked.shape[0])
    if k < masked.shape[0]:
        # Every code tied with the k-th best is a candidate, so the index tie-break holds at the cut.
        kth = masked[np.argpartition(-masked, k - 1)[k - 1]]
        candidates = np.flatnonzero(masked >= kth)
    else:
        candidates = np.arange(masked.shape[0])
    # Stable order: by descending confidence, then by code index.
    candidates = candidates[np.lexsort((candidates, -masked[candidates]))][:k]
    # Codes below `suggest` are not returned, nor codes that no scorer supported at all.
    ranked = [int(i) for i in candidates if masked[i] >= thresholds.suggest and masked[i] > 0]
    accepted = [bool(probs[i] >= thresholds.accept) for i in ranked]
    uncertain = any(thresholds.review_band <= probs[i] < thresholds.accept for i in ranked)
    needs_review = uncertain or not any(accepted)
    return Decision(ranked=ranked, accepted=accepted, needs_review=needs_review)

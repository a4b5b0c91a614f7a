"""Triage: which notes can skip review, how good are the codes of those notes, and the thresholds that
reach a target precision. Everything runs through `decide()`, exactly as the service does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from models.decision import Thresholds, decide


@dataclass(frozen=True)
class NoteCandidates:
    """One note: its candidates' probabilities, which of them are gold, and its number of gold codes."""

    probs: np.ndarray  # (candidates,)
    is_gold: np.ndarray  # (candidates,) bool
    n_gold: int


def precision_lower_bound(correct: int, total: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound of a proportion (0 when nothing was counted)."""
    if total == 0 or correct == 0:
        return 0.0
    return float(beta.ppf(1 - confidence, correct, total - correct + 1))


def triage_stats(notes: Sequence[NoteCandidates], thresholds: Thresholds, top_k: int) -> dict[str, float]:
    """Share of notes that skip review, and precision / recall of the accepted codes on those notes."""
    skipped = correct = accepted = gold = 0
    for note in notes:
        if note.probs.size == 0:
            continue
        decision = decide(note.probs, top_k, thresholds)
        if decision.needs_review:
            continue
        skipped += 1
        chosen = [i for i, ok in zip(decision.ranked, decision.accepted) if ok]
        accepted += len(chosen)
        correct += int(note.is_gold[chosen].sum())
        gold += note.n_gold
    return {
        "skip_rate": skipped / len(notes) if notes else 0.0,
        "notes_skipped": skipped,
        "codes_accepted": accepted,
        "precision": correct / accepted if accepted else float("nan"),
        "precision_lower_bound": precision_lower_bound(correct, accepted),
        "recall": correct / gold if gold else float("nan"),
    }


def tune_thresholds(
    notes: Sequence[NoteCandidates], target_precision: float = 0.95, top_k: int = 15,
    suggest: float = 0.01,
) -> tuple[Thresholds, dict[str, float]]:
    """The thresholds that let the most notes skip review while the one-sided 95% lower bound of the
    precision of their codes stays at or above the target. With no such setting every note is reviewed
    (accept = 1.0)."""
    best = (Thresholds(accept=1.0, suggest=suggest, review_band=suggest), {"skip_rate": 0.0})
    grid = np.round(np.arange(0.30, 0.991, 0.01), 2)
    for accept in grid:
        for band in (0.02, 0.05, 0.1, 0.2, 0.3):
            if band >= accept:
                continue
            thresholds = Thresholds(accept=float(accept), suggest=min(suggest, band), review_band=band)
            stats = triage_stats(notes, thresholds, top_k)
            if stats["precision_lower_bound"] >= target_precision and stats["skip_rate"] > best[1]["skip_rate"]:
                best = (thresholds, stats)
    return best[0], triage_stats(notes, best[0], top_k)


def accepted_codes(notes: Sequence[NoteCandidates], thresholds: Thresholds, top_k: int) -> dict[str, float]:
    """Precision (with its one-sided 95% lower bound) and recall of the accepted codes over every note,
    whether or not its note goes to review: what a coder finds pre-ticked."""
    correct = accepted = gold = 0
    for note in notes:
        gold += note.n_gold
        if note.probs.size == 0:
            continue
        decision = decide(note.probs, top_k, thresholds)
        chosen = [i for i, ok in zip(decision.ranked, decision.accepted) if ok]
        accepted += len(chosen)
        correct += int(note.is_gold[chosen].sum())
    return {
        "codes_accepted": accepted,
        "precision": correct / accepted if accepted else float("nan"),
        "precision_lower_bound": precision_lower_bound(correct, accepted),
        "recall": correct / gold if gold else float("nan"),
    }


def tune_accept(
    notes: Sequence[NoteCandidates], target_precision: float = 0.9, top_k: int = 15, suggest: float = 0.01,
) -> tuple[Thresholds, dict[str, float]]:
    """The code-level rule: the `accept` threshold that pre-accepts the most codes while the one-sided 95%
    lower bound of their precision stays at or above the target. Every other returned code sends its note to
    review (`review_band` = `suggest`). With no such threshold nothing is accepted (accept = 1.0)."""
    best = Thresholds(accept=1.0, suggest=suggest, review_band=suggest)
    most = 0
    for accept in np.round(np.arange(0.30, 0.991, 0.01), 2):
        thresholds = Thresholds(accept=float(accept), suggest=suggest, review_band=suggest)
        stats = accepted_codes(notes, thresholds, top_k)
        if stats["precision_lower_bound"] >= target_precision and stats["codes_accepted"] > most:
            best, most = thresholds, stats["codes_accepted"]
    return best, accepted_codes(notes, best, top_k)


def triage_curve(notes: Sequence[NoteCandidates], top_k: int, band_ratio: float = 0.5) -> list[dict[str, float]]:
    """Review rate against precision and recall of the auto-coded notes, over `accept` thresholds; a code
    between `band_ratio * accept` and `accept` sends its note to review, lower codes are not returned."""
    points = []
    for accept in np.round(np.arange(0.1, 1.0, 0.02), 2):
        band = float(accept) * band_ratio
        stats = triage_stats(notes, Thresholds(accept=float(accept), suggest=band, review_band=band), top_k)
        stats["accept"] = float(accept)
        stats["review_rate"] = 1.0 - stats["skip_rate"]
        points.append(stats)
    return [p for p in points if not math.isnan(p["precision"])] or points

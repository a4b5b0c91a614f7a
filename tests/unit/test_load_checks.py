"""The pure parts of `python -m eval.load`: percentiles, the coder's code set, and the claim-trail check."""

from __future__ import annotations

import random
from collections import namedtuple
from datetime import UTC, datetime, timedelta

from eval.load import final_codes, percentile, trail_violations

Event = namedtuple("Event", "review_id actor action at details")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(actor: str, action: str, seconds: float, item: str = "r1") -> Event:
    details = {"lease_seconds": 900} if action == "claim" else {}
    return Event(item, actor, action, T0 + timedelta(seconds=seconds), details)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_final_codes_keep_the_accepted_suggestions_and_drop_invalid_ones() -> None:
    suggestions = [
        {"code": "E11.9", "system": "ICD-10-CM", "confidence": 0.9, "accepted": True, "valid": True},
        {"code": "I10", "system": "ICD-10-CM", "confidence": 0.5, "accepted": False, "valid": True},
        {"code": "X99.9", "system": "ICD-10-CM", "confidence": 0.95, "accepted": True, "valid": False},
    ]
    for seed in range(20):
        codes = final_codes(suggestions, random.Random(seed))
        assert codes[0] == ("E11.9", "ICD-10-CM") and ("X99.9", "ICD-10-CM") not in codes
        assert len(codes) == len(set(codes)) <= 2


def test_a_clean_trail_has_no_violations() -> None:
    trail = [_event("ann", "claim", 0), _event("ann", "release", 5), _event("bob", "claim", 6),
             _event("bob", "claim", 7), _event("bob", "resolve", 8),
             _event("ann", "claim", 0, "r2"), _event("bob", "claim", 901, "r2"), _event("bob", "resolve", 902, "r2")]
    assert trail_violations(trail) == []


def test_two_holders_a_second_resolve_and_a_resolve_by_another_are_violations() -> None:
    held_twice = [_event("ann", "claim", 0), _event("bob", "claim", 10)]
    resolved_twice = [_event("ann", "claim", 0, "r2"), _event("ann", "resolve", 1, "r2"),
                      _event("ann", "resolve", 2, "r2")]
    not_the_holder = [_event("ann", "claim", 0, "r3"), _event("bob", "resolve", 1, "r3")]
    violations = trail_violations(held_twice + resolved_twice + not_the_holder)
    assert violations == ["r1: claimed by bob while ann held it", "r2: resolve by ann after its resolve",
                          "r3: resolved by bob, held by ann"]

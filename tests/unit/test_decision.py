"""decide() and Thresholds against small worked examples."""

import numpy as np
import pytest

from models.decision import Decision, Thresholds, decide
from models.errors import ArtifactError, InputError

DEFAULT = Thresholds(accept=0.5, suggest=0.0, review_band=0.2)


def test_ranking_order() -> None:
    # Sorted by confidence: idx 1 (0.9), 3 (0.7), 2 (0.4), 0 (0.1).
    # 0.9 and 0.7 are >= 0.5: accepted. 0.4 lies in [0.2, 0.5): review.
    d = decide(np.array([0.1, 0.9, 0.4, 0.7]), top_k=4, thresholds=DEFAULT)
    assert d == Decision(ranked=[1, 3, 2, 0], accepted=[True, True, False, False], needs_review=True)


def test_ties_broken_by_index_when_everything_fits() -> None:
    d = decide(np.array([0.5, 0.9, 0.5, 0.9]), top_k=4, thresholds=DEFAULT)
    assert d.ranked == [1, 3, 0, 2]


def test_ties_broken_by_index_across_the_top_k_cut() -> None:
    # 0.9 at indices 2 and 3: the lower index wins the single slot.
    assert decide(np.array([0.5, 0.5, 0.9, 0.9]), top_k=1, thresholds=DEFAULT).ranked == [2]
    # 0.5 at indices 0 and 1 compete for the third slot: index 0 wins.
    assert decide(np.array([0.5, 0.5, 0.9, 0.9]), top_k=3, thresholds=DEFAULT).ranked == [2, 3, 0]


def test_top_k_cut() -> None:
    probs = np.array([0.1, 0.9, 0.4, 0.7])
    assert decide(probs, top_k=2, thresholds=DEFAULT).ranked == [1, 3]
    assert decide(probs, top_k=1, thresholds=DEFAULT).ranked == [1]
    assert decide(probs, top_k=100, thresholds=DEFAULT).ranked == [1, 3, 2, 0]  # top_k > n_codes


def test_suggest_filters_low_codes() -> None:
    t = Thresholds(accept=0.8, suggest=0.3, review_band=0.5)
    # 0.25 and 0.0 are below suggest: not returned. 0.35 is returned but under review_band 0.5,
    # and 0.9 is accepted, so no review.
    d = decide(np.array([0.25, 0.35, 0.9, 0.0]), top_k=4, thresholds=t)
    assert d == Decision(ranked=[2, 1], accepted=[True, False], needs_review=False)


def test_suggest_zero_drops_zero_confidence_codes() -> None:
    d = decide(np.array([0.0, 0.6, 0.0]), top_k=3, thresholds=DEFAULT)
    assert d.ranked == [1]


def test_code_exactly_at_suggest_is_returned() -> None:
    # Thresholds doc: "codes below this confidence are not returned at all", so 0.25 == suggest stays.
    t = Thresholds(accept=0.75, suggest=0.25, review_band=0.5)
    d = decide(np.array([0.25, 0.875]), top_k=2, thresholds=t)
    assert d.ranked == [1, 0]


def test_accepted_at_exactly_accept() -> None:
    d = decide(np.array([0.5, 0.4999]), top_k=2, thresholds=DEFAULT)
    assert d.accepted == [True, False]
    d = decide(np.array([0.5]), top_k=1, thresholds=DEFAULT)
    assert d == Decision(ranked=[0], accepted=[True], needs_review=False)  # 0.5 is not in [0.2, 0.5)


def test_needs_review_when_a_code_is_in_the_band() -> None:
    t = Thresholds(accept=0.75, suggest=0.0, review_band=0.25)
    assert decide(np.array([0.875, 0.25]), top_k=2, thresholds=t).needs_review is True  # at the band edge
    assert decide(np.array([0.875, 0.5]), top_k=2, thresholds=t).needs_review is True
    assert decide(np.array([0.875, 0.2499]), top_k=2, thresholds=t).needs_review is False


def test_needs_review_when_nothing_is_accepted() -> None:
    # Nothing in the band [0.2, 0.5) either: review only because nothing reaches accept.
    d = decide(np.array([0.1, 0.05]), top_k=2, thresholds=DEFAULT)
    assert d == Decision(ranked=[0, 1], accepted=[False, False], needs_review=True)
    d = decide(np.array([0.0, 0.0]), top_k=2, thresholds=DEFAULT)
    assert d == Decision(ranked=[], accepted=[], needs_review=True)


def test_no_review_when_all_codes_are_confident_or_clearly_wrong() -> None:
    d = decide(np.array([0.95, 0.1, 0.6, 0.19]), top_k=4, thresholds=DEFAULT)
    assert d == Decision(ranked=[0, 2, 3, 1], accepted=[True, True, False, False], needs_review=False)


def test_band_code_cut_by_top_k_does_not_trigger_review() -> None:
    # 0.3 is in the band but is not returned with top_k=1.
    assert decide(np.array([0.9, 0.3]), top_k=1, thresholds=DEFAULT).needs_review is False


def test_allowed_mask() -> None:
    probs = np.array([0.9, 0.8, 0.1])
    allowed = np.array([False, True, True])
    d = decide(probs, top_k=3, thresholds=DEFAULT, allowed=allowed)
    assert d == Decision(ranked=[1, 2], accepted=[True, False], needs_review=False)
    assert decide(probs, top_k=1, thresholds=DEFAULT, allowed=allowed).ranked == [1]
    nothing = decide(probs, top_k=3, thresholds=DEFAULT, allowed=np.zeros(3, dtype=bool))
    assert nothing == Decision(ranked=[], accepted=[], needs_review=True)


@pytest.mark.parametrize("top_k", [0, -1])
def test_top_k_below_one_raises(top_k: int) -> None:
    with pytest.raises(InputError, match="top_k"):
        decide(np.array([0.5]), top_k=top_k, thresholds=DEFAULT)


def test_probs_must_be_one_dimensional() -> None:
    with pytest.raises(InputError):
        decide(np.array([[0.5, 0.2]]), top_k=1, thresholds=DEFAULT)


@pytest.mark.parametrize(
    "kwargs",
    [{"accept": 1.5}, {"accept": -0.01}, {"suggest": -0.1}, {"review_band": 1.01}, {"accept": float("nan")}],
)
def test_thresholds_out_of_range(kwargs: dict) -> None:
    with pytest.raises(ArtifactError):
        Thresholds(**kwargs)


def test_thresholds_bounds_are_inclusive() -> None:
    assert Thresholds(accept=1.0, suggest=0.0, review_band=0.0).accept == 1.0
    assert Thresholds(accept=0.0, suggest=1.0, review_band=1.0).suggest == 1.0


def test_thresholds_from_dict() -> None:
    t = Thresholds.from_dict({"accept": "0.7", "suggest": 0.05, "review_band": 0.3})
    assert t == Thresholds(accept=0.7, suggest=0.05, review_band=0.3)
    assert Thresholds.from_dict(t.to_dict()) == t
    assert Thresholds.from_dict({}) == Thresholds()  # defaults: 0.5 / 0.0 / 0.2
    assert Thresholds().to_dict() == {"accept": 0.5, "suggest": 0.0, "review_band": 0.2}


@pytest.mark.parametrize(
    "data", [{"accept": 0.5, "acept": 0.6}, {"accept": "high"}, {"accept": None}, {"accept": 2.0}]
)
def test_thresholds_from_dict_rejects_bad_content(data: dict) -> None:
    with pytest.raises(ArtifactError):
        Thresholds.from_dict(data)

"""Calibration and the triage rule, against hand-computed examples."""

import numpy as np
import pytest

from eval.triage import (
    NoteCandidates,
    accepted_codes,
    precision_lower_bound,
    triage_stats,
    tune_accept,
    tune_thresholds,
)
from models.calibration import IsotonicCalibrator
from models.decision import Thresholds
from models.errors import ArtifactError


def test_isotonic_calibration_matches_observed_frequencies() -> None:
    # Scores 0.1 (2 of 4 correct) and 0.9 (4 of 4 correct): isotonic gives 0.5 and 1.0.
    scores = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    labels = np.array([0, 1, 0, 1, 1, 1, 1, 1])
    calibrator = IsotonicCalibrator.fit(scores, labels)
    np.testing.assert_allclose(calibrator(np.array([0.1, 0.9, 0.5])), [0.5, 1.0, 0.75], atol=1e-6)
    # Monotone: a higher score never gets a lower probability.
    grid = calibrator(np.linspace(0, 1, 50))
    assert np.all(np.diff(grid) >= 0)


def test_calibrator_rejects_bad_breakpoints() -> None:
    with pytest.raises(ArtifactError):
        IsotonicCalibrator(np.array([0.0, 1.0]), np.array([0.5, 0.2]))
    with pytest.raises(ArtifactError):
        IsotonicCalibrator(np.array([0.0, 1.0]), np.array([0.5]))


def test_precision_lower_bound_is_below_the_point_estimate() -> None:
    assert precision_lower_bound(0, 10) == 0.0
    # 19 of 20: Clopper-Pearson one-sided 95% lower bound is about 0.784.
    assert precision_lower_bound(19, 20) == pytest.approx(0.784, abs=0.002)
    assert precision_lower_bound(100, 100) == pytest.approx(0.05 ** (1 / 100), abs=1e-6)


def _notes() -> list[NoteCandidates]:
    return [
        # confident and right: skips review with 2 correct codes of 2 gold
        NoteCandidates(np.array([0.95, 0.9, 0.01]), np.array([True, True, False]), 2),
        # one code in the uncertain band (0.4): review
        NoteCandidates(np.array([0.95, 0.4]), np.array([True, False]), 2),
        # confident but wrong second code, no uncertain code: skips review with 1 of 2 right
        NoteCandidates(np.array([0.97, 0.92]), np.array([True, False]), 3),
    ]


def test_triage_stats_by_hand() -> None:
    stats = triage_stats(_notes(), Thresholds(accept=0.85, suggest=0.0, review_band=0.2), top_k=5)
    assert stats["skip_rate"] == pytest.approx(2 / 3)
    assert stats["codes_accepted"] == 4
    assert stats["precision"] == pytest.approx(3 / 4)
    assert stats["recall"] == pytest.approx(3 / 5)  # 3 correct of the 2 + 3 gold codes of skipped notes
    assert stats["precision_lower_bound"] < stats["precision"]


def test_tuning_reaches_the_target_or_reviews_everything() -> None:
    notes = [NoteCandidates(np.array([0.99, 0.01]), np.array([True, False]), 1) for _ in range(80)]
    notes += [NoteCandidates(np.array([0.6, 0.01]), np.array([False, False]), 1) for _ in range(20)]
    thresholds, stats = tune_thresholds(notes, target_precision=0.95, top_k=5)
    # Accepting 0.6 would let wrong codes through; the tuned rule accepts only the 0.99 codes.
    assert 0.6 < thresholds.accept <= 0.99
    assert stats["skip_rate"] == pytest.approx(0.8) and stats["precision"] == 1.0
    assert stats["precision_lower_bound"] >= 0.95
    impossible = [NoteCandidates(np.array([0.9]), np.array([False]), 1) for _ in range(10)]
    thresholds, stats = tune_thresholds(impossible, target_precision=0.95, top_k=5)
    assert thresholds.accept == 1.0 and stats["skip_rate"] == 0.0


def test_accepted_codes_count_on_every_note_reviewed_or_not() -> None:
    stats = accepted_codes(_notes(), Thresholds(accept=0.85, suggest=0.0, review_band=0.2), top_k=5)
    # 0.95, 0.9 | 0.95 (its note is reviewed for the 0.4) | 0.97, 0.92: 5 accepted, 4 right, of 7 gold.
    assert stats["codes_accepted"] == 5 and stats["precision"] == pytest.approx(4 / 5)
    assert stats["recall"] == pytest.approx(4 / 7) and stats["precision_lower_bound"] < 0.8


def test_the_code_level_rule_accepts_the_most_codes_that_keep_the_target() -> None:
    notes = [NoteCandidates(np.array([0.99, 0.6, 0.01]), np.array([True, False, False]), 2) for _ in range(60)]
    thresholds, stats = tune_accept(notes, target_precision=0.9, top_k=5)
    # Accepting 0.6 would let 60 wrong codes through; 0.99 keeps 60 of 60 right, whatever the notes' other codes.
    assert 0.6 < thresholds.accept <= 0.99 and thresholds.review_band == thresholds.suggest
    assert stats["codes_accepted"] == 60 and stats["precision"] == 1.0 and stats["precision_lower_bound"] >= 0.9
    few = notes[:10]  # 10 of 10 right: the lower bound (0.74) does not reach 0.9
    thresholds, stats = tune_accept(few, target_precision=0.9, top_k=5)
    assert thresholds.accept == 1.0 and stats["codes_accepted"] == 0


def test_hybrid_calibration_keeps_the_ranking() -> None:
    from models.calibration import calibrate_keeping_order

    calibrator = IsotonicCalibrator(np.array([0.0, 0.5, 1.0]), np.array([0.1, 0.1, 0.9]))
    raw = np.array([0.2, 0.3, 0.8])
    calibrated = calibrate_keeping_order(calibrator, raw)
    assert calibrator(raw)[0] == calibrator(raw)[1]  # the plain calibration ties them
    assert list(np.argsort(-calibrated)) == list(np.argsort(-raw))  # 0.2 and 0.3 share a plateau
    assert abs(calibrated[0] - 0.1) < 1e-5


def test_binned_calibration_does_not_trust_a_few_pairs_at_the_top() -> None:
    # 2,000 codes right a third of the time, and three more above them that happen to be right.
    rng = np.random.default_rng(0)
    scores = np.r_[rng.uniform(0.0, 0.9, 2000), [0.97, 0.98, 0.99]]
    labels = np.r_[rng.random(2000) < 1 / 3, [True, True, True]]
    assert IsotonicCalibrator.fit(scores, labels)(np.array([0.99]))[0] == 1.0
    binned = IsotonicCalibrator.fit(scores, labels, bins=20)
    assert binned(np.array([0.99]))[0] < 0.6
    assert binned.x.size <= 20 and abs(float(binned(scores).mean()) - labels.mean()) < 0.01

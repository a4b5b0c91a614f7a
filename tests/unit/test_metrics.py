"""Metrics against worked examples computed by hand (the arithmetic is in the comments)."""

import math
import warnings

import numpy as np
import pytest

from eval import metrics

# 3 docs x 4 labels, shared by the P/R/F1 tests.
Y_TRUE = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [1, 0, 1, 0],
    ]
)
Y_PRED = np.array(
    [
        [1, 0, 0, 0],
        [1, 0, 0, 1],
        [1, 0, 0, 0],
    ]
)


def test_micro_prf_worked_example() -> None:
    # tp = 3 (label 0 in every doc), fp = 1 (doc 1 label 3), fn = 2 (doc 0 label 1, doc 2 label 2)
    # P = 3/4, R = 3/5, F1 = 2 * 3/4 * 3/5 / (3/4 + 3/5) = 0.9 / 1.35 = 2/3
    result = metrics.micro_prf(Y_TRUE, Y_PRED)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 5)
    assert result["f1"] == pytest.approx(2 / 3)


def test_macro_prf_worked_example_differs_from_micro() -> None:
    # label 0: tp 3 fp 0 fn 0 -> P 1, R 1, F1 1
    # label 1: tp 0 fn 1      -> P 0 (undefined), R 0, F1 0
    # label 2: tp 0 fn 1      -> 0, 0, 0
    # label 3: tp 0 fp 1      -> 0, 0 (undefined), 0
    # all four labels occur -> P = R = F1 = 1/4, far below micro (3/4, 3/5, 2/3)
    result = metrics.macro_prf(Y_TRUE, Y_PRED)
    assert result == pytest.approx({"precision": 0.25, "recall": 0.25, "f1": 0.25})
    assert result["f1"] < metrics.micro_prf(Y_TRUE, Y_PRED)["f1"]


def test_macro_prf_ignores_labels_absent_from_gold_and_predictions() -> None:
    # a fifth label nobody uses: still 1/4 (averaging over 5 labels would give 1/5)
    y_true = np.hstack([Y_TRUE, np.zeros((3, 1), dtype=int)])
    y_pred = np.hstack([Y_PRED, np.zeros((3, 1), dtype=int)])
    assert metrics.macro_prf(y_true, y_pred)["f1"] == pytest.approx(0.25)


def test_macro_f1_is_mean_of_per_label_f1() -> None:
    # label 0: tp 1 fn 1 -> P 1, R 1/2, F1 2/3;  label 1: tp 1 fp 1 -> P 1/2, R 1, F1 2/3
    # macro P = macro R = 3/4 (harmonic mean 3/4), but macro F1 = mean(2/3, 2/3) = 2/3
    y_true = np.array([[1, 1], [1, 0]])
    y_pred = np.array([[1, 1], [0, 1]])
    result = metrics.macro_prf(y_true, y_pred)
    assert result["precision"] == pytest.approx(0.75)
    assert result["recall"] == pytest.approx(0.75)
    assert result["f1"] == pytest.approx(2 / 3)


def test_prf_undefined_is_zero_without_warnings() -> None:
    empty = np.zeros((2, 3), dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        micro = metrics.micro_prf(empty, empty)
        macro = metrics.macro_prf(empty, empty)
        only_gold = metrics.micro_prf(np.eye(2, dtype=int), np.zeros((2, 2), dtype=int))
    assert micro == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert macro == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert only_gold == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_prf_accepts_bool_matrices() -> None:
    assert metrics.micro_prf(Y_TRUE.astype(bool), Y_PRED.astype(bool))["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("func", [metrics.micro_prf, metrics.macro_prf])
def test_prf_rejects_bad_input(func) -> None:
    with pytest.raises(ValueError, match="shape"):
        func(Y_TRUE, Y_PRED[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        func(np.array([1, 0]), np.array([1, 0]))
    with pytest.raises(ValueError, match="0/1"):
        func(Y_TRUE * 2, Y_PRED)


# Ranking example with ties: gold and scores per doc.
#   doc 0: gold {2},    scores [0.2, 0.9, 0.9, 0.1] -> ranking 1, 2, 0, 3 (tie 1/2: lower index first)
#   doc 1: gold {0, 3}, scores all 0.3             -> ranking 0, 1, 2, 3
#   doc 2: gold {},     scores [0.8, 0.1, 0.2, 0.3] -> ranking 0, 3, 2, 1
RANK_TRUE = np.array(
    [
        [0, 0, 1, 0],
        [1, 0, 0, 1],
        [0, 0, 0, 0],
    ]
)
RANK_SCORES = np.array(
    [
        [0.2, 0.9, 0.9, 0.1],
        [0.3, 0.3, 0.3, 0.3],
        [0.8, 0.1, 0.2, 0.3],
    ]
)


def test_precision_at_k_with_ties() -> None:
    # P@1: doc0 top [1] -> 0, doc1 top [0] -> 1, doc2 top [0] -> 0; (0 + 1 + 0) / 3 = 1/3
    # (breaking doc 0's tie towards label 2 would give 2/3)
    assert metrics.precision_at_k(RANK_TRUE, RANK_SCORES, 1) == pytest.approx(1 / 3)
    # P@2: doc0 [1, 2] -> 1/2, doc1 [0, 1] -> 1/2, doc2 [0, 3] -> 0; mean = 1/3
    assert metrics.precision_at_k(RANK_TRUE, RANK_SCORES, 2) == pytest.approx(1 / 3)
    # P@5 (k > n_labels, divisor stays 5): (1/5 + 2/5 + 0) / 3 = 1/5
    assert metrics.precision_at_k(RANK_TRUE, RANK_SCORES, 5) == pytest.approx(1 / 5)


def test_recall_at_k_with_ties_skips_docs_without_gold() -> None:
    # only docs 0 and 1 have gold codes
    # R@1: doc0 0/1, doc1 1/2 -> 1/4 (counting doc 2 as 0 would give 1/6)
    assert metrics.recall_at_k(RANK_TRUE, RANK_SCORES, 1) == pytest.approx(1 / 4)
    # R@2: doc0 1/1, doc1 1/2 -> 3/4
    assert metrics.recall_at_k(RANK_TRUE, RANK_SCORES, 2) == pytest.approx(3 / 4)
    assert metrics.recall_at_k(RANK_TRUE, RANK_SCORES, 4) == pytest.approx(1.0)
    assert metrics.recall_at_k(np.zeros((2, 3), dtype=int), np.ones((2, 3)), 1) == 0.0


@pytest.mark.parametrize("func", [metrics.precision_at_k, metrics.recall_at_k])
def test_at_k_rejects_bad_input(func) -> None:
    with pytest.raises(ValueError, match="shape"):
        func(RANK_TRUE, RANK_SCORES[:2], 1)
    with pytest.raises(ValueError, match="k must be"):
        func(RANK_TRUE, RANK_SCORES, 0)
    with pytest.raises(ValueError, match="NaN"):
        func(RANK_TRUE, np.full(RANK_SCORES.shape, np.nan), 1)


# 4 docs x 3 labels for AUC.
AUC_TRUE = np.array(
    [
        [1, 0, 0],
        [0, 1, 0],
        [1, 1, 0],
        [0, 0, 0],
    ]
)
AUC_SCORES = np.array(
    [
        [0.9, 0.1, 0.5],
        [0.8, 0.7, 0.5],
        [0.4, 0.6, 0.5],
        [0.2, 0.6, 0.5],
    ]
)


def test_auc_worked_example() -> None:
    # AUC = fraction of (positive, negative) pairs ordered correctly, ties count 1/2.
    # label 0: pos {.9, .4}, neg {.8, .2}: .9>.8 .9>.2 .4<.8 .4>.2 -> 3/4
    # label 1: pos {.7, .6}, neg {.1, .6}: 1 + 1 + 1 + 1/2 -> 3.5/4 = 7/8
    # label 2: no positive -> left out of macro; macro = (3/4 + 7/8) / 2 = 13/16
    # micro: pos {.9, .4, .7, .6} vs 8 neg {.8, .2, .1, .6, .5, .5, .5, .5}
    #   .9 beats 8; .4 beats .2 .1 -> 2; .7 beats all but .8 -> 7; .6 beats 6, ties 1 -> 6.5
    #   (8 + 2 + 7 + 6.5) / 32 = 23.5 / 32
    result = metrics.auc(AUC_TRUE, AUC_SCORES)
    assert result["macro"] == pytest.approx(13 / 16)
    assert result["micro"] == pytest.approx(23.5 / 32)


def test_auc_undefined_is_nan() -> None:
    result = metrics.auc(np.zeros((3, 2), dtype=int), np.random.default_rng(0).random((3, 2)))
    assert math.isnan(result["micro"])
    assert math.isnan(result["macro"])
    # every column single-class but the pooled cells are not: micro defined, macro not
    mixed = metrics.auc(np.array([[1, 0], [1, 0]]), np.array([[0.9, 0.1], [0.8, 0.2]]))
    assert mixed["micro"] == pytest.approx(1.0)
    assert math.isnan(mixed["macro"])


def test_auc_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        metrics.auc(AUC_TRUE, AUC_SCORES.T)


def test_average_precision_worked_example() -> None:
    # gold {a, b, c}, ranked [a, x, b]: hits at rank 1 (1/1) and rank 3 (2/3); c never ranked -> / 3
    assert metrics.average_precision({"a", "b", "c"}, ["a", "x", "b"]) == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_average_precision_counts_a_repeated_code_once() -> None:
    # [a, a, b] -> [a, b]: (1/1 + 2/2) / 2 = 1 (counting the repeat would give (1 + 1 + 1) / 2 = 1.5)
    assert metrics.average_precision({"a", "b"}, ["a", "a", "b"]) == pytest.approx(1.0)
    assert metrics.average_precision(set(), ["a"]) == 0.0


def test_codiesp_map_worked_example() -> None:
    gold = {
        "doc1": ["N20.0", "R52", "N20.0"],  # repeated in gold (several references): {n20.0, r52}
        "doc2": ["I10"],
        "doc3": ["E11.9"],
    }
    predictions = {
        # lowercased, repeat removed -> [n20.0, x99.9, r52]; AP = (1/1 + 2/3) / 2 = 5/6
        "doc1": ["n20.0", "X99.9", "N20.0", "r52"],
        # [e11.9, i10] against {i10}: AP = (1/2) / 1 = 1/2
        "doc2": ["e11.9", "i10"],
        # no predictions -> left out of the mean
        "doc3": [],
    }
    # (5/6 + 1/2) / 2 = 2/3 (counting doc3 as 0 would give 4/9)
    assert metrics.codiesp_map(gold, predictions) == pytest.approx(2 / 3)

    # dropping the invalid X99.9 lifts doc1 to AP (1/1 + 2/2) / 2 = 1: (1 + 1/2) / 2 = 3/4
    valid = ["N20.0", "R52", "I10", "E11.9"]  # upper case on purpose: compared lowercased
    assert metrics.codiesp_map(gold, predictions, valid_codes=valid) == pytest.approx(3 / 4)


def test_codiesp_map_reproduces_official_toy_example() -> None:
    # gold/toy_data/gs_task1_2.tsv and system/toy_data/pred_task1_2.tsv of
    # TeMU-BSC/codiesp-evaluation-script; its README reports "MAP estimate: 0.652".
    gold = {"0": [f"code{i}" for i in range(1, 5)], "1": [f"code{i}" for i in range(1, 8)]}
    predictions = {
        # hits at ranks 1, 4, 5, 6: (1 + 2/4 + 3/5 + 4/6) / 4 = 0.69167
        "0": [f"code{i}" for i in (1, 5, 6, 2, 3, 4, 7)],
        # hits at ranks 1, 3, 5, 6, 9, 14, 19: (1 + 2/3 + 3/5 + 4/6 + 5/9 + 6/14 + 7/19) / 7 = 0.61227
        "1": [f"code{i}" for i in (1, 8, 2, 9, 3, 4, 10, 11, 5, 12, 13, 14, 15, 6, 16, 17, 18, 19, 7)],
    }
    expected = (
        (1 + 2 / 4 + 3 / 5 + 4 / 6) / 4 + (1 + 2 / 3 + 3 / 5 + 4 / 6 + 5 / 9 + 6 / 14 + 7 / 19) / 7
    ) / 2
    result = metrics.codiesp_map(gold, predictions)
    assert result == pytest.approx(expected)
    assert round(result, 3) == 0.652


def test_codiesp_map_gold_code_never_predicted_is_a_miss() -> None:
    # {a, b} with ranked [a]: 1/1 / 2 = 1/2, not 1
    assert metrics.codiesp_map({"d1": ["a", "b"]}, {"d1": ["a"]}) == pytest.approx(0.5)


def test_codiesp_map_document_not_in_gold_counts_zero() -> None:
    # trectools 0.0.42 divides by the topics of the run: (1 + 0) / 2
    assert metrics.codiesp_map({"d1": ["a"]}, {"d1": ["a"], "d9": ["a"]}) == pytest.approx(0.5)


def test_codiesp_map_document_with_only_invalid_predictions_is_left_out() -> None:
    gold = {"d1": ["a"], "d2": ["b"]}
    predictions = {"d1": ["a"], "d2": ["zzz"]}
    # without a code list d2 scores 0: (1 + 0) / 2
    assert metrics.codiesp_map(gold, predictions) == pytest.approx(0.5)
    # zzz is dropped, d2 has no prediction left and leaves the mean: 1 / 1
    assert metrics.codiesp_map(gold, predictions, valid_codes={"a", "b"}) == pytest.approx(1.0)


def test_codiesp_map_ranks_only_the_first_1000_codes() -> None:
    ranked = [f"x{i}" for i in range(metrics.CODIESP_MAP_DEPTH)] + ["a"]
    assert metrics.average_precision({"a"}, ranked) == pytest.approx(1 / 1001)
    assert metrics.codiesp_map({"d1": ["a"]}, {"d1": ranked}) == 0.0


def test_codiesp_map_without_predictions_is_zero() -> None:
    assert metrics.codiesp_map({"d1": ["a"]}, {}) == 0.0
    assert metrics.codiesp_map({"d1": ["a"]}, {"d1": ["b"]}, valid_codes=[]) == 0.0


def test_codiesp_map_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError, match="single string"):
        metrics.codiesp_map({"d1": ["e11.9"]}, {"d1": "e11.9"})


def test_ranked_from_scores() -> None:
    scores = np.array([[0.2, 0.9, 0.9, 0.1], [0.0, 0.5, 0.0, 0.4]])
    labels = ["A", "B", "C", "D"]
    # doc 0: B and C tie at 0.9 -> B first (lower index); doc 1: A and C tie at 0.0 -> A first
    assert metrics.ranked_from_scores(scores, labels) == [["B", "C", "A", "D"], ["B", "D", "A", "C"]]
    assert metrics.ranked_from_scores(scores, labels, k=2) == [["B", "C"], ["B", "D"]]
    assert metrics.ranked_from_scores(scores, labels, min_score=0.2) == [["B", "C", "A"], ["B", "D"]]
    assert metrics.ranked_from_scores(scores, labels, k=1, min_score=0.95) == [[], []]


def test_ranked_from_scores_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        metrics.ranked_from_scores(np.zeros((1, 3)), ["A", "B"])
    with pytest.raises(ValueError, match="k must be"):
        metrics.ranked_from_scores(np.zeros((1, 2)), ["A", "B"], k=0)


def test_expected_calibration_error_worked_example() -> None:
    y_true = np.array([[1, 0, 1], [0, 1, 0]])
    probs = np.array([[0.95, 0.15, 0.15], [0.95, 0.55, 0.05]])
    # 10 bins, 6 cells:
    #   [0.9, 1.0]: .95/1, .95/0 -> acc 1/2, conf .95, gap .45, weight 2/6
    #   [0.1, 0.2): .15/0, .15/1 -> acc 1/2, conf .15, gap .35, weight 2/6
    #   [0.5, 0.6): .55/1        -> gap .45, weight 1/6
    #   [0.0, 0.1): .05/0        -> gap .05, weight 1/6
    #   ECE = (2 * .45 + 2 * .35 + .45 + .05) / 6 = 2.1 / 6 = 0.35
    assert metrics.expected_calibration_error(y_true, probs) == pytest.approx(0.35)
    # one bin: |mean label - mean prob| = |3/6 - 2.8/6| = 0.2 / 6
    assert metrics.expected_calibration_error(y_true, probs, n_bins=1) == pytest.approx(0.2 / 6)


def test_expected_calibration_error_edges() -> None:
    # prob 1.0 falls into the last bin, prob 0.0 into the first
    assert metrics.expected_calibration_error(np.array([[1, 0]]), np.array([[1.0, 0.0]])) == 0.0
    worst = metrics.expected_calibration_error(np.array([[1, 0]]), np.array([[0.0, 1.0]]))
    assert worst == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.expected_calibration_error(np.array([[1]]), np.array([[1.5]]))
    with pytest.raises(ValueError, match="shape"):
        metrics.expected_calibration_error(np.array([[1, 0]]), np.array([[0.5]]))
    with pytest.raises(ValueError, match="n_bins"):
        metrics.expected_calibration_error(np.array([[1]]), np.array([[0.5]]), n_bins=0)


def test_binarize_counts_ignored_codes() -> None:
    matrix, n_ignored = metrics.binarize([["B", "A", "Z"], [], ["C", "C", "Y"]], ["A", "B", "C"])
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 0, 0], [0, 0, 1]])
    assert n_ignored == 2  # Z and Y
    assert matrix.shape == (3, 3)


def test_binarize_rejects_duplicate_labels() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        metrics.binarize([["A"]], ["A", "A"])

"""Multi-label metrics for ICD coding.

Matrices are ``(n_docs, n_labels)``: ``y_true`` / ``y_pred`` hold 0/1 (or bool), ``scores`` any real
ranking score, ``probs`` probabilities in [0, 1]. Column ``label_idx`` of every matrix is ``labels[label_idx]``.
Wherever a ranking is built from scores, ties are broken by the lower label index (stable sort on the
descending score), so every ranked metric is deterministic.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

# trectools' get_map (used by the official CodiEsp script) only looks at the first 1000 codes per document.
CODIESP_MAP_DEPTH = 1000


def _as_matrix(name: str, arr: np.ndarray) -> np.ndarray:
    matrix = np.asarray(arr)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_docs, n_labels) matrix, got shape {matrix.shape}")
    return matrix


def _as_binary(name: str, arr: np.ndarray) -> np.ndarray:
    matrix = _as_matrix(name, arr)
    if matrix.dtype != bool and not np.isin(matrix, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0/1 values")
    return matrix.astype(bool)


def _as_scores(name: str, arr: np.ndarray) -> np.ndarray:
    matrix = _as_matrix(name, arr)
    if not np.issubdtype(matrix.dtype, np.number) and matrix.dtype != bool:
        raise ValueError(f"{name} must be numeric, got dtype {matrix.dtype}")
    matrix = matrix.astype(np.float64)
    if np.isnan(matrix).any():
        raise ValueError(f"{name} contains NaN")
    return matrix


def _check_same_shape(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}")


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den elementwise, 0.0 where den == 0 (without a division warning)."""
    num_arr = np.asarray(num, dtype=np.float64)
    den_arr = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num_arr, den_arr).shape)
    np.divide(num_arr, den_arr, out=out, where=den_arr != 0)
    return out


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _ratio(2.0 * precision * recall, precision + recall)


def _rank_label_idx(scores: np.ndarray) -> np.ndarray:
    """Label indices per doc, best first; ties go to the lower label index."""
    return np.argsort(-scores, axis=1, kind="stable")  # (n_docs, n_labels)


def micro_prf(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Micro-averaged precision, recall and F1 over all (doc, label) cells.

    Args:
        y_true: gold 0/1 matrix, (n_docs, n_labels).
        y_pred: predicted 0/1 matrix, same shape.

    Returns:
        ``{"precision", "recall", "f1"}``; each is 0.0 where its denominator is 0.

    Raises:
        ValueError: if the matrices are not 2-D, not binary, or differ in shape.
    """
    gold = _as_binary("y_true", y_true)
    pred = _as_binary("y_pred", y_pred)
    _check_same_shape("y_true", gold, "y_pred", pred)
    tp = np.count_nonzero(gold & pred)
    precision = _ratio(tp, np.count_nonzero(pred))
    recall = _ratio(tp, np.count_nonzero(gold))
    return {"precision": float(precision), "recall": float(recall), "f1": float(_f1(precision, recall))}


def macro_prf(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Macro-averaged precision, recall and F1.

    Only labels that occur in ``y_true`` or in ``y_pred`` are averaged: a label nobody assigned and nobody
    predicted carries no information, and counting it as 0 (or 1) would make the score depend on the size of
    the vocabulary. Within an averaged label an undefined precision or recall counts as 0.0. Macro F1 is the
    mean of the per-label F1 scores, not the harmonic mean of macro precision and macro recall.

    Args:
        y_true: gold 0/1 matrix, (n_docs, n_labels).
        y_pred: predicted 0/1 matrix, same shape.

    Returns:
        ``{"precision", "recall", "f1"}``; all 0.0 when no label occurs at all.

    Raises:
        ValueError: if the matrices are not 2-D, not binary, or differ in shape.
    """
    gold = _as_binary("y_true", y_true)
    pred = _as_binary("y_pred", y_pred)
    _check_same_shape("y_true", gold, "y_pred", pred)
    active = gold.any(axis=0) | pred.any(axis=0)  # (n_labels,)
    if not active.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    gold, pred = gold[:, active], pred[:, active]
    tp = (gold & pred).sum(axis=0)
    precision = _ratio(tp, pred.sum(axis=0))
    recall = _ratio(tp, gold.sum(axis=0))
    f1 = _f1(precision, recall)
    return {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())}


def _hits_at_k(y_true: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    gold = _as_binary("y_true", y_true)
    ranking_scores = _as_scores("scores", scores)
    _check_same_shape("y_true", gold, "scores", ranking_scores)
    _check_k(k)
    top_k = _rank_label_idx(ranking_scores)[:, :k]  # (n_docs, min(k, n_labels))
    hits = np.take_along_axis(gold, top_k, axis=1).sum(axis=1)  # (n_docs,)
    return hits, gold.sum(axis=1)


def precision_at_k(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean over documents of (gold codes among the top k) / k.

    The divisor is always k, also when k exceeds the number of labels or of gold codes.

    Args:
        y_true: gold 0/1 matrix, (n_docs, n_labels).
        scores: ranking scores, same shape; ties go to the lower label index.
        k: cut-off, a positive integer.

    Returns:
        P@k; 0.0 when there are no documents.

    Raises:
        ValueError: on a shape mismatch, non-binary ``y_true``, NaN scores or a non-positive k.
    """
    hits, _ = _hits_at_k(y_true, scores, k)
    if hits.size == 0:
        return 0.0
    return float(np.mean(hits / k))


def recall_at_k(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Mean over documents with at least one gold code of (gold codes among the top k) / (gold codes).

    Args:
        y_true: gold 0/1 matrix, (n_docs, n_labels).
        scores: ranking scores, same shape; ties go to the lower label index.
        k: cut-off, a positive integer.

    Returns:
        R@k; 0.0 when no document has a gold code.

    Raises:
        ValueError: on a shape mismatch, non-binary ``y_true``, NaN scores or a non-positive k.
    """
    hits, n_gold = _hits_at_k(y_true, scores, k)
    has_gold = n_gold > 0
    if not has_gold.any():
        return 0.0
    return float(np.mean(hits[has_gold] / n_gold[has_gold]))


def auc(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """ROC AUC, micro (all cells pooled) and macro (mean over labels), computed with scikit-learn.

    Macro averages only the labels that have both a positive and a negative document; a label with a single
    class has no ROC curve. Where no AUC is defined (micro: all cells one class; macro: no such label) the
    value is ``float("nan")`` rather than an exception, so a tiny evaluation split does not crash a run.

    Args:
        y_true: gold 0/1 matrix, (n_docs, n_labels).
        scores: ranking scores or probs, same shape.

    Returns:
        ``{"micro": float, "macro": float}``, either possibly NaN as described.

    Raises:
        ValueError: on a shape mismatch, non-binary ``y_true`` or NaN scores.
    """
    gold = _as_binary("y_true", y_true)
    ranking_scores = _as_scores("scores", scores)
    _check_same_shape("y_true", gold, "scores", ranking_scores)

    flat_gold = gold.ravel()
    if flat_gold.any() and not flat_gold.all():
        micro = float(roc_auc_score(flat_gold, ranking_scores.ravel()))
    else:
        micro = float("nan")

    n_pos = gold.sum(axis=0)
    two_class = (n_pos > 0) & (n_pos < gold.shape[0])  # (n_labels,)
    per_label = [roc_auc_score(gold[:, j], ranking_scores[:, j]) for j in np.flatnonzero(two_class)]
    macro = float(np.mean(per_label)) if per_label else float("nan")
    return {"micro": micro, "macro": macro}


def _code_list(name: str, doc_id: str, codes: Iterable[str]) -> list[str]:
    # A bare string would silently iterate as characters, scoring nonsense.
    if isinstance(codes, str):
        raise TypeError(f"{name}[{doc_id!r}] must be a collection of codes, not a single string")
    return list(codes)


def _dedupe(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(codes))


def average_precision(gold: Collection[str], ranked: Sequence[str]) -> float:
    """Average precision of one ranked code list against a gold set.

    Sum, over the ranks r where ``ranked[r - 1]`` is a gold code, of (gold codes within the first r) / r,
    divided by the number of gold codes, so a gold code never ranked counts as a miss. A repeated code counts
    only at its first rank. No truncation and no case folding: :func:`codiesp_map` does both before calling.

    Args:
        gold: the relevant codes (duplicates ignored).
        ranked: predicted codes, best first.

    Returns:
        AP in [0, 1]; 0.0 when ``gold`` is empty.

    Example:
        gold ``{a, b, c}``, ranked ``[a, x, b]`` gives ``(1/1 + 2/3) / 3``.
    """
    gold_set = set(gold)
    if not gold_set:
        return 0.0
    hits = 0
    total = 0.0
    for rank, code in enumerate(_dedupe(ranked), start=1):
        if code in gold_set:
            hits += 1
            total += hits / rank
    return total / len(gold_set)


def codiesp_map(
    gold: Mapping[str, Iterable[str]],
    predictions: Mapping[str, Sequence[str]],
    valid_codes: Collection[str] | None = None,
) -> float:
    """Mean average precision as the official CodiEsp (CLEF eHealth 2020) D/P evaluation computes it.

    Matches ``codiespD_P_evaluation.py`` of TeMU-BSC/codiesp-evaluation-script, which formats the files and
    calls ``TrecEval(run, qrels).get_map(trec_eval=False)`` of trectools 0.0.42 (the version pinned in that
    repository's ``requeriments.txt``):

    - gold and predicted codes (and ``valid_codes``) are lowercased; repeated codes of a document are kept
      once, at their first position; document ids are compared as given;
    - predicted codes not in ``valid_codes`` are dropped (nothing is dropped when it is ``None``), and the
      ranks close up over the gaps;
    - only the first ``CODIESP_MAP_DEPTH`` (1000, trectools' default depth) remaining codes are ranked;
    - each document's AP divides by its number of gold codes (:func:`average_precision`);
    - the mean is over the documents that still have at least one prediction after the filtering:
      documents with gold but no prediction are left out (also when every predicted code was invalid), and
      documents with predictions but no gold codes count with AP 0, because trectools 0.0.42 divides by the
      number of topics in the run. (Later trectools releases divide by the topics shared with the qrels
      instead; the pinned version is what the task was scored with.)

    Args:
        gold: document id -> gold codes.
        predictions: document id -> predicted codes, best first.
        valid_codes: the subtask's code list, or ``None`` to keep every prediction.

    Returns:
        MAP in [0, 1]; 0.0 when no document has a prediction left.

    Raises:
        TypeError: if a document's codes are given as one string instead of a collection.
    """
    valid = None if valid_codes is None else {code.lower() for code in valid_codes}
    gold_sets = {
        doc_id: {code.lower() for code in _code_list("gold", doc_id, codes)} for doc_id, codes in gold.items()
    }
    ap_per_doc: list[float] = []
    for doc_id, codes in predictions.items():
        ranked = _dedupe(code.lower() for code in _code_list("predictions", doc_id, codes))
        if valid is not None:
            ranked = [code for code in ranked if code in valid]
        if not ranked:
            continue
        ap_per_doc.append(average_precision(gold_sets.get(doc_id, set()), ranked[:CODIESP_MAP_DEPTH]))
    if not ap_per_doc:
        return 0.0
    return float(np.mean(ap_per_doc))


def ranked_from_scores(
    scores: np.ndarray,
    labels: Sequence[str],
    k: int | None = None,
    min_score: float | None = None,
) -> list[list[str]]:
    """Turn a score matrix into one ranked code list per document.

    Args:
        scores: ranking scores, (n_docs, n_labels); ties go to the lower label index.
        labels: the code of each column.
        k: keep at most this many codes per document (all when ``None``).
        min_score: keep only codes scoring at least this much (all when ``None``); applied before ``k``.

    Returns:
        For each document, codes best first.

    Raises:
        ValueError: if ``labels`` does not match the number of columns, scores contain NaN, or k < 1.
    """
    ranking_scores = _as_scores("scores", scores)
    if len(labels) != ranking_scores.shape[1]:
        raise ValueError(f"scores has {ranking_scores.shape[1]} columns but {len(labels)} labels were given")
    if k is not None:
        _check_k(k)
    order = _rank_label_idx(ranking_scores)
    ranked: list[list[str]] = []
    for doc_scores, doc_order in zip(ranking_scores, order, strict=True):
        if min_score is not None:
            doc_order = doc_order[doc_scores[doc_order] >= min_score]
        if k is not None:
            doc_order = doc_order[:k]
        ranked.append([labels[label_idx] for label_idx in doc_order])
    return ranked


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over all (doc, label) cells.

    Cells fall into ``n_bins`` equal-width bins ``[i/n, (i+1)/n)``, the last one closed at 1.0. ECE is the
    sum over non-empty bins of (cells in bin / all cells) * |fraction of positives - mean prob| in the bin.

    Args:
        y_true: gold 0/1 matrix, (n_docs, n_labels).
        probs: predicted probabilities in [0, 1], same shape.
        n_bins: number of bins, a positive integer.

    Returns:
        ECE in [0, 1]; 0.0 when there are no cells.

    Raises:
        ValueError: on a shape mismatch, non-binary ``y_true``, probs outside [0, 1] or NaN, or n_bins < 1.
    """
    gold = _as_binary("y_true", y_true)
    cell_probs = _as_scores("probs", probs)
    _check_same_shape("y_true", gold, "probs", cell_probs)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if ((cell_probs < 0.0) | (cell_probs > 1.0)).any():
        raise ValueError("probs must lie in [0, 1]")
    if gold.size == 0:
        return 0.0
    flat_gold = gold.ravel().astype(np.float64)
    flat_probs = cell_probs.ravel()
    bin_idx = np.minimum((flat_probs * n_bins).astype(np.int64), n_bins - 1)
    pos_sum = np.bincount(bin_idx, weights=flat_gold, minlength=n_bins)
    prob_sum = np.bincount(bin_idx, weights=flat_probs, minlength=n_bins)
    # |positives - prob mass| per bin equals count * |accuracy - confidence|.
    return float(np.abs(pos_sum - prob_sum).sum() / flat_probs.size)


def binarize(codes_per_doc: Sequence[Iterable[str]], labels: Sequence[str]) -> tuple[np.ndarray, int]:
    """Build the 0/1 matrix of codes per document over a label vocabulary.

    Codes are matched exactly (normalise them first); a code repeated in a document sets its cell once.

    Args:
        codes_per_doc: the codes of each document.
        labels: the vocabulary; column ``label_idx`` is ``labels[label_idx]``.

    Returns:
        ``(matrix, n_ignored)``: an int8 matrix (n_docs, n_labels), and how many code occurrences were
        skipped because they are not in ``labels``.

    Raises:
        ValueError: if ``labels`` contains duplicates.
        TypeError: if a document's codes are given as one string instead of a collection.
    """
    code_to_idx = {code: label_idx for label_idx, code in enumerate(labels)}
    if len(code_to_idx) != len(labels):
        raise ValueError("labels contains duplicate codes")
    matrix = np.zeros((len(codes_per_doc), len(labels)), dtype=np.int8)
    n_ignored = 0
    for doc_idx, codes in enumerate(codes_per_doc):
        for code in _code_list("codes_per_doc", str(doc_idx), codes):
            label_idx = code_to_idx.get(code)
            if label_idx is None:
                n_ignored += 1
            else:
                matrix[doc_idx, label_idx] = 1
    return matrix, n_ignored

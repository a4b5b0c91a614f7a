"""Fit the hybrid's ranker on out-of-fold predictions, so that no component is scored on data it was
trained on: the linear model of fold k scores only the notes of fold k, and the code frequencies that
the ranker sees come from the other folds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
from tqdm.auto import tqdm

from eval import metrics
from eval.triage import NoteCandidates, tune_thresholds
from models.calibration import IsotonicCalibrator
from models.catalog import Catalog
from models.decision import Thresholds
from models.hybrid import (
    CodeStats,
    HybridCoder,
    HybridSettings,
    candidate_features,
    code_converter,
    collect_component_scores,
    component_columns,
    group_scorers,
    ranker_feature_names,
)
from models.linear import LinearCoder, LinearSettings
from models.matcher import CatalogMatcher

logger = logging.getLogger(__name__)


def fold_ids(n_docs: int, folds: int, seed: int) -> np.ndarray:
    """Fold number of each document (shuffled, balanced)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n_docs) % folds)


def out_of_fold_rows(
    texts: list[str],
    targets: dict[str, list[list[str]]],
    matcher: CatalogMatcher,
    linear_settings: LinearSettings,
    settings: HybridSettings,
    catalog: Catalog,
    folds: int,
    seed: int,
    progress: bool = True,
    fit_extra: dict[str, Callable[[list[str], dict[str, list[list[str]]]], Any]] | None = None,
    zero_shot: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Features, labels and document index of every candidate of every training note, out of fold, and the
    features' names.

    `fit_extra` names further trained components (the transformer) by the function that fits one on
    (texts, targets); each is fitted once per fold, like the linear model. `zero_shot` names further
    components that need no training (the dense retriever), like the matcher.
    """
    convert = code_converter(catalog, settings.code_form)
    depth = settings.candidates_per_component * 2
    fixed = {"matcher": matcher, **(zero_shot or {})}
    fixed_columns = component_columns(fixed, convert)
    assignment = fold_ids(len(texts), folds, seed)
    features, labels, doc_index = [], [], []
    for k in tqdm(range(folds), desc="out-of-fold", unit="fold", disable=not progress):
        train_idx = np.flatnonzero(assignment != k)
        held_idx = np.flatnonzero(assignment == k)
        fold_targets = {s: [targets[s][i] for i in train_idx] for s in targets}
        linear = LinearCoder.fit([texts[i] for i in train_idx], fold_targets, linear_settings, progress=False)
        stats = CodeStats.from_targets(fold_targets)
        held_texts = [texts[i] for i in held_idx]
        components = {"linear": linear, **fixed}
        for name, fit in (fit_extra or {}).items():
            components[name] = fit([texts[i] for i in train_idx], fold_targets)
        columns = {**component_columns({n: c for n, c in components.items() if n not in fixed}, convert),
                   **fixed_columns}
        scores = collect_component_scores(components, columns, held_texts, depth)
        groups = group_scorers(components)
        for local, doc in enumerate(held_idx):
            pairs, rows = candidate_features(scores[local], stats, settings.candidates_per_component, groups,
                                             settings.cooccurrence)
            gold = {(s, c) for s in targets for c in targets[s][doc]}
            features.append(rows)
            labels.append(np.asarray([pair in gold for pair in pairs], dtype=np.int8))
            doc_index.append(np.full(len(pairs), doc))
    names = ranker_feature_names(components, settings.cooccurrence)
    return np.concatenate(features), np.concatenate(labels), np.concatenate(doc_index), names


def fit_ranker(
    features: np.ndarray, labels: np.ndarray, doc_index: np.ndarray, settings: HybridSettings, seed: int,
    names: list[str],
) -> str:
    """Train the LightGBM ranker (a classifier, or lambdarank with one query per note); returns its text
    model. Rows of one note must be contiguous in `doc_index`."""
    common = {
        "n_estimators": settings.n_estimators,
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_child_samples": settings.min_child_samples,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "random_state": seed,
        "n_jobs": 2,
        "verbose": -1,
    }
    if settings.objective == "lambdarank":
        # Notes without a single correct candidate teach a ranker nothing.
        starts = np.flatnonzero(np.r_[True, doc_index[1:] != doc_index[:-1]])
        sizes = np.diff(np.r_[starts, len(doc_index)])
        useful = np.add.reduceat(labels, starts) > 0 if len(starts) else np.zeros(0, bool)
        keep = np.repeat(useful, sizes)
        model = lgb.LGBMRanker(objective="lambdarank", lambdarank_truncation_level=settings.candidates_per_component,
                               **common)
        model.fit(features[keep], labels[keep], group=sizes[useful], feature_name=names)
    else:
        model = lgb.LGBMClassifier(**common)
        model.fit(features, labels, feature_name=names)
    return model.booster_.model_to_string()


def out_of_fold_ranker(
    features: np.ndarray, labels: np.ndarray, doc_index: np.ndarray, settings: HybridSettings, folds: int, seed: int,
    names: list[str],
) -> np.ndarray:
    """Raw ranker outputs for every candidate row from a ranker that never saw that row's note."""
    n_docs = int(doc_index.max()) + 1 if doc_index.size else 0
    assignment = fold_ids(n_docs, folds, seed + 1)[doc_index]
    out = np.zeros(len(labels), dtype=np.float64)
    for k in range(folds):
        held = assignment == k
        if not held.any() or labels[~held].sum() == 0:
            continue
        booster = lgb.Booster(
            model_str=fit_ranker(features[~held], labels[~held], doc_index[~held], settings, seed, names)
        )
        out[held] = booster.predict(features[held])
    return out


def notes_for_triage(
    probs: np.ndarray, labels: np.ndarray, doc_index: np.ndarray, gold_counts: list[int]
) -> list[NoteCandidates]:
    """Group candidate rows by note for the decision-rule tuning."""
    return [
        NoteCandidates(probs[doc_index == d], labels[doc_index == d].astype(bool), gold_counts[d])
        for d in range(len(gold_counts))
    ]


def fit_hybrid(
    texts: list[str],
    targets: dict[str, list[list[str]]],
    catalog: Catalog,
    matcher: CatalogMatcher,
    linear_settings: LinearSettings,
    settings: HybridSettings,
    folds: int = 5,
    seed: int = 13,
    progress: bool = True,
    target_precision: float = 0.95,
    decision_top_k: int = 15,
    fit_extra: dict[str, Callable[[list[str], dict[str, list[list[str]]]], Any]] | None = None,
    zero_shot: dict[str, Any] | None = None,
) -> tuple[HybridCoder, Thresholds, dict]:
    """Out-of-fold candidates -> ranker, calibration and decision thresholds; then the components
    refitted on all notes.

    Returns:
        The hybrid, the thresholds tuned for `target_precision` of auto-coded notes, and a report of the
        out-of-fold calibration and triage figures.
    """
    features, labels, doc_index, names = out_of_fold_rows(
        texts, targets, matcher, linear_settings, settings, catalog, folds, seed, progress, fit_extra, zero_shot
    )
    logger.info("ranker: %d candidates, %d positive, from %d notes", len(labels), int(labels.sum()), len(texts))
    # The ranker's own out-of-fold outputs train the calibration and tune the decision rule.
    raw = out_of_fold_ranker(features, labels, doc_index, settings, folds, seed, names)
    calibrator = IsotonicCalibrator.fit(raw, labels)
    calibrated = calibrator(raw)
    gold_counts = [sum(len(set(targets[s][d])) for s in targets) for d in range(len(texts))]
    notes = notes_for_triage(calibrated, labels, doc_index, gold_counts)
    thresholds, triage = tune_thresholds(notes, target_precision, decision_top_k)
    report = {
        "candidates": len(labels),
        "candidate_recall": float(labels.sum() / max(sum(gold_counts), 1)),
        "ece_calibrated": metrics.expected_calibration_error(labels[:, None], calibrated[:, None]),
        "triage": triage,
        "target_precision": target_precision,
    }
    logger.info("out of fold: %s", report)
    ranker_text = fit_ranker(features, labels, doc_index, settings, seed, names)
    components = {"linear": LinearCoder.fit(texts, targets, linear_settings, progress=progress), "matcher": matcher,
                  **(zero_shot or {})}
    for name, fit in (fit_extra or {}).items():
        components[name] = fit(texts, targets)
    hybrid = HybridCoder(
        components,
        CodeStats.from_targets(targets),
        ranker_text,
        settings,
        convert=code_converter(catalog, settings.code_form),
        calibrator=calibrator,
    )
    return hybrid, thresholds, report

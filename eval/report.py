"""Evaluate a predictor on a dataset and write the report (JSON + Markdown)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval import metrics
from models.catalog import Catalog
from models.decision import decide
from models.predictor import SYSTEMS, Predictor

# Dataset column that holds the gold codes of each system.
GOLD_COLUMNS = {"ICD-10-CM": "diagnoses", "ICD-10-PCS": "procedures"}
SHORT = {"ICD-10-CM": "D", "ICD-10-PCS": "P"}
RANK_DEPTH = metrics.CODIESP_MAP_DEPTH
K_VALUES = (1, 5, 10)


def codiesp_form(code: str, system: str, catalog: Catalog) -> str:
    """The form CodiEsp writes a code in (see `Catalog.codiesp_form`)."""
    return catalog.codiesp_form(code, system)


def score_dataset(predictor: Predictor, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """Scores of every note over the predictor's codes, (docs, codes), with a progress bar."""
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="scoring", unit="batch"):
        chunks.append(predictor.scorer.probs(list(texts[start : start + batch_size])).astype(np.float32))
    return np.concatenate(chunks) if chunks else np.zeros((0, len(predictor.scorer.codes)), np.float32)


def ranked_codes(
    probs: np.ndarray, codes: Sequence[str], columns: np.ndarray, convert=None, depth: int = RANK_DEPTH
) -> list[list[tuple[str, float]]]:
    """Per document, the codes of `columns` ranked by score (zero scores dropped), after `convert`."""
    out = []
    for row in probs[:, columns]:
        order = np.argsort(-row, kind="stable")
        ranked: dict[str, float] = {}
        for j in order:
            if row[j] <= 0 or len(ranked) >= depth:
                break
            code = codes[columns[j]]
            code = convert(code) if convert else code
            ranked.setdefault(code, float(row[j]))
        out.append(list(ranked.items()))
    return out


def evaluate(
    predictor: Predictor,
    ids: Sequence[str],
    texts: Sequence[str],
    gold: dict[str, Sequence[Sequence[str]]],
    *,
    code_form: str = "as-is",
    top_k: int = 10,
) -> dict[str, Any]:
    """Evaluate a predictor on notes with gold codes.

    Args:
        predictor: the model with its thresholds (`decide()` is applied as in the service).
        ids, texts: the notes.
        gold: per system ("ICD-10-CM", "ICD-10-PCS"), the gold codes of each note.
        code_form: "codiesp" converts predictions to CodiEsp's form before scoring.
        top_k: codes returned per note by the decision rule.
    Returns:
        A JSON-ready dict: per system MAP (CodiEsp definition), P/R/F1 of the accepted codes (micro and
        macro), P@k, R@k, AUC, and the review rate.
    """
    started = time.perf_counter()
    probs = score_dataset(predictor, texts)
    seconds = time.perf_counter() - started
    scorer = predictor.scorer
    systems_arr = np.asarray(scorer.code_systems)
    result: dict[str, Any] = {
        "model_version": predictor.model_version,
        "documents": len(ids),
        "code_form": code_form,
        "thresholds": predictor.thresholds.to_dict(),
        "scoring_ms_per_note": round(1000 * seconds / max(len(ids), 1), 2),
        "systems": {},
    }
    for system in SYSTEMS:
        columns = np.flatnonzero(systems_arr == system)
        if system not in gold or columns.size == 0:
            continue

        def convert(code: str, _s: str = system) -> str:
            return codiesp_form(code, _s, predictor.catalog) if code_form == "codiesp" else code

        ranked = ranked_codes(probs, scorer.codes, columns, convert)
        gold_lists = [[convert(c) for c in doc] for doc in gold[system]]
        result["systems"][system] = _system_metrics(
            predictor, probs[:, columns], [scorer.codes[c] for c in columns], ids, ranked, gold_lists, top_k, convert
        )
    return result


def _system_metrics(predictor, probs, codes, ids, ranked, gold_lists, top_k, convert) -> dict[str, Any]:
    gold_map = {doc_id: g for doc_id, g in zip(ids, gold_lists) if g}
    pred_map = {doc_id: [c for c, _ in r] for doc_id, r in zip(ids, ranked) if r}
    # Decision rule: the accepted codes are the model's final answer for a note.
    accepted_lists, review = [], []
    for row in probs:
        decision = decide(row, top_k, predictor.thresholds)
        accepted_lists.append([convert(codes[i]) for i, ok in zip(decision.ranked, decision.accepted) if ok])
        review.append(decision.needs_review)
    # Label space for the set metrics: every gold code and every code ranked in the top 50.
    labels = sorted({c for g in gold_lists for c in g} | {c for r in ranked for c, _ in r[:50]} | {
        c for a in accepted_lists for c in a})
    y_true, _ = metrics.binarize(gold_lists, labels)
    y_pred, _ = metrics.binarize(accepted_lists, labels)
    index = {c: i for i, c in enumerate(labels)}
    scores = np.zeros(y_true.shape, dtype=np.float64)
    for d, r in enumerate(ranked):
        for code, s in r[:50]:
            scores[d, index[code]] = s
    out: dict[str, Any] = {
        "map": metrics.codiesp_map(gold_map, pred_map),
        "map_documents_with_gold_only": metrics.codiesp_map(
            gold_map, {k: v for k, v in pred_map.items() if k in gold_map}
        ),
        "documents_with_gold": len(gold_map),
        "distinct_gold_codes": len({c for g in gold_lists for c in g}),
        "gold_codes_in_model_vocabulary": _coverage(gold_lists, {convert(c) for c in codes}),
        "micro": metrics.micro_prf(y_true, y_pred),
        "macro": metrics.macro_prf(y_true, y_pred),
        "review_rate": float(np.mean(review)) if review else 0.0,
    }
    for k in K_VALUES:
        out[f"p@{k}"] = metrics.precision_at_k(y_true, scores, k)
        out[f"r@{k}"] = metrics.recall_at_k(y_true, scores, k)
    out["auc"] = metrics.auc(y_true, scores)
    return out


def _coverage(gold_lists: list[list[str]], vocabulary: set[str]) -> float:
    total = sum(len(g) for g in gold_lists)
    return sum(c in vocabulary for g in gold_lists for c in g) / total if total else 0.0


def write_report(report: dict[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write `report.json` and `report.md` into a directory; returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=_nan_safe) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(report), encoding="utf-8")
    return json_path, md_path


def _nan_safe(value: Any) -> Any:
    return None if isinstance(value, float) and np.isnan(value) else value


def to_markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of an evaluation report."""
    lines = [
        f"# Evaluation of `{report['model_version']}`",
        "",
        (f"{report['documents']} documents, code form `{report['code_form']}`, "
        f"scoring {report['scoring_ms_per_note']} ms per note, thresholds {report['thresholds']}."),
        "",
        ("| system | MAP | MAP (gold docs) | micro P | micro R | micro F1 | macro F1 | P@5 | R@10 | AUC micro "
        "| review rate |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system, m in report["systems"].items():
        lines.append(
            f"| {SHORT[system]} ({system}) | {m['map']:.4f} | {m['map_documents_with_gold_only']:.4f} "
            f"| {m['micro']['precision']:.3f} | {m['micro']['recall']:.3f} | {m['micro']['f1']:.3f} "
            f"| {m['macro']['f1']:.3f} | {m['p@5']:.3f} | {m['r@10']:.3f} | {_fmt(m['auc']['micro'])} "
            f"| {m['review_rate']:.2f} |"
        )
    lines += [
        "",
        ("MAP follows the CodiEsp definition (codes lower-cased and de-duplicated, documents with at least one "
        "prediction, predicted documents without gold count as 0). 'MAP (gold docs)' averages over documents "
        "that have gold codes of the system. P/R/F1 are of the codes `decide()` accepts; P@k, R@k and AUC of "
        "the ranking, over the gold codes and the top 50 predictions of each note."),
        "",
    ]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.3f}"

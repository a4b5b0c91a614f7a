"""Evaluate a predictor on a dataset and write the report (JSON + Markdown)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eval import metrics
from eval.triage import NoteCandidates, triage_curve, triage_stats
from models.catalog import Catalog
from models.decision import decide
from models.predictor import SYSTEMS, Predictor, encounter_systems
from models.scorer import CompositeScorer

# Dataset column that holds the gold codes of each system.
GOLD_COLUMNS = {"ICD-10-CM": "diagnoses", "ICD-10-PCS": "procedures"}
SHORT = {"ICD-10-CM": "D", "ICD-10-PCS": "P"}
RANK_DEPTH = metrics.CODIESP_MAP_DEPTH
K_VALUES = (1, 5, 10)


def codiesp_form(code: str, system: str, catalog: Catalog) -> str:
    """The form CodiEsp writes a code in (see `Catalog.codiesp_form`)."""
    return catalog.codiesp_form(code, system)


def score_dataset(predictor: Predictor, texts: Sequence[str], batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Scores of every note over the predictor's codes, (docs, codes), with a progress bar unless not `progress`."""
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="scoring", unit="batch", disable=not progress):
        chunks.append(predictor.scorer.probs(list(texts[start : start + batch_size])).astype(np.float32))
    return np.concatenate(chunks) if chunks else np.zeros((0, len(predictor.scorer.codes)), np.float32)


def mask_by_encounter(probs: np.ndarray, code_systems: Sequence[str], encounter_classes: Sequence[str] | None) -> None:
    """Zero, in place, the scores of the code systems the service does not return for each note's encounter
    class (an outpatient note gets no ICD-10-PCS codes); "" or None: not stated, nothing masked."""
    systems_arr = np.asarray(code_systems)
    for encounter_class in set(encounter_classes or ()):
        systems = encounter_systems(encounter_class or None, None)
        if systems is not None:
            notes = [d for d, c in enumerate(encounter_classes) if c == encounter_class]
            probs[np.ix_(notes, np.flatnonzero(~np.isin(systems_arr, systems)))] = 0.0


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
    train_counts: dict[tuple[str, str], int] | None = None,
    components: bool = True,
    progress: bool = True,
    encounter_classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluate a predictor on notes with gold codes.

    Args:
        predictor: the model with its thresholds (`decide()` is applied as in the service).
        ids, texts: the notes.
        gold: per system ("ICD-10-CM", "ICD-10-PCS"), the gold codes of each note.
        code_form: "codiesp" converts predictions to CodiEsp's form before scoring.
        top_k: codes returned per note by the decision rule.
        train_counts: (system, code) -> notes of the training data with that code, for results split by
            code frequency (seen >= 5 times / 1-4 / never).
        components: also evaluate each component of a hybrid on its own (MAP).
        progress: show progress bars while scoring.
        encounter_classes: each note's encounter class ("inpatient", "outpatient", "" if not stated): an
            outpatient note's ICD-10-PCS codes are not returned, as the service does not return them.
    Returns:
        A JSON-ready dict: per system MAP (CodiEsp definition), P/R/F1 of the accepted codes (micro and
        macro), P@k, R@k, AUC, the review rate, results by code frequency; calibration (ECE and the
        reliability bins), the triage at the model's thresholds and its curve, and per-component MAP.
    """
    started = time.perf_counter()
    probs = score_dataset(predictor, texts, progress=progress)
    seconds = time.perf_counter() - started
    scorer = predictor.scorer
    systems_arr = np.asarray(scorer.code_systems)
    mask_by_encounter(probs, scorer.code_systems, encounter_classes)
    result: dict[str, Any] = {
        "model_version": predictor.model_version,
        "documents": len(ids),
        "code_form": code_form,
        "thresholds": predictor.thresholds.to_dict(),
        "scoring_ms_per_note": round(1000 * seconds / max(len(ids), 1), 2),
        "encounter_classes": dict(Counter(c or "not stated" for c in (encounter_classes or [""] * len(ids)))),
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
        if train_counts is not None:
            result["systems"][system]["by_frequency"] = _by_frequency(
                ranked, gold_lists, probs[:, columns], [scorer.codes[c] for c in columns], predictor, top_k,
                convert, {c: n for (s, c), n in train_counts.items() if s == system},
            )
    notes = note_candidates(probs, scorer, gold, predictor.catalog, code_form)
    result["calibration"] = _calibration(notes)
    result["triage"] = {
        "at_thresholds": triage_stats(notes, predictor.thresholds, top_k),
        "curve": triage_curve(notes, top_k),
    }
    if components and isinstance(scorer, CompositeScorer):
        result["components"] = {}
        for name, part in scorer.proposers().items():
            sub = Predictor(part, predictor.catalog, predictor.thresholds, model_version=name)
            sub_report = evaluate(sub, ids, texts, gold, code_form=code_form, top_k=top_k, components=False,
                                  progress=progress, encounter_classes=encounter_classes)
            result["components"][name] = {
                s: {"map": m["map"], "map_documents_with_gold_only": m["map_documents_with_gold_only"]}
                for s, m in sub_report["systems"].items()
            } | {"scoring_ms_per_note": sub_report["scoring_ms_per_note"]}
    return result


FREQUENCY_BUCKETS = (("seen >= 5", 5, None), ("seen 1-4", 1, 4), ("never seen", 0, 0))


def _by_frequency(ranked, gold_lists, probs, codes, predictor, top_k, convert, counts) -> dict[str, Any]:
    """Recall in the top 20 and recall / precision of accepted codes, for gold codes by training frequency."""
    accepted = []
    for row in probs:
        decision = decide(row, top_k, predictor.thresholds)
        accepted.append({convert(codes[i]) for i, ok in zip(decision.ranked, decision.accepted) if ok})
    out: dict[str, Any] = {}
    for name, low, high in FREQUENCY_BUCKETS:
        def in_bucket(code: str, _low: int = low, _high: int | None = high) -> bool:
            n = counts.get(code, 0)
            return n >= _low and (_high is None or n <= _high)

        gold_n = found_20 = found_accepted = accepted_n = accepted_right = 0
        for r, g, a in zip(ranked, gold_lists, accepted):
            gold_set = {c for c in g if in_bucket(c)}
            gold_n += len(gold_set)
            found_20 += len(gold_set & {c for c, _ in r[:20]})
            found_accepted += len(gold_set & a)
            bucket_accepted = {c for c in a if in_bucket(c)}
            accepted_n += len(bucket_accepted)
            accepted_right += len(bucket_accepted & set(g))
        out[name] = {
            "gold_codes": gold_n,
            "recall@20": found_20 / gold_n if gold_n else None,
            "recall_accepted": found_accepted / gold_n if gold_n else None,
            "precision_accepted": accepted_right / accepted_n if accepted_n else None,
        }
    return out


def note_candidates(probs: np.ndarray, scorer, gold, catalog: Catalog, code_form: str,
                     depth: int = 50) -> list[NoteCandidates]:
    """Each note's best `depth` codes over all systems, as the decision rule sees them, with gold flags."""
    systems = scorer.code_systems
    notes = []
    for d, row in enumerate(probs):
        k = min(depth, row.size)
        top = np.argpartition(-row, k - 1)[:k]
        top = top[row[top] > 0]
        gold_set = {(s, c) for s in gold for c in gold[s][d]}

        def key(j: int) -> tuple[str, str]:
            code = scorer.codes[j]
            return systems[j], codiesp_form(code, systems[j], catalog) if code_form == "codiesp" else code

        is_gold = np.array([key(j) in gold_set for j in top], dtype=bool)
        notes.append(NoteCandidates(row[top].astype(np.float64), is_gold, len(gold_set)))
    return notes


def _calibration(notes: list[NoteCandidates], n_bins: int = 10) -> dict[str, Any]:
    """ECE and the reliability bins over every note's candidates."""
    probs = np.concatenate([n.probs for n in notes]) if notes else np.zeros(0)
    if probs.size == 0:
        return {}
    labels = np.concatenate([n.is_gold for n in notes]).astype(np.int8)
    probs = np.clip(probs, 0.0, 1.0)
    edges = np.linspace(0, 1, n_bins + 1)
    index = np.clip(np.digitize(probs, edges[1:-1]), 0, n_bins - 1)
    bins = [
        {"low": float(edges[b]), "high": float(edges[b + 1]), "count": int((index == b).sum()),
         "mean_confidence": float(probs[index == b].mean()), "accuracy": float(labels[index == b].mean())}
        for b in range(n_bins) if (index == b).any()
    ]
    return {
        "ece": metrics.expected_calibration_error(labels[:, None], probs[:, None], n_bins=n_bins),
        "candidates": int(probs.size),
        "bins": bins,
    }


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
        # Gold codes the model scores at all (a hybrid scores only its components' candidates).
        "candidate_recall": _candidate_recall(probs, codes, gold_lists, convert),
        "micro": metrics.micro_prf(y_true, y_pred),
        "macro": metrics.macro_prf(y_true, y_pred),
        "review_rate": float(np.mean(review)) if review else 0.0,
    }
    for k in K_VALUES:
        out[f"p@{k}"] = metrics.precision_at_k(y_true, scores, k)
        out[f"r@{k}"] = metrics.recall_at_k(y_true, scores, k)
    out["auc"] = metrics.auc(y_true, scores)
    return out


def _candidate_recall(probs: np.ndarray, codes: list[str], gold_lists: list[list[str]], convert) -> float:
    """Share of the gold codes that get a score above 0 for their note."""
    total = found = 0
    for row, gold in zip(probs, gold_lists):
        scored = {convert(codes[j]) for j in np.flatnonzero(row > 0)}
        total += len(set(gold))
        found += len(set(gold) & scored)
    return found / total if total else 0.0


def _coverage(gold_lists: list[list[str]], vocabulary: set[str]) -> float:
    total = sum(len(g) for g in gold_lists)
    return sum(c in vocabulary for g in gold_lists for c in g) / total if total else 0.0


def write_report(report: dict[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write `report.json` and `report.md` into a directory; returns their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(_clean(report), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(report), encoding="utf-8")
    write_plots(report, out)
    return json_path, md_path


def _clean(value: Any) -> Any:
    """NaN becomes null, so that the JSON is strict."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def write_plots(report: dict[str, Any], directory: Path) -> list[Path]:
    """reliability.png (calibration) and triage.png (review rate vs precision / recall of the rest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    bins = report.get("calibration", {}).get("bins") or []
    if bins:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        ax.plot([b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"model (ECE {report['calibration']['ece']:.3f})")
        ax.set_xlabel("confidence")
        ax.set_ylabel("share of codes that are correct")
        ax.set_title(f"Reliability: {report['model_version']}")
        ax.legend(loc="upper left")
        path = directory / "reliability.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    curve = report.get("triage", {}).get("curve") or []
    points = sorted(
        (p for p in curve if p.get("precision") is not None and not np.isnan(p["precision"])),
        key=lambda p: p["review_rate"],
    )
    if points:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([p["review_rate"] for p in points], [p["precision"] for p in points], marker=".", label="precision")
        ax.plot([p["review_rate"] for p in points], [p["recall"] for p in points], marker=".", label="recall")
        ax.set_xlabel("share of notes sent to review")
        ax.set_ylabel("codes of the auto-coded notes")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Triage: {report['model_version']}")
        ax.legend()
        path = directory / "triage.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def to_markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of an evaluation report."""
    lines = [
        f"# Evaluation of `{report['model_version']}`",
        "",
        (f"{report['documents']} documents, code form `{report['code_form']}`, "
        f"scoring {report['scoring_ms_per_note']} ms per note, thresholds {report['thresholds']}."),
        "",
        ("| system | MAP | MAP (gold docs) | micro P | micro R | micro F1 | macro F1 | P@5 | R@10 | AUC micro "
        "| review rate | candidate recall |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system, m in report["systems"].items():
        lines.append(
            f"| {SHORT[system]} ({system}) | {m['map']:.4f} | {m['map_documents_with_gold_only']:.4f} "
            f"| {m['micro']['precision']:.3f} | {m['micro']['recall']:.3f} | {m['micro']['f1']:.3f} "
            f"| {m['macro']['f1']:.3f} | {m['p@5']:.3f} | {m['r@10']:.3f} | {_fmt(m['auc']['micro'])} "
            f"| {m['review_rate']:.2f} | {_fmt(m.get('candidate_recall'))} |"
        )
    for system, m in report["systems"].items():
        if "by_frequency" in m:
            lines += ["", f"**{SHORT[system]} by training frequency of the gold code**", "",
                      "| bucket | gold codes | recall@20 | recall (accepted) | precision (accepted) |",
                      "| --- | --- | --- | --- | --- |"]
            for name, b in m["by_frequency"].items():
                lines.append(f"| {name} | {b['gold_codes']} | {_fmt(b['recall@20'])} | {_fmt(b['recall_accepted'])} "
                             f"| {_fmt(b['precision_accepted'])} |")
    if report.get("components"):
        lines += ["", "**Components alone (MAP)**", "", "| component | D MAP | P MAP | ms/note |",
                  "| --- | --- | --- | --- |"]
        for name, c in report["components"].items():
            d, p = c.get("ICD-10-CM", {}), c.get("ICD-10-PCS", {})
            lines.append(f"| {name} | {_fmt(d.get('map'))} | {_fmt(p.get('map'))} | {c['scoring_ms_per_note']} |")
    triage = report.get("triage", {}).get("at_thresholds")
    if triage:
        lines += ["", (f"**Triage at the model's thresholds**: {triage['skip_rate']:.1%} of notes skip review "
                       f"({triage['notes_skipped']}); their {triage['codes_accepted']} accepted codes have precision "
                       f"{_fmt(triage['precision'])} (one-sided 95% lower bound "
                       f"{_fmt(triage['precision_lower_bound'])}) and recall {_fmt(triage['recall'])}. "
                       "See triage.png.")]
    if report.get("calibration"):
        lines += ["", (f"**Calibration**: ECE {report['calibration']['ece']:.4f} over "
                       f"{report['calibration']['candidates']} candidate codes (top 50 per note). "
                       "See reliability.png.")]
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

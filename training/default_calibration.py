"""`python -m training.default_calibration`: fit the embedded default's calibration on coded notes and write
the file the default ships with (models/default_calibration.json).

The default needs no training data to run; its match scores are turned into probabilities by a map fitted
once on coded notes, one per code form (US-style notes coded by the US guidelines for "as-is", CodiEsp train
for CodiEsp's form): per code system an isotonic regression from each note's best candidates' raw scores to
whether they are gold, then the `accept` threshold at which the pre-accepted codes keep the target precision
by its one-sided 95 % lower bound. A fit replaces its own form's entry in the file and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np

from eval import metrics
from eval.report import GOLD_COLUMNS, mask_by_encounter, note_candidates, score_dataset
from eval.triage import triage_stats, tune_accept
from models.artifact import DEFAULT_CALIBRATION, default_predictor, read_json
from models.calibration import IsotonicCalibrator
from models.errors import ArtifactError, CoderError, InputError
from models.matcher import calibrate_match_scores
from models.predictor import SYSTEMS
from training.data import is_codiesp, load_data

logger = logging.getLogger(__name__)

# Equal-count bins of about 20 candidates, 10 to 100 of them: CodiEsp train's 20,000 candidates a system get
# 100 bins of about 200 (no step rests on a few codes), a set of 80 US notes bins of about 24, so that its few
# full matches at the top keep a step of their own.
CANDIDATES_PER_BIN = 20


def fit_default_calibration(texts: list[str], gold: dict[str, list[list[str]]], code_form: str,
                            target_precision: float = 0.9, top_k: int = 15,
                            encounter_classes: list[str] | None = None) -> dict:
    """The default's calibration fitted on coded notes (`gold`: code system -> each note's codes).

    Args:
        encounter_classes: each note's encounter class, so that an outpatient note's procedure codes, which
            the service does not return, are not fitted either.
    Returns:
        {"calibration": system -> isotonic breakpoints, "thresholds": the decision thresholds, "fit": the
        candidates, positives and ECE per system, the accepted codes and the triage at the thresholds}.
    """
    predictor = default_predictor(code_form=code_form, calibrated=False)
    raw = score_dataset(predictor, texts)
    mask_by_encounter(raw, predictor.scorer.code_systems, encounter_classes)
    systems = np.asarray(predictor.scorer.code_systems)
    calibrated = np.zeros_like(raw)
    result: dict = {"calibration": {}, "fit": {"notes": len(texts)}}
    for system in SYSTEMS:
        columns = systems == system
        # Each system's own best candidates: a note's diagnoses would otherwise crowd out its procedures.
        notes = note_candidates(np.where(columns, raw, np.float32(0)), predictor.scorer, gold, predictor.catalog,
                                code_form)
        scores = np.concatenate([n.probs for n in notes])
        labels = np.concatenate([n.is_gold for n in notes]).astype(np.int8)
        if not labels.any():
            raise InputError(f"no {system} code of the notes is among the default's candidates: nothing to fit its "
                             f"{system} calibration on (an outpatient note has no ICD-10-PCS codes)")
        bins = int(np.clip(labels.size // CANDIDATES_PER_BIN, 10, 100))
        calibrator = IsotonicCalibrator.fit(scores, labels, bins=bins)
        calibrated[:, columns] = calibrate_match_scores(calibrator, raw[:, columns])
        result["calibration"][system] = calibrator.to_dict()
        result["fit"][system] = {
            "candidates": int(labels.size), "positives": int(labels.sum()), "bins": bins,
            "ece_raw": metrics.expected_calibration_error(labels[:, None], np.clip(scores, 0, 1)[:, None]),
            "ece_calibrated": metrics.expected_calibration_error(labels[:, None], calibrator(scores)[:, None]),
        }
    notes = note_candidates(calibrated, predictor.scorer, gold, predictor.catalog, code_form)
    thresholds, accepted = tune_accept(notes, target_precision, top_k)
    result["thresholds"] = thresholds.to_dict()
    result["fit"] |= {"target_precision": target_precision, "top_k": top_k, "accepted": accepted,
                      "triage": triage_stats(notes, thresholds, top_k)}
    return result


def write_calibration(path: Path, code_form: str, entry: dict) -> None:
    """Write `entry` as the code form's calibration in `path`, keeping the other forms' entries."""
    data = read_json(path) if path.exists() else {}
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected an object of code forms")
    data[code_form] = entry
    # One line per entry: the breakpoint lists stay readable in a diff. NaN (nothing accepted) is null.
    forms = []
    for form in sorted(data):
        lines = [f"  {json.dumps(key)}: {json.dumps(_finite(value), allow_nan=False)}" for key, value in data[form].items()]
        forms.append(f" {json.dumps(form)}: {{\n" + ",\n".join(lines) + "\n }")
    path.write_text("{\n" + ",\n".join(forms) + "\n}\n", encoding="utf-8")


def _finite(value):
    """`value` with NaN floats (no code accepted, no note skipped) as None, at any depth."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.default_calibration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="coded notes: a CodiEsp folder, or a .jsonl/.csv file")
    parser.add_argument("--split", default="train", help="split to fit on (default train; never the test split)")
    parser.add_argument("--output", default=str(DEFAULT_CALIBRATION), help="file to write (default: the shipped one)")
    parser.add_argument("--target-precision", type=float, default=0.9,
                        help="lower bound of the pre-accepted codes' precision the accept threshold must keep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    source = Path(args.data)
    try:
        dataset = load_data(source, splits=args.split)[args.split]
    except CoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # CodiEsp's gold codes are in its own form (table rows for procedures): the default is fitted in it.
    code_form = "codiesp" if is_codiesp(source) else "as-is"
    gold = {system: list(dataset[column]) for system, column in GOLD_COLUMNS.items()}
    try:
        result = fit_default_calibration(list(dataset["text"]), gold, code_form, args.target_precision,
                                         encounter_classes=list(dataset["encounter_class"]))
        result["fit"] |= {"data": source.name, "split": args.split, "code_form": code_form}
        write_calibration(Path(args.output), code_form, result)
    except CoderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logger.info("thresholds %s; %s", result["thresholds"], {s: result["fit"][s] for s in SYSTEMS})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

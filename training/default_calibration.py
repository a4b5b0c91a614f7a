"""`python -m training.default_calibration`: fit the embedded default's calibration on coded notes and write
the file the default ships with (models/default_calibration.json).

The default needs no training data to run; its match scores are turned into probabilities by a map fitted
once on coded notes (CodiEsp train): per code system an isotonic regression from each note's best
candidates' raw scores to whether they are gold, then the decision thresholds tuned on the calibrated
candidates exactly as a trained recipe's are.
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
from eval.report import GOLD_COLUMNS, note_candidates, score_dataset
from eval.triage import tune_thresholds
from models.artifact import DEFAULT_CALIBRATION, default_predictor
from models.calibration import IsotonicCalibrator
from models.errors import CoderError
from models.matcher import calibrate_match_scores
from models.predictor import SYSTEMS
from training.data import is_codiesp, load_data

logger = logging.getLogger(__name__)

# About 200 candidates a bin on CodiEsp train: no step of the map rests on a few codes.
CALIBRATION_BINS = 100


def fit_default_calibration(texts: list[str], gold: dict[str, list[list[str]]], code_form: str,
                            target_precision: float = 0.95, top_k: int = 15) -> dict:
    """The default's calibration fitted on coded notes (`gold`: code system -> each note's codes).

    Returns:
        {"calibration": system -> isotonic breakpoints, "thresholds": the decision thresholds, "fit": the
        candidates, positives and ECE per system and the triage at the thresholds}.
    """
    predictor = default_predictor(code_form=code_form, calibrated=False)
    raw = score_dataset(predictor, texts)
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
        calibrator = IsotonicCalibrator.fit(scores, labels, bins=CALIBRATION_BINS)
        calibrated[:, columns] = calibrate_match_scores(calibrator, raw[:, columns])
        result["calibration"][system] = calibrator.to_dict()
        result["fit"][system] = {
            "candidates": int(labels.size), "positives": int(labels.sum()),
            "ece_raw": metrics.expected_calibration_error(labels[:, None], np.clip(scores, 0, 1)[:, None]),
            "ece_calibrated": metrics.expected_calibration_error(labels[:, None], calibrator(scores)[:, None]),
        }
    thresholds, triage = tune_thresholds(
        note_candidates(calibrated, predictor.scorer, gold, predictor.catalog, code_form), target_precision, top_k
    )
    result["thresholds"] = thresholds.to_dict()
    result["fit"] |= {"target_precision": target_precision, "top_k": top_k, "triage": triage}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.default_calibration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="coded notes: a CodiEsp folder, or a .jsonl/.csv file")
    parser.add_argument("--split", default="train", help="split to fit on (default train; never the test split)")
    parser.add_argument("--output", default=str(DEFAULT_CALIBRATION), help="file to write (default: the shipped one)")
    parser.add_argument("--target-precision", type=float, default=0.95,
                        help="lower bound of the auto-coded notes' precision the thresholds must keep")
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
    result = fit_default_calibration(list(dataset["text"]), gold, code_form, args.target_precision)
    result["fit"] |= {"data": source.name, "split": args.split, "code_form": code_form}
    # One line per entry: the breakpoint lists stay readable in a diff. NaN (no note auto-coded) is null.
    result["fit"]["triage"] = {k: None if math.isnan(v) else v for k, v in result["fit"]["triage"].items()}
    lines = [f" {json.dumps(key)}: {json.dumps(value, allow_nan=False)}" for key, value in result.items()]
    Path(args.output).write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    logger.info("thresholds %s; %s", result["thresholds"], {s: result["fit"][s] for s in SYSTEMS})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

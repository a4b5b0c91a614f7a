"""The embedded default's calibration: fitted on coded notes (training.default_calibration), shipped with
the package (models/default_calibration.json) and applied by the matcher."""

import json
from pathlib import Path

import numpy as np
import pytest

from models.artifact import default_calibration, default_predictor
from models.calibration import IsotonicCalibrator
from models.catalog import Catalog
from models.decision import Thresholds
from models.errors import ArtifactError
from models.matcher import CatalogMatcher, calibrate_match_scores
from models.predictor import SYSTEMS
from training.default_calibration import main

MINI = Path(__file__).parents[1] / "fixtures" / "codiesp_mini"
US_NOTES = Path(__file__).parents[1] / "fixtures" / "us_notes" / "notes.jsonl"


def test_calibrated_match_scores_keep_order_and_leave_unmatched_codes_out() -> None:
    calibrator = IsotonicCalibrator(np.array([0.2, 0.6, 0.9]), np.array([0.05, 0.3, 0.3]))
    raw = np.array([[0.0, 0.1, 0.7, 0.95, 0.8]], np.float32)
    calibrated = calibrate_match_scores(calibrator, raw).astype(np.float32)
    assert calibrated[0, 0] == 0.0  # no name matched: still no candidate, though the floor is 0.05
    assert list(np.argsort(-calibrated[0])) == list(np.argsort(-raw[0]))  # 0.7, 0.8, 0.95 share a step
    assert calibrated[0, 2:].max() == pytest.approx(0.3, abs=2e-3) and calibrated[0, 1] == pytest.approx(0.05, abs=1e-3)


def test_fitting_writes_a_calibration_per_code_form_in_the_shipped_form(tmp_path: Path) -> None:
    out = tmp_path / "calibration.json"
    assert main(["--data", str(MINI), "--split", "train", "--output", str(out)]) == 0
    us = tmp_path / "us.jsonl"  # US notes are a code form of their own, "as-is"
    lines = US_NOTES.read_text(encoding="utf-8").splitlines(keepends=True)
    us.write_text("".join(lines[:3]), encoding="utf-8")  # three outpatient notes: no procedure to fit on
    assert main(["--data", str(us), "--output", str(out)]) == 2
    us.write_text("".join(lines[:3] + lines[60:63]), encoding="utf-8")  # and three operative reports
    assert main(["--data", str(us), "--output", str(out)]) == 0
    fitted = json.loads(out.read_text(encoding="utf-8"))  # strict JSON: no NaN where no code was accepted
    assert set(fitted) == {"codiesp", "as-is"}  # the second fit kept the first's form
    for data in (fitted["codiesp"], fitted["as-is"], default_calibration("codiesp"), default_calibration("as-is")):
        assert set(data["calibration"]) == set(SYSTEMS)
        for system in SYSTEMS:
            calibrator = IsotonicCalibrator.from_dict(data["calibration"][system])
            assert 0.0 <= calibrator.y.min() and calibrator.y.max() <= 1.0
        Thresholds.from_dict(data["thresholds"])
    assert fitted["codiesp"]["fit"]["notes"] == 3 and fitted["codiesp"]["fit"]["ICD-10-CM"]["positives"] > 0
    assert fitted["as-is"]["fit"]["code_form"] == "as-is" and fitted["as-is"]["fit"]["notes"] == 6
    out.write_text("{not json", encoding="utf-8")
    assert main(["--data", str(us), "--output", str(out)]) == 2  # a broken file is named, not overwritten
    assert out.read_text(encoding="utf-8") == "{not json"


@pytest.mark.parametrize("code_form", ["as-is", "codiesp"])
def test_the_default_answers_with_its_shipped_calibration(catalog: Catalog, code_form: str) -> None:
    shipped = default_calibration(code_form)
    predictor = default_predictor(catalog, code_form=code_form)
    assert predictor.thresholds == Thresholds.from_dict(shipped["thresholds"])
    text = "Type 2 diabetes mellitus without complications. Laparoscopic appendectomy."
    raw = predictor.scorer.match(text).scores  # the match itself is uncalibrated
    probs = predictor.scorer.probs([text])[0]
    assert np.array_equal(probs > 0, raw > 0)
    for system in SYSTEMS:
        columns = np.asarray(predictor.scorer.code_systems) == system
        expected = IsotonicCalibrator.from_dict(shipped["calibration"][system])(raw[columns & (raw > 0)])
        assert np.allclose(probs[columns & (raw > 0)], expected, atol=2e-3)
        assert np.argmax(np.where(columns, probs, -1)) == np.argmax(np.where(columns, raw, -1))
    assert predictor.scorer.to_state().settings["calibration"] == shipped["calibration"]  # saved with an artifact


def test_a_calibration_for_an_unknown_system_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ArtifactError, match="ICD-9"):
        CatalogMatcher(catalog, systems=("ICD-10-CM",), calibration={"ICD-9": {"x": [0.0], "y": [0.0]}})


"""Train a tiny model, save it, load it, serve it through the API; and the two CLIs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.__main__ import main as eval_main
from models.artifact import load_artifact, save_artifact
from models.decision import Thresholds
from models.errors import ArtifactError
from tests.service_fixtures import MINI, TINY_RECIPE, keyword_predictor, make_service, wait_ready
from training.__main__ import main as train_main
from training.config import load_config
from training.train import train

RECIPE = TINY_RECIPE


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    recipe = folder / "tiny.yaml"
    recipe.write_text(RECIPE % MINI, encoding="utf-8")
    return train(load_config(recipe), folder / "artifact", progress=False)


def test_artifact_directory_has_every_part(tiny_artifact: Path) -> None:
    names = {p.name for p in tiny_artifact.iterdir()}
    assert {"config.json", "labels.json", "weights.safetensors", "thresholds.json", "metrics.json",
            "training_config.json", "data_fingerprint.json"} <= names
    labels = json.loads((tiny_artifact / "labels.json").read_text())
    assert labels["ICD-10-CM"] == sorted(labels["ICD-10-CM"]) and "E11.9" in labels["ICD-10-CM"]
    metrics = json.loads((tiny_artifact / "metrics.json").read_text())
    assert set(metrics["systems"]) == {"ICD-10-CM", "ICD-10-PCS"}
    assert not any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in tiny_artifact.iterdir())


def test_save_load_round_trip_gives_identical_scores(tiny_artifact: Path, tmp_path: Path) -> None:
    first = load_artifact(tiny_artifact)
    copy = save_artifact(tmp_path / "copy", first.scorer, first.thresholds, model_version="copy")
    second = load_artifact(copy)
    texts = ["Type 2 diabetes and essential hypertension.", "Orchiepididymitis with scrotal pain."]
    assert second.scorer.codes == first.scorer.codes
    np.testing.assert_array_equal(second.scorer.probs(texts), first.scorer.probs(texts))


def test_corrupt_weights_are_refused_with_the_file_named(tiny_artifact: Path, tmp_path: Path) -> None:
    predictor = load_artifact(tiny_artifact)
    broken = save_artifact(tmp_path / "broken", predictor.scorer, Thresholds())
    (broken / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactError, match="weights.safetensors"):
        load_artifact(broken)
    (broken / "config.json").write_text('{"format_version": 99, "kind": "linear"}')
    with pytest.raises(ArtifactError, match="config.json"):
        load_artifact(broken)


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'coder.db'}"


def test_trained_artifact_is_served_through_the_api(tiny_artifact: Path, tmp_path: Path) -> None:
    svc = make_service(_sqlite(tmp_path), None, tmp_path, artifact=str(tiny_artifact))
    with svc.client as client:
        client.headers["X-API-Key"] = svc.keys["admin"]
        assert wait_ready(client)["model_version"] == "tiny-linear"
        text = "Known type 2 diabetes mellitus. Essential hypertension treated with enalapril."
        response = client.post("/v1/codes:suggest", json={"text": text, "top_k": 5, "note_id": "n-1"})
        assert response.status_code == 200
        body = response.json()
        assert body["note_id"] == "n-1" and body["model_version"] == "tiny-linear"
        assert 1 <= len(body["codes"]) <= 5
        confidences = [c["confidence"] for c in body["codes"]]
        assert confidences == sorted(confidences, reverse=True)
        assert all(0.0 <= c <= 1.0 for c in confidences)
        for code in body["codes"]:
            for span in code["evidence"]:
                assert 0 <= span["start"] < span["end"] <= len(text)
        only_pcs = client.post("/v1/codes:suggest", json={"text": text, "systems": ["ICD-10-PCS"]}).json()
        assert {c["system"] for c in only_pcs["codes"]} <= {"ICD-10-PCS"}
        assert client.get("/v1/model").json()["kind"] == "linear"


def test_embedded_default_codes_the_acceptance_example(tmp_path: Path) -> None:
    svc = make_service(_sqlite(tmp_path), None, tmp_path, artifact=None)
    with svc.client as client:
        client.headers["X-API-Key"] = svc.keys["ehr"]
        wait_ready(client)
        text = "type 2 diabetes mellitus without complications and essential hypertension"
        body = client.post("/v1/codes:suggest", json={"text": text, "top_k": 3}).json()
        top3 = [c["code"] for c in body["codes"]]
        assert "E11.9" in top3 and "I10" in top3
        assert body["model_version"] == "catalog-matcher-default"


def test_bad_requests_get_json_errors_without_the_note_text(tmp_path: Path, catalog) -> None:
    marker = "ZEBRA-MARKER-4711"
    svc = make_service(_sqlite(tmp_path), keyword_predictor(catalog), tmp_path, max_body_bytes=10_000)
    with svc.client as client:
        client.headers["X-API-Key"] = svc.keys["ehr"]
        cases = [
            ({"text": "   "}, 422, "invalid_input"),
            ({"text": marker, "top_k": 0}, 422, "invalid_request"),
            ({"text": marker, "unknown": 1}, 422, "invalid_request"),
            ({"text": marker, "systems": ["ICD-9"]}, 422, "invalid_request"),
            ({"text": marker * 1000}, 413, "body_too_large"),
        ]
        for payload, status, code in cases:
            response = client.post("/v1/codes:suggest", json=payload)
            assert response.status_code == status, payload.keys()
            assert response.json()["error"]["code"] == code
            assert marker not in response.text
        assert client.get("/healthz").json() == {"status": "ok"}


def test_training_cli_and_eval_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE % MINI, encoding="utf-8")
    assert train_main(["--config", str(recipe), "--output", str(tmp_path / "art"), "--eval-split", "none",
                       "--quiet"]) == 0
    assert (tmp_path / "art" / "config.json").is_file()
    assert eval_main(["report", "--artifact", str(tmp_path / "art"), "--data", str(MINI), "--split", "dev",
                      "--output", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert 0.0 <= report["systems"]["ICD-10-CM"]["map"] <= 1.0
    assert "| D (ICD-10-CM) |" in (tmp_path / "report" / "report.md").read_text()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "doc-1.txt").write_text("Essential hypertension. Renal ultrasound of the right kidney.")
    (notes / "doc-2.txt").write_text("Type 2 diabetes mellitus.")
    assert eval_main(["predict", "--artifact", "default", "--input", str(notes), "--output",
                      str(tmp_path / "pred"), "--depth", "5"]) == 0
    rows = [line.split("\t") for line in (tmp_path / "pred" / "diagnoses.tsv").read_text().splitlines()]
    assert {r[0] for r in rows} == {"doc-1", "doc-2"}
    assert ["doc-1", "i10"] in rows and all(r[1] == r[1].lower() for r in rows)
    assert len([r for r in rows if r[0] == "doc-2"]) <= 5
    procedures = (tmp_path / "pred" / "procedures.tsv").read_text()
    assert "doc-1\tbt41zzz" in procedures
    assert train_main(["--config", str(tmp_path / "missing.yaml"), "--output", str(tmp_path / "x")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_quiet_training_says_only_where_the_artifact_went(tmp_path: Path) -> None:
    # A process of its own: the test runner's logging set-up must not hide what the CLI would print.
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE % MINI, encoding="utf-8")
    output = tmp_path / "art"
    done = subprocess.run([sys.executable, "-m", "training", "--config", str(recipe), "--output", str(output),
                           "--quiet"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""  # no log lines, no progress bars (the recipe evaluates on dev, scoring it)
    assert done.stdout.strip() == f"artifact written to {output}"


def test_matcher_artifact_round_trip(matcher, tmp_path: Path) -> None:
    saved = save_artifact(tmp_path / "matcher", matcher, Thresholds(accept=0.85, suggest=0.05, review_band=0.3))
    assert not (saved / "weights.safetensors").exists()  # rebuilt from the catalogue, nothing to store
    loaded = load_artifact(saved)
    text = ["Essential hypertension. A colonoscopy was performed."]
    np.testing.assert_array_equal(loaded.scorer.probs(text), matcher.probs(text))
    assert loaded.thresholds.accept == 0.85


def test_training_adds_exported_coder_decisions_to_the_recipe_data(tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE % MINI, encoding="utf-8")
    feedback = tmp_path / "feedback.jsonl"
    rows = [{"id": f"fb-{n}", "text": f"Asthma attack, uncomplicated, case {n}.",
             "diagnoses": ["J45.901"], "procedures": [], "review_id": "r", "resolved_by": "ann"} for n in range(3)]
    feedback.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert train_main(["--config", str(recipe), "--output", str(tmp_path / "art"), "--eval-split", "none",
                       "--add-train", str(feedback), "--quiet"]) == 0
    labels = json.loads((tmp_path / "art" / "labels.json").read_text())
    assert "J45.901" in labels["ICD-10-CM"]
    fingerprint = json.loads((tmp_path / "art" / "data_fingerprint.json").read_text())
    assert fingerprint["extra_train"] == [str(feedback)]
    assert train_main(["--config", str(recipe), "--output", str(tmp_path / "art2"), "--eval-split", "none",
                       "--add-train", str(tmp_path / "missing.jsonl"), "--quiet"]) == 2

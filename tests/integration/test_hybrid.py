"""The hybrid: fold discipline of its ranker's training data, and a save -> load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.artifact import load_artifact, save_artifact
from models.decision import Thresholds
from models.hybrid import CodeStats, HybridCoder, HybridSettings, candidate_features, feature_names
from models.linear import LinearCoder, LinearSettings
from training import hybrid as hybrid_training
from training.data import load_data

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "codiesp_mini"
TINY_LINEAR = LinearSettings(min_df=1, ngram_max=1, keep_per_code=50)
TINY_HYBRID = HybridSettings(candidates_per_component=10, n_estimators=20, min_child_samples=1, code_form="codiesp")


@pytest.fixture(scope="module")
def mini():
    data = load_data(MINI, splits="train+dev")["train+dev"]
    return data["text"], {"ICD-10-CM": data["diagnoses"], "ICD-10-PCS": data["procedures"]}


def test_no_component_scores_a_note_it_was_trained_on(mini, matcher, catalog, monkeypatch) -> None:
    texts, targets = mini
    fitted_on: list[set[str]] = []
    scored: list[set[str]] = []
    real_fit, real_probs = LinearCoder.fit, LinearCoder.probs

    def spy_fit(cls, fit_texts, *args, **kwargs):
        fitted_on.append(set(fit_texts))
        return real_fit.__func__(cls, fit_texts, *args, **kwargs)

    def spy_probs(self, score_texts):
        scored.append(set(score_texts))
        return real_probs(self, score_texts)

    monkeypatch.setattr(LinearCoder, "fit", classmethod(spy_fit))
    monkeypatch.setattr(LinearCoder, "probs", spy_probs)
    features, labels, doc_index = hybrid_training.out_of_fold_rows(
        texts, targets, matcher, TINY_LINEAR, TINY_HYBRID, catalog, folds=3, seed=1, progress=False
    )
    assert len(fitted_on) == len(scored) == 3
    for train_texts, held_texts in zip(fitted_on, scored):
        assert held_texts and not (train_texts & held_texts)
    # Every note is held out exactly once, and every candidate row belongs to a note.
    assert set().union(*scored) == set(texts)
    assert features.shape == (len(labels), len(feature_names(["linear", "matcher"])))
    assert set(np.unique(doc_index)) <= set(range(len(texts)))
    assert labels.sum() > 0


def test_candidate_features_use_training_frequencies() -> None:
    stats = CodeStats.from_targets({"ICD-10-CM": [["E11.9", "I10"], ["I10"]], "ICD-10-PCS": [[], []]})
    assert stats.code_counts["ICD-10-CM|I10"] == 2 and stats.category_counts["ICD-10-CM|E11"] == 1
    scores = {"linear": {"ICD-10-CM": {"I10": 0.9, "E11.9": 0.2}}, "matcher": {"ICD-10-CM": {"E11.9": 0.8}}}
    pairs, rows = candidate_features(scores, stats, per_component=5)
    names = feature_names(["linear", "matcher"])
    row = dict(zip(names, rows[pairs.index(("ICD-10-CM", "E11.9"))]))
    assert row["linear_score"] == pytest.approx(0.2) and row["linear_rank"] == 1
    assert row["matcher_score"] == pytest.approx(0.8) and row["matcher_rank"] == 0
    assert row["log_code_freq"] == pytest.approx(np.log1p(1)) and row["components_present"] == 2
    i10 = dict(zip(names, rows[pairs.index(("ICD-10-CM", "I10"))]))
    assert i10["matcher_present"] == 0 and i10["log_code_freq"] == pytest.approx(np.log1p(2))


def test_hybrid_round_trip_gives_identical_scores(mini, matcher, catalog, tmp_path: Path) -> None:
    texts, targets = mini
    hybrid, thresholds, report = hybrid_training.fit_hybrid(
        texts, targets, catalog, matcher, TINY_LINEAR, TINY_HYBRID, folds=2, seed=1, progress=False
    )
    assert isinstance(hybrid, HybridCoder) and hybrid.calibrator is not None
    assert 0.0 <= thresholds.review_band <= thresholds.accept <= 1.0
    assert 0.0 <= report["ece_calibrated"] <= 1.0 and report["candidates"] > 0
    saved = save_artifact(tmp_path / "hybrid", hybrid, Thresholds(), model_version="tiny-hybrid")
    assert (saved / "ranker.txt").is_file() and (saved / "weights.safetensors").is_file()
    loaded = load_artifact(saved, catalog)
    probe = ["Type 2 diabetes mellitus and essential hypertension.", "Renal ultrasound; colonoscopy."]
    assert loaded.scorer.codes == hybrid.codes
    np.testing.assert_allclose(loaded.scorer.probs(probe), hybrid.probs(probe), rtol=0, atol=1e-7)
    prediction = loaded.predict(probe[0], top_k=5)
    assert prediction.model_version == "tiny-hybrid" and 0 < len(prediction.codes) <= 5
    (saved / "ranker.txt").write_text("not a lightgbm model")
    with pytest.raises(Exception, match="ranker.txt"):
        load_artifact(saved, catalog)

"""The hybrid: fold discipline of its ranker's training data, and a save -> load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.artifact import load_artifact, save_artifact
from models.decision import Thresholds
from models.errors import ArtifactError
from models.hierarchy import GroupCoder
from models.hybrid import CodeStats, HybridCoder, HybridSettings, candidate_features, feature_names
from models.linear import LinearCoder, LinearSettings
from models.neighbors import NeighborCoder, NeighborSettings
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
    features, labels, doc_index, names = hybrid_training.out_of_fold_rows(
        texts, targets, matcher, TINY_LINEAR, TINY_HYBRID, catalog, folds=3, seed=1, progress=False
    )
    assert len(fitted_on) == len(scored) == 3
    for train_texts, held_texts in zip(fitted_on, scored):
        assert held_texts and not (train_texts & held_texts)
    # Every note is held out exactly once, and every candidate row belongs to a note.
    assert set().union(*scored) == set(texts)
    assert names == feature_names(["linear", "matcher"])
    assert features.shape == (len(labels), len(names))
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


def test_new_components_never_score_a_note_they_were_trained_on(mini, matcher, catalog, monkeypatch) -> None:
    texts, targets = mini
    seen: dict[str, list[tuple[set[str], set[str]]]] = {"neighbors": [], "groups": []}
    fitted: dict[str, set[str]] = {}

    def fit_spy(name, fit):
        def fit_fold(fold_texts, fold_targets):
            fitted[name] = set(fold_texts)
            component = fit(fold_texts, fold_targets)
            real_probs = component.probs

            def probs(score_texts):
                seen[name].append((fitted[name], set(score_texts)))
                return real_probs(score_texts)

            monkeypatch.setattr(component, "probs", probs)
            return component
        return fit_fold

    extra = {
        "neighbors": fit_spy("neighbors", lambda t, y: NeighborCoder.fit(t, y, NeighborSettings(k=3))),
        "groups": fit_spy("groups", lambda t, y: GroupCoder.fit(t, y, TINY_LINEAR)),
    }
    features, labels, _, names = hybrid_training.out_of_fold_rows(
        texts, targets, matcher, TINY_LINEAR, TINY_HYBRID, catalog, folds=3, seed=1, progress=False, fit_extra=extra
    )
    for name in extra:
        assert len(seen[name]) == 3
        for train_texts, held_texts in seen[name]:
            assert held_texts and not (train_texts & held_texts)
    assert names == feature_names(["linear", "matcher", "neighbors"], ["groups"])
    assert features.shape == (len(labels), len(names))


def test_group_scores_are_features_of_candidates_not_candidates() -> None:
    stats = CodeStats.from_targets({"ICD-10-CM": [["E11.9", "I10"], ["I10"]], "ICD-10-PCS": [[], []]})
    scores = {"linear": {"ICD-10-CM": {"E11.9": 0.2, "E11.65": 0.1}},
              "groups": {"ICD-10-CM": {"I10": 0.3, "E11": 0.9}}}
    pairs, rows = candidate_features(scores, stats, per_component=5, groups=frozenset({"groups"}))
    assert pairs == [("ICD-10-CM", "E11.9"), ("ICD-10-CM", "E11.65")]  # "I10" of the group scorer is no candidate
    names = feature_names(["linear"], ["groups"])
    for pair in pairs:
        row = dict(zip(names, rows[pairs.index(pair)]))
        assert row["groups_group_score"] == pytest.approx(0.9) and row["groups_group_rank"] == 0


def test_cooccurrence_features_count_codes_given_together() -> None:
    targets = {"ICD-10-CM": [["E11.9", "I10"], ["I10", "N18.9"], ["I10"]], "ICD-10-PCS": [[], [], []]}
    stats = CodeStats.from_targets(targets)
    assert stats.given("ICD-10-CM|E11.9", "ICD-10-CM|I10") == pytest.approx(1 / 3)
    assert stats.given("ICD-10-CM|I10", "ICD-10-CM|E11.9") == pytest.approx(1.0)
    assert stats.given("ICD-10-CM|E11.9", "ICD-10-CM|N18.9") == 0.0
    scores = {"linear": {"ICD-10-CM": {"I10": 0.9, "E11.9": 0.5, "Z99.9": 0.1}}}
    pairs, rows = candidate_features(scores, stats, per_component=5, cooccurrence=True)
    names = feature_names(["linear"], cooccurrence=True)
    e11 = dict(zip(names, rows[pairs.index(("ICD-10-CM", "E11.9"))]))
    assert e11["cooc_max"] == pytest.approx(1 / 3) and e11["cooc_sum"] == pytest.approx(1 / 3)
    unseen = dict(zip(names, rows[pairs.index(("ICD-10-CM", "Z99.9"))]))
    assert unseen["cooc_max"] == 0.0


def test_lambdarank_hybrid_with_every_new_component_round_trips(mini, matcher, catalog, tmp_path: Path) -> None:
    texts, targets = mini
    settings = HybridSettings(candidates_per_component=10, n_estimators=20, min_child_samples=1, code_form="codiesp",
                              objective="lambdarank", cooccurrence=True)
    extra = {"neighbors": lambda t, y: NeighborCoder.fit(t, y, NeighborSettings(k=3)),
             "groups": lambda t, y: GroupCoder.fit(t, y, TINY_LINEAR)}
    hybrid, _, report = hybrid_training.fit_hybrid(
        texts, targets, catalog, matcher, TINY_LINEAR, settings, folds=2, seed=1, progress=False, fit_extra=extra
    )
    assert hybrid.groups == {"groups"} and report["candidates"] > 0
    saved = save_artifact(tmp_path / "hybrid", hybrid, Thresholds(), model_version="tiny-ranked")
    loaded = load_artifact(saved, catalog).scorer
    assert isinstance(loaded.components["neighbors"], NeighborCoder)
    assert isinstance(loaded.components["groups"], GroupCoder)
    probe = ["Type 2 diabetes mellitus and essential hypertension.", "Renal ultrasound; colonoscopy."]
    probs = hybrid.probs(probe)
    assert ((probs >= 0) & (probs <= 1)).all() and probs.max() > 0  # calibrated, whatever the raw scale
    assert loaded.codes == hybrid.codes
    np.testing.assert_allclose(loaded.probs(probe), probs, rtol=0, atol=1e-7)


def test_components_keep_the_order_the_ranker_was_trained_in(mini, matcher, catalog, tmp_path: Path) -> None:
    # Fitted after the linear model and the matcher, but first in sorted order: the artifact's JSON sorts
    # object keys, and the ranker's features follow the training order.
    texts, targets = mini
    extra = {"a_neighbors": lambda t, y: NeighborCoder.fit(t, y, NeighborSettings(k=3))}
    hybrid, _, _ = hybrid_training.fit_hybrid(
        texts, targets, catalog, matcher, TINY_LINEAR, TINY_HYBRID, folds=2, seed=1, progress=False, fit_extra=extra
    )
    assert list(hybrid.components) == ["linear", "matcher", "a_neighbors"]
    probe = ["Type 2 diabetes mellitus and essential hypertension.", "Renal ultrasound; colonoscopy."]
    saved = save_artifact(tmp_path / "hybrid", hybrid, Thresholds(), model_version="tiny-order")
    loaded = load_artifact(saved, catalog).scorer
    assert list(loaded.components) == list(hybrid.components)
    np.testing.assert_allclose(loaded.probs(probe), hybrid.probs(probe), rtol=0, atol=1e-7)

    # An artifact written before the order was stored: the ranker's feature names give it.
    config_path = saved / "config.json"
    config = json.loads(config_path.read_text())
    del config["settings"]["order"]
    config_path.write_text(json.dumps(config, sort_keys=True))
    older = load_artifact(saved, catalog).scorer
    assert list(older.components) == list(hybrid.components)
    np.testing.assert_allclose(older.probs(probe), hybrid.probs(probe), rtol=0, atol=1e-7)

    # Components in another order than the ranker's features are refused, not scored wrongly.
    shuffled = {name: hybrid.components[name] for name in ("a_neighbors", "linear", "matcher")}
    with pytest.raises(ArtifactError, match="order"):
        HybridCoder(shuffled, hybrid.stats, hybrid.ranker_text, hybrid.settings)

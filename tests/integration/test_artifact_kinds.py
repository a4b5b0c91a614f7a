"""One state contract for every scorer kind: each saves to an artifact and loads back with identical scores
and evidence. Small stand-ins keep it fast: hand-made notes, a tiny local encoder, a five-name catalogue for
the retriever."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from models.artifact import KINDS, SCORER_KINDS, load_artifact, save_artifact
from models.catalog import Catalog
from models.decision import Thresholds
from models.errors import ArtifactError
from models.hierarchy import GroupCoder
from models.hybrid import CodeStats, HybridCoder, HybridSettings, ranker_feature_names
from models.linear import LinearCoder, LinearSettings
from models.matcher import CatalogMatcher
from models.neighbors import NeighborCoder, NeighborSettings
from models.retriever import CatalogRetriever
from models.scorer import Scorer
from models.transformer import TransformerCoder, TransformerSettings
from tests.stand_in_catalog import StandInCatalog

NOTES = [
    "Type 2 diabetes mellitus with poor control, on metformin.\nEssential hypertension.",
    "Acute appendicitis; laparoscopic appendectomy performed.",
    "Perforated appendicitis, appendectomy and drainage of an abscess. High blood pressure.",
    "Kidney stone seen on ultrasound. Heart attack two years ago.",
]
TARGETS = {
    "ICD-10-CM": [["E11.65", "I10"], ["K35.80"], ["K35.32", "I10"], ["N20.0", "I25.2"]],
    "ICD-10-PCS": [[], ["0DTJ4ZZ"], ["0DTJ0ZZ", "0D9J0ZZ"], []],
}
PROBE = ["Appendicitis treated by appendectomy; type 2 diabetes on metformin.", "Hypertension. Kidney stone."]
TINY_LINEAR = LinearSettings(min_df=1, ngram_max=1, keep_per_code=50)


def _transformer(encoder: Path) -> TransformerCoder:
    codes = sorted({c for doc in TARGETS["ICD-10-CM"] for c in doc})
    return TransformerCoder.create(TransformerSettings(encoder=str(encoder), window_tokens=16, max_windows=2),
                                   codes, ["ICD-10-CM"] * len(codes))


def _hybrid(encoder: Path) -> HybridCoder:
    """A hybrid over a linear model, a transformer and a group scorer, its ranker fitted on random rows."""
    components = {"linear": LinearCoder.fit(NOTES, TARGETS, TINY_LINEAR, progress=False),
                  "transformer": _transformer(encoder), "groups": GroupCoder.fit(NOTES, TARGETS, TINY_LINEAR)}
    settings = HybridSettings(candidates_per_component=5, n_estimators=5, min_child_samples=1)
    names = ranker_feature_names(components, settings.cooccurrence)  # named, as training names them
    n_features = len(names)
    rng = np.random.default_rng(0)
    features, labels = rng.random((60, n_features)), rng.integers(0, 2, 60)
    booster = lgb.train({"objective": "binary", "verbose": -1, "min_data_in_leaf": 1, "num_leaves": 4},
                        lgb.Dataset(features, labels, feature_name=names), num_boost_round=5)
    return HybridCoder(components, CodeStats.from_targets(TARGETS), booster.model_to_string(), settings)


BUILDERS: dict[str, Callable[..., Any]] = {
    "linear": lambda **_: LinearCoder.fit(NOTES, TARGETS, TINY_LINEAR, progress=False),
    "matcher": lambda matcher, **_: matcher,
    "transformer": lambda encoder, **_: _transformer(encoder),
    "hybrid": lambda encoder, **_: _hybrid(encoder),
    "neighbors": lambda **_: NeighborCoder.fit(NOTES, TARGETS, NeighborSettings(k=2, min_df=1)),
    "groups": lambda **_: GroupCoder.fit(NOTES, TARGETS, TINY_LINEAR),
    "retriever": lambda cache, **_: CatalogRetriever.build(StandInCatalog(), systems=("ICD-10-CM",), cache=cache,
                                                           progress=False),
}


def test_every_kind_has_a_round_trip_case() -> None:
    assert set(BUILDERS) == set(KINDS) == set(SCORER_KINDS)
    for kind, cls in SCORER_KINDS.items():
        assert cls.kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips_with_identical_scores_and_evidence(
    kind: str, matcher: CatalogMatcher, catalog: Catalog, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    scorer = BUILDERS[kind](matcher=matcher, encoder=tiny_encoder_dir, cache=tmp_path / "cache")
    assert isinstance(scorer, Scorer) and scorer.kind == kind
    state = scorer.to_state()
    assert state.kind == kind
    saved = save_artifact(tmp_path / kind, scorer, Thresholds(), model_version=f"tiny-{kind}")
    assert json.loads((saved / "config.json").read_text())["kind"] == kind
    loaded = load_artifact(saved, catalog, runtime="torch").scorer
    assert type(loaded) is type(scorer)
    assert (loaded.codes, loaded.code_systems) == (scorer.codes, scorer.code_systems)
    expected, sources = scorer.score(PROBE)
    got, loaded_sources = loaded.score(PROBE)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(loaded.probs(PROBE), expected)
    for row, source, loaded_source in zip(expected, sources, loaded_sources):
        top = [int(i) for i in np.argsort(-row)[:5]]
        assert loaded_source.evidence(top) == source.evidence(top)
    again = save_artifact(tmp_path / f"{kind}-again", loaded, Thresholds())
    np.testing.assert_array_equal(load_artifact(again, catalog).scorer.probs(PROBE), expected)


def test_a_hybrid_written_before_its_files_were_listed_still_loads(catalog: Catalog, tiny_encoder_dir: Path,
                                                                   tmp_path: Path) -> None:
    hybrid = _hybrid(tiny_encoder_dir)
    saved = save_artifact(tmp_path / "hybrid", hybrid, Thresholds())
    config = json.loads((saved / "config.json").read_text())
    assert "ranker.txt" in config.pop("files")
    (saved / "config.json").write_text(json.dumps(config))
    np.testing.assert_array_equal(load_artifact(saved, catalog).scorer.probs(PROBE), hybrid.probs(PROBE))
    (saved / "ranker.txt").unlink()
    with pytest.raises(ArtifactError, match="ranker.txt"):
        load_artifact(saved, catalog)


def test_what_is_no_known_kind_is_not_saved(tmp_path: Path) -> None:
    class Stranger:
        codes, code_systems = ["I10"], ["ICD-10-CM"]

    with pytest.raises(ArtifactError, match="Stranger"):
        save_artifact(tmp_path / "stranger", Stranger(), Thresholds())
    assert not (tmp_path / "stranger").exists()


def test_a_transformer_artifact_loads_without_its_encoder_name(catalog: Catalog, tiny_encoder_dir: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models.transformer

    coder = _transformer(tiny_encoder_dir)
    expected, sources = coder.score(PROBE)
    saved = save_artifact(tmp_path / "transformer", coder, Thresholds())
    config = json.loads((saved / "config.json").read_text())
    stored = [name for name in config["files"] if name.startswith("encoder.")]
    assert {"encoder.config.json", "encoder.tokenizer.json"} <= set(stored)
    # The tokenizer and the encoder come from the artifact: no folder, package or hub name is looked up.
    config["settings"]["encoder"] = str(tmp_path / "no-such-encoder")
    (saved / "config.json").write_text(json.dumps(config))

    def no_lookup(name: str) -> str:
        raise AssertionError(f"the encoder {name!r} was looked up")

    monkeypatch.setattr(models.transformer, "resolve_encoder", no_lookup)
    loaded = load_artifact(saved, catalog).scorer
    got, loaded_sources = loaded.score(PROBE)
    np.testing.assert_array_equal(got, expected)
    assert [s.evidence([0, 1, 2]) for s in loaded_sources] == [s.evidence([0, 1, 2]) for s in sources]
    monkeypatch.undo()
    # An artifact written before the files were stored loads its encoder by name.
    config["settings"]["encoder"] = str(tiny_encoder_dir)
    del config["files"]
    (saved / "config.json").write_text(json.dumps(config))
    for name in stored:
        (saved / name).unlink()
    np.testing.assert_array_equal(load_artifact(saved, catalog).scorer.probs(PROBE), expected)


def test_a_hybrid_keeps_its_transformers_encoder_files_under_the_components_name(
        catalog: Catalog, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    saved = save_artifact(tmp_path / "hybrid", _hybrid(tiny_encoder_dir), Thresholds())
    files = json.loads((saved / "config.json").read_text())["files"]
    assert "ranker.txt" in files and "transformer.encoder.config.json" in files
    assert all((saved / name).is_file() for name in files)

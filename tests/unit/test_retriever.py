"""The dense catalogue retriever: what it scores, its evidence, the disk cache of name vectors, and a state
round trip. A small stand-in catalogue keeps the names few; the encoder is the packaged MiniLM."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.artifact import export_fast_path, load_artifact, save_artifact
from models.decision import Thresholds
from models.errors import ArtifactError
from models.fast_encoder import OnnxEncoder, export_encoder
from models.retriever import CatalogRetriever, RetrieverSettings, SentenceEncoder
from tests.stand_in_catalog import StandInCatalog

NOTE = "Seen for a heart attack two days ago.\nHis blood pressure has been high for years.\nNo injuries."


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory) -> CatalogRetriever:
    return CatalogRetriever.build(StandInCatalog(), systems=("ICD-10-CM",), cache=tmp_path_factory.mktemp("cache"),
                                  progress=False)


def test_codes_are_scored_by_meaning_with_the_sentence_as_evidence(retriever: CatalogRetriever) -> None:
    assert retriever.codes == ["I10", "I21.9", "S72.90XA"] and set(retriever.code_systems) == {"ICD-10-CM"}
    probs, (source,) = retriever.score([NOTE])
    assert probs.shape == (1, 3) and ((probs >= 0) & (probs <= 1)).all()
    np.testing.assert_array_equal(retriever.probs([NOTE]), probs)
    i10, i21, s72 = probs[0]
    assert i21 > s72 and i10 > s72
    spans = source.evidence([0, 1])
    assert "blood pressure" in spans[0].text and "heart attack" in spans[1].text
    assert NOTE[spans[1].start:spans[1].end] == spans[1].text


def test_name_vectors_are_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = CatalogRetriever.build(StandInCatalog(), systems=("ICD-10-CM",), cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("names-*.npy"))) == 1

    def no_embedding(self, texts, progress=False):
        raise AssertionError("the names were embedded again")

    monkeypatch.setattr(SentenceEncoder, "embed", no_embedding)
    again = CatalogRetriever.build(StandInCatalog(), systems=("ICD-10-CM",), cache=tmp_path, progress=False)
    np.testing.assert_array_equal(again.name_vectors, first.name_vectors)


def test_state_round_trip_gives_identical_scores(retriever: CatalogRetriever) -> None:
    state = retriever.to_state()
    tensors = state.tensors
    assert tensors["name_vectors"].dtype == np.float16 and len(tensors["name_code"]) == 5  # 3 descriptions, 2 terms
    loaded = CatalogRetriever.from_state(state)
    np.testing.assert_array_equal(loaded.probs([NOTE]), retriever.probs([NOTE]))
    with pytest.raises(ArtifactError, match="retriever"):
        CatalogRetriever.from_state(replace(state, tensors={"name_code": tensors["name_code"]}))


def test_names_out_of_code_order_are_refused() -> None:
    with pytest.raises(ArtifactError, match="grouped by code"):
        CatalogRetriever(RetrieverSettings(), ["A", "B"], ["ICD-10-CM"] * 2, np.array([1, 0]), np.zeros((2, 384)),
                         encoder=object())


def test_onnx_sentence_encoder_matches_pytorch(tiny_encoder_dir, catalog, tmp_path: Path) -> None:
    settings = RetrieverSettings(encoder=str(tiny_encoder_dir))
    built = CatalogRetriever.build(StandInCatalog(), settings, systems=("ICD-10-CM",), cache=tmp_path / "cache",
                                   progress=False)
    saved = save_artifact(tmp_path / "retriever", built, Thresholds(), model_version="tiny-retriever")
    written = export_fast_path(saved, scorer=built)
    assert sorted(p.name for p in written) == ["encoder.int8.onnx", "encoder.onnx"]
    reference = load_artifact(saved, catalog, runtime="torch").scorer
    fast = load_artifact(saved, catalog, runtime="onnx").scorer
    assert (reference.runtime, fast.runtime) == ("torch", "onnx")
    np.testing.assert_allclose(fast.probs([NOTE]), reference.probs([NOTE]), atol=0.05)


def test_fast_path_groups_sentences_by_length_without_changing_their_vectors(tiny_encoder_dir, tmp_path: Path) -> None:
    # The fp32 export, so that only the grouping and trimming could move a vector.
    encoder = SentenceEncoder(RetrieverSettings(encoder=str(tiny_encoder_dir)))
    export_encoder(encoder.model, tmp_path, quantize=False)
    long = ("Seen for a heart attack two days ago after a long walk up the hill in the cold morning air with his "
            "brother, who called the ambulance at once.")
    sentences = ["No injuries.", long, "", "Fever.",
                 "His blood pressure has been high for years."]
    reference = encoder.embed(sentences)
    encoder.fast = OnnxEncoder(tmp_path / "encoder.onnx")
    np.testing.assert_allclose(encoder.embed(sentences), reference, atol=1e-4)


def test_ivf_search_agrees_with_exact_search(retriever: CatalogRetriever) -> None:
    state = retriever.to_state()

    def ivf(neighbours: int) -> CatalogRetriever:
        return CatalogRetriever.from_state(replace(state, settings=state.settings | {"search": "ivf",
                                                                                    "neighbours": neighbours}))

    exact = retriever.probs([NOTE])[0]
    # Asked for every name, the index finds what the exact search does (one cluster for 5 names).
    np.testing.assert_allclose(ivf(5).probs([NOTE])[0], exact, atol=1e-5)
    assert ivf(5).score([NOTE])[1][0].evidence([1])[1].text == retriever.score([NOTE])[1][0].evidence([1])[1].text
    # Asked for fewer, a code's score comes from the sentences that reached it: never above the exact one.
    few = ivf(1).probs([NOTE])[0]
    assert (few > 0).sum() >= 2 and (few <= exact + 1e-5).all()
    assert np.argmax(few) == np.argmax(exact)
    with pytest.raises(ArtifactError, match="unknown search"):
        CatalogRetriever.from_state(replace(state, settings=state.settings | {"search": "hnsw"}))

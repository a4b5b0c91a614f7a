"""The predictor over a fake scorer (the seam between model and service): decide, guidelines, evidence."""

import numpy as np

from models.decision import Thresholds
from models.predictor import Predictor
from models.text import Segment


class FakeScorer:
    codes = ("E11.9", "S02.0XX", "E10.9", "0DJD8ZZ")
    code_systems = ("ICD-10-CM", "ICD-10-CM", "ICD-10-CM", "ICD-10-PCS")

    def probs(self, texts):
        return np.tile(np.array([0.9, 0.8, 0.7, 0.1], dtype=np.float32), (len(texts), 1))

    def score(self, texts):
        return self.probs(texts), [FirstWordEvidence(text) for text in texts]


class FirstWordEvidence:
    def __init__(self, text):
        self.text = text

    def evidence(self, code_indices):
        return {i: Segment(0, 5, self.text[:5]) if i == 0 else None for i in code_indices}


def test_predictor_flags_and_filters(catalog) -> None:
    thresholds = Thresholds(accept=0.6, suggest=0.05, review_band=0.3)
    served = Predictor(FakeScorer(), catalog, thresholds, "fake", valid_only=True).predict("Diabetes.", top_k=4)
    assert [c.code for c in served.codes] == ["E11.9", "E10.9", "0DJD8ZZ"]
    e119, e109, proc = served.codes
    assert e119.evidence[0].start == 0 and e119.evidence[0].end == 5 and e109.evidence == []
    assert "excludes1:E10.9" in e119.warnings and "excludes1:E11.9" in e109.warnings
    assert e119.accepted and e109.accepted and not proc.accepted
    assert served.needs_review  # two accepted codes exclude each other
    alone = Predictor(FakeScorer(), catalog, thresholds, "fake", valid_only=True).predict("x", top_k=1)
    assert [c.code for c in alone.codes] == ["E11.9"] and not alone.needs_review
    assert e119.description == "Type 2 diabetes mellitus without complications"
    everything = Predictor(FakeScorer(), catalog, thresholds, "fake").predict("Diabetes.", top_k=4)
    unknown = next(c for c in everything.codes if c.code == "S02.0XX")
    assert not unknown.valid and unknown.warnings == ["not_in_catalogue"]
    only_pcs = Predictor(FakeScorer(), catalog, thresholds, "fake").predict("x", systems=["ICD-10-PCS"])
    assert [c.code for c in only_pcs.codes] == ["0DJD8ZZ"] and only_pcs.needs_review  # nothing accepted


def test_a_batch_is_scored_once_with_its_evidence(catalog) -> None:
    calls: list[list[str]] = []

    class Counting(FakeScorer):
        def probs(self, texts):
            raise AssertionError("the predictor scores through score(), once")

        def score(self, texts):
            calls.append(list(texts))
            return np.tile(np.array([0.9, 0.8, 0.7, 0.1], dtype=np.float32), (len(texts), 1)), \
                [FirstWordEvidence(text) for text in texts]

    predictor = Predictor(Counting(), catalog, Thresholds(accept=0.6, suggest=0.05, review_band=0.3), "fake")
    first, second = predictor.predict_batch(["Diabetes.", "Pain"], top_k=4)
    assert calls == [["Diabetes.", "Pain"]]
    assert first.codes[0].evidence[0].end == 5 and second.codes[0].evidence[0].end == 5

"""Micro-batching: concurrent notes share a model pass; answers are the ones predict() gives alone."""

from __future__ import annotations

import threading

import pytest

from models.catalog import Catalog
from models.errors import InputError
from service.batcher import MicroBatcher
from tests.service_fixtures import keyword_predictor

NOTES = ["Essential hypertension.", "Possible pneumonia.", "Appendectomy.", "Type 2 diabetes and hypertension."]


class _Counting:
    """A predictor wrapper that counts predict_batch calls and their sizes."""

    def __init__(self, inner) -> None:
        self.inner, self.sizes = inner, []
        self.gate = threading.Event()

    def predict_batch(self, texts, top_k=10, systems=None):
        self.gate.wait(5)  # hold the first batch so that the others queue up behind it
        self.sizes.append(len(texts))
        return self.inner.predict_batch(texts, top_k=top_k, systems=systems)

    def predict(self, text, top_k=10, systems=None):
        return self.inner.predict(text, top_k=top_k, systems=systems)


def test_concurrent_notes_are_batched_and_answered_like_single_calls(catalog: Catalog) -> None:
    predictor = keyword_predictor(catalog)
    counting = _Counting(predictor)
    batcher = MicroBatcher(max_batch=8, max_wait_ms=50)
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        results[i] = batcher.predict(counting, NOTES[i % len(NOTES)], 5, None)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    counting.gate.set()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert len(results) == 12 and sum(counting.sizes) == 12
    assert max(counting.sizes) > 1 and len(counting.sizes) < 12  # some notes shared a pass
    for i, prediction in results.items():
        assert prediction == predictor.predict(NOTES[i % len(NOTES)], top_k=5)


def test_a_bad_note_fails_alone_and_groups_keep_their_options(catalog: Catalog) -> None:
    predictor = keyword_predictor(catalog)
    batcher = MicroBatcher(max_batch=8, max_wait_ms=30)
    outcomes: dict[str, object] = {}

    def ask(name: str, text: str, top_k: int, systems) -> None:
        try:
            outcomes[name] = batcher.predict(predictor, text, top_k, systems)
        except InputError as exc:
            outcomes[name] = exc

    jobs = [("bad", "   ", 5, None), ("good", "Essential hypertension.", 5, None),
            ("pcs", "Appendectomy and hypertension.", 5, ["ICD-10-PCS"]), ("one", NOTES[3], 1, None)]
    threads = [threading.Thread(target=ask, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert isinstance(outcomes["bad"], InputError)
    assert [c.code for c in outcomes["good"].codes] == ["I10"]
    assert [c.code for c in outcomes["pcs"].codes] == ["0DTJ4ZZ"]
    assert len(outcomes["one"].codes) == 1
    with pytest.raises(InputError):
        MicroBatcher().predict(predictor, "", 5, None)
    # A closed batcher starts again on the next note (an app can be started twice).
    assert [c.code for c in batcher.predict(predictor, "Essential hypertension.", 5, None).codes] == ["I10"]
    batcher.close()

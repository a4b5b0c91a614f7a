"""Coalescing: concurrent calls share batched calls; each caller gets its own results, or its own error."""

from __future__ import annotations

import threading

import pytest

from models.batching import Coalescer
from models.catalog import Catalog
from models.predictor import Predictor
from tests.service_fixtures import keyword_predictor


class _Squares:
    """fn(items) -> squares; records the size of every call; the first call waits for a gate."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.gate.wait(5)  # hold the first batch so that the others queue up behind it
        self.sizes.append(len(items))
        self.threads.add(threading.current_thread().name)
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return [i * i for i in items]


def _ask_concurrently(coalescer: Coalescer, calls: list[list[int]], fn: _Squares) -> dict[int, object]:
    results: dict[int, object] = {}

    def ask(n: int) -> None:
        try:
            results[n] = coalescer(calls[n])
        except ValueError as exc:
            results[n] = exc

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    fn.gate.set()
    for thread in threads:
        thread.join(10)
    return results


def test_concurrent_calls_share_batches_and_get_their_own_results() -> None:
    fn = _Squares()
    coalescer = Coalescer(fn, max_items=5, max_wait_ms=50, name="squares")
    calls = [[n, n + 100] if n % 3 == 0 else [n] for n in range(12)]  # 16 items from 12 callers
    results = _ask_concurrently(coalescer, calls, fn)
    coalescer.close()
    assert results == {n: [i * i for i in items] for n, items in enumerate(calls)}
    assert sum(fn.sizes) == 16 and coalescer.items == 16
    assert max(fn.sizes) > 1 and len(fn.sizes) < 12  # some callers shared a call
    assert max(fn.sizes) <= 5 + 1  # a batch closes at max_items (a 2-item call may top it up by one)
    assert fn.threads == {"squares"}  # fn ran in the worker only


def test_a_failing_caller_fails_alone() -> None:
    fn = _Squares()
    coalescer = Coalescer(fn, max_items=8, max_wait_ms=50)
    results = _ask_concurrently(coalescer, [[1], [-1], [2, 3], [4]], fn)
    coalescer.close()
    assert isinstance(results[1], ValueError)
    assert results[0] == [1] and results[2] == [4, 9] and results[3] == [16]


def test_after_close_calls_run_unbatched_in_their_own_thread() -> None:
    fn = _Squares()
    fn.gate.set()
    coalescer = Coalescer(fn, name="squares")
    assert coalescer([3]) == [9] and fn.threads == {"squares"}
    coalescer.close()
    assert coalescer([4]) == [16] and threading.current_thread().name in fn.threads
    assert coalescer([]) == []
    with pytest.raises(ValueError):
        coalescer([-2])
    with pytest.raises(ValueError, match="max_items"):
        Coalescer(fn, max_items=0)


def test_a_predictor_without_a_transformer_has_nothing_to_batch(catalog: Catalog) -> None:
    predictor: Predictor = keyword_predictor(catalog)
    assert predictor.batch_concurrent_calls(4, 0) == 0
    predictor.close()
    assert [c.code for c in predictor.predict("Essential hypertension.", top_k=3).codes] == ["I10"]

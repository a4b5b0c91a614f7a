"""Coalescing: concurrent calls of a batch function, from many threads, run as fewer, larger calls.

Concurrent requests of a service arrive one note each. A `Coalescer` wraps `fn(items) -> results` (one result per item): each
caller hands over its items and waits; one worker thread takes the first waiting call, gathers whatever
else arrives within `max_wait_ms` (up to `max_items` items), makes one `fn` call for all of them, and
hands each caller its own results. A lone caller waits at most `max_wait_ms`; under load, batches form
while `fn` is busy. Only the worker thread runs `fn`, so the model's own threads are never
oversubscribed, while everything else a caller does (the other scorers, the ranker, decisions) runs in
the callers' threads, in parallel with the next batch. On a 2-core CPU that overlap, more than the
larger passes, is what the batching gains (see docs/performance.md).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Call(Generic[Item]):
    items: Sequence[Item]
    future: Future = field(default_factory=Future)


class Coalescer(Generic[Item, Result]):
    """`coalescer(items)` returns `fn(items)`, computed in one worker thread together with other callers'."""

    def __init__(self, fn: Callable[[list[Item]], Sequence[Result]], max_items: int = 16,
                 max_wait_ms: float = 2.0, name: str = "coalescer") -> None:
        if max_items < 1 or max_wait_ms < 0:
            raise ValueError(f"max_items must be >= 1 and max_wait_ms >= 0, got {max_items} and {max_wait_ms}")
        self.fn = fn
        self.max_items = max_items
        self.max_wait = max_wait_ms / 1000
        self.name = name
        self._calls: queue.Queue[_Call | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0  # fn calls made by the worker
        self.items = 0  # items they covered

    def __call__(self, items: Sequence[Item]) -> list[Result]:
        """fn(items), batched with other threads' items. Raises what fn raised for these items."""
        return self.submit(items).result()

    def submit(self, items: Sequence[Item]) -> Future:
        """Queue the items and return at once: the future's result is fn(items), batched as `__call__`."""
        call: _Call[Item] = _Call(items)
        with self._lock:
            queued = bool(items) and not self._closed
            if queued:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
                self._calls.put(call)
        if not queued:
            # Nothing to do, or closed: computed now, unbatched, in the caller's own thread.
            try:
                call.future.set_result(list(self.fn(list(items))) if items else [])
            except Exception as exc:  # noqa: BLE001 - raised by result(), as from the worker
                call.future.set_exception(exc)
        return call.future

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the calls already queued; later calls run unbatched in their own thread."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._calls.put(None)
        if thread is not None:
            thread.join(timeout)

    def _gather(self, first: _Call) -> tuple[list[_Call], bool]:
        """The calls of one batch, and whether the worker was asked to stop."""
        calls, count = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_items:
            remaining = deadline - time.monotonic()
            try:
                call = self._calls.get(timeout=remaining) if remaining > 0 else self._calls.get_nowait()
            except queue.Empty:
                break
            if call is None:
                return calls, True
            calls.append(call)
            count += len(call.items)
        return calls, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._calls.get()
            if first is None:
                break
            calls, stop = self._gather(first)
            self._serve(calls)
        # Calls that slipped in before close() are still answered.
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                self._serve([call])

    def _serve(self, calls: list[_Call]) -> None:
        items = [item for call in calls for item in call.items]
        try:
            results = list(self.fn(items))
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: fn returned {len(results)} results for {len(items)} items")
        except Exception as exc:  # noqa: BLE001 - handed to the waiting callers
            if len(calls) == 1:
                calls[0].future.set_exception(exc)
                return
            # One caller's bad items must not fail the others: each call again, alone.
            for call in calls:
                self._serve([call])
            return
        self.batches += 1
        self.items += len(items)
        start = 0
        for call in calls:
            call.future.set_result(results[start : start + len(call.items)])
            start += len(call.items)


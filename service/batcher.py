"""Micro-batching: notes of concurrent requests scored together, in one model pass.

Each request thread hands its note to one inference thread and waits for its result. The inference thread
takes the first waiting note, gathers whatever else arrives within `max_wait_ms` (at most `max_batch`
notes), and scores each group of notes that ask for the same `top_k` and code systems with one
`predict_batch` call. A lone request waits at most `max_wait_ms`; under load, batches form while the model
is busy. One inference thread also means the model's own threads are never oversubscribed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from models.errors import InputError
from models.predictor import Prediction, Predictor

logger = logging.getLogger("service.batcher")


@dataclass
class _Job:
    predictor: Predictor
    text: str
    top_k: int
    systems: tuple[str, ...]
    future: Future = field(default_factory=Future)

    @property
    def group(self) -> tuple:
        return id(self.predictor), self.top_k, self.systems


class MicroBatcher:
    """Coalesces single-note predictions of concurrent requests into batches."""

    def __init__(self, max_batch: int = 16, max_wait_ms: float = 2.0) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.notes = 0

    def predict(self, predictor: Predictor, text: str, top_k: int, systems: list[str] | None) -> Prediction:
        """What `predictor.predict` would return, computed in a batch with other waiting notes.

        Raises:
            InputError: the note (not its batch-mates) is invalid; any error of the model itself.
        """
        job = _Job(predictor, text, top_k, tuple(systems or ()))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                # Started on first use (and again after close): an app may be started and stopped twice.
                self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
                self._thread.start()
            self._jobs.put(job)
        return job.future.result()

    def close(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._jobs.put(None)
                self._thread.join(timeout=5)
            self._thread = None

    def _gather(self, first: _Job) -> list[_Job]:
        jobs = [first]
        deadline = time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # stop after this batch
                break
            jobs.append(job)
        return jobs

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            jobs = self._gather(first)
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.group, []).append(job)
            for group in groups.values():
                self._score(group)
            self.batches += 1
            self.notes += len(jobs)

    @staticmethod
    def _score(group: list[_Job]) -> None:
        head = group[0]
        try:
            predictions = head.predictor.predict_batch([j.text for j in group], top_k=head.top_k,
                                                        systems=list(head.systems) or None)
        except InputError as exc:
            if len(group) == 1:
                head.future.set_exception(exc)
                return
            # One bad note must not fail its batch-mates: score them one by one.
            for job in group:
                MicroBatcher._score([job])
            return
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request, which maps it
            for job in group:
                job.future.set_exception(exc)
            return
        for job, prediction in zip(group, predictions):
            job.future.set_result(prediction)


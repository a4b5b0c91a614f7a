"""Prometheus metrics and structured JSON logs with a request id.

Metric labels are route templates, methods, statuses, code systems and model versions: never note text
or anything taken from it. With several uvicorn workers, `python -m service` points
`PROMETHEUS_MULTIPROC_DIR` at a shared folder and `/metrics` aggregates every worker.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable
from contextvars import ContextVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

REQUEST_LATENCY = Histogram(
    "coder_request_duration_seconds", "HTTP request latency", ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
NOTES_SERVED = Counter("coder_notes_served_total", "Notes coded", ["needs_review"])
CODES_SUGGESTED = Counter("coder_codes_suggested_total", "Codes returned to callers", ["system", "accepted"])
MODEL_INFO = Gauge("coder_model_info", "The model in service (value 1; models served before it, 0)",
                   ["model_version"], multiprocess_mode="liveall")


def new_request_id(given: str | None) -> str:
    """The caller's X-Request-ID when it is a sane ASCII token, else a fresh one (it goes into logs and back
    into a header, where only ASCII is safe)."""
    if given and len(given) <= 100 and all(ch.isascii() and (ch.isalnum() or ch in "-_.:") for ch in given):
        return given
    return uuid.uuid4().hex


_versions_served: set[str] = set()


def set_model_version(version: str) -> None:
    """Report `version` as the model in service (1) and the versions served before it as 0."""
    # Not MODEL_INFO.clear(): with several workers it forgets only the in-memory series, so the old
    # version stays 1 in this worker's multiprocess file (and it warns on stderr, outside the JSON logs).
    for old in _versions_served - {version}:
        MODEL_INFO.labels(model_version=old).set(0)
    _versions_served.add(version)
    MODEL_INFO.labels(model_version=version).set(1)


def count_served(needs_review: bool, codes: list[tuple[str, bool]]) -> None:
    NOTES_SERVED.labels(needs_review=str(needs_review).lower()).inc()
    for system, accepted in codes:
        CODES_SUGGESTED.labels(system=system, accepted=str(accepted).lower()).inc()


class _QueueDepth:
    """Reads the queue depth from the database at scrape time, so every worker reports the same number."""

    def __init__(self, depth: Callable[[], int]) -> None:
        self.depth = depth

    def collect(self):
        family = GaugeMetricFamily("coder_review_queue_depth", "Review items waiting for a coder")
        family.add_metric([], float(self.depth()))
        yield family


def render_metrics(queue_depth: Callable[[], int]) -> tuple[bytes, str]:
    """The exposition text: this process's (or every worker's) metrics plus the queue depth."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    depth_registry = CollectorRegistry()
    depth_registry.register(_QueueDepth(queue_depth))
    return generate_latest(registry) + generate_latest(depth_registry), CONTENT_TYPE_LATEST


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.__dict__.pop("color_message", None)  # uvicorn's terminal-coloured copy of the message
        return True


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr, each with the request id; uvicorn's access log is replaced by ours."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}{request_id}", style="{",
                                       rename_fields={"levelname": "level", "asctime": "time"}))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.captureWarnings(True)  # a library's warning becomes a JSON line too, not bare text on stderr

"""The contract every scorer offers, and the optional abilities some have, as protocols checked with
`isinstance` (not `hasattr` probes scattered through the callers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from models.text import Segment


@runtime_checkable
class Scorer(Protocol):
    """What every coder (linear model, catalogue matcher, transformer, hybrid, ...) offers the predictor:
    its output columns (`codes`, each with its system) and, per note, a score per column and the text
    that supports a code."""

    codes: list[str]
    code_systems: list[str]

    def probs(self, texts: list[str]) -> np.ndarray: ...

    def evidence(self, text: str, code_indices: list[int]) -> dict[int, Segment | None]: ...


@runtime_checkable
class CompositeScorer(Protocol):
    """A scorer made of named parts (the hybrid); `proposers` are the parts whose columns are codes."""

    components: dict[str, Any]

    def proposers(self) -> dict[str, Any]: ...


@runtime_checkable
class DeferredScorer(Protocol):
    """A scorer that can start a pass and be asked for its result later (the coalescing transformer), so
    that the caller's thread scores with the other parts meanwhile."""

    def probs_later(self, texts: list[str]) -> Callable[[], np.ndarray]: ...


@runtime_checkable
class CoalescingScorer(Protocol):
    """A scorer that can share one model pass among concurrent callers, and stop doing so."""

    def coalesce(self, max_notes: int, max_wait_ms: float) -> Any: ...

    def close(self) -> None: ...


@runtime_checkable
class RuntimeScorer(Protocol):
    """A scorer that runs on a named runtime (torch or onnx)."""

    @property
    def runtime(self) -> str: ...


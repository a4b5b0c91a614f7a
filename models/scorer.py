"""The contract every scorer offers, and the optional abilities some have, as protocols checked with
`isinstance` (not `hasattr` probes scattered through the callers).

Every scorer kind (linear, matcher, transformer, neighbors, groups, retriever, hybrid) is stored the same
way, as scikit-learn estimators and setfit models are: `to_state()` gives a `ScorerState` (plain data,
never a pickle) and the class method `from_state(state, context)` builds the scorer back from it. The
artifact (`models.artifact`) writes and reads states; it knows the kinds through one registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from models.errors import ArtifactError
from models.text import Segment

SYSTEMS = ("ICD-10-CM", "ICD-10-PCS")  # the code systems, in the order of every scorer's output columns


@dataclass
class ScorerState:
    """A scorer as data. The artifact keeps `settings` in config.json, `tensors` in weights.safetensors,
    `parts` (other JSON-able data) in parts.json, `labels` in labels.json and each of `files` as a file of
    its own (file name -> content)."""

    kind: str
    settings: dict
    systems: list[str]  # the code systems it scores
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    parts: dict = field(default_factory=dict)
    # Its output columns by system, each sorted (outputs follow SYSTEMS, then this order); None where the
    # scorer builds them itself (the matcher from the catalogue, the hybrid from its components).
    labels: dict[str, list[str]] | None = None
    files: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def with_labels(cls, kind: str, scorer: Any, settings: dict, tensors: dict[str, np.ndarray] | None = None,
                    parts: dict | None = None, files: dict[str, bytes] | None = None) -> ScorerState:
        """The state of a scorer whose code vocabulary is stored with it.

        Raises:
            ArtifactError: the scorer's columns are not grouped by system in SYSTEMS order, sorted within each.
        """
        labels: dict[str, list[str]] = {s: [] for s in SYSTEMS}
        for code, system in zip(scorer.codes, scorer.code_systems):
            if system not in labels:
                raise ArtifactError(f"unknown code system {system!r}; expected one of {list(SYSTEMS)}")
            labels[system].append(code)
        for system, codes in labels.items():
            if codes != sorted(codes):
                raise ArtifactError(f"{system} labels are not sorted")
        if [c for s in SYSTEMS for c in labels[s]] != list(scorer.codes):
            raise ArtifactError(f"the columns are not grouped by code system in the order {list(SYSTEMS)}")
        return cls(kind, settings, [s for s in SYSTEMS if labels[s]], tensors or {}, parts or {}, labels,
                   files or {})

    def vocabulary(self) -> tuple[list[str], list[str]]:
        """(codes, code_systems) in output order.

        Raises:
            ArtifactError: the state has no labels.
        """
        if not self.labels:
            raise ArtifactError(f"the {self.kind} scorer's code vocabulary (labels) is missing")
        return ([c for s in SYSTEMS for c in self.labels.get(s, [])],
                [s for s in SYSTEMS for _ in self.labels.get(s, [])])


@dataclass(frozen=True)
class StateContext:
    """What `from_state` may need besides the state: the catalogue (the matcher is built from it, the
    hybrid's code form needs it) and the registry of kinds (the hybrid builds its components)."""

    catalog: Any = None
    kinds: Mapping[str, type] = field(default_factory=dict)

    def from_state(self, state: ScorerState) -> Any:
        """The scorer of `state`'s kind, built from it.

        Raises:
            ArtifactError: an unknown kind, or a state that does not fit it.
        """
        cls = self.kinds.get(state.kind)
        if cls is None:
            raise ArtifactError(f"unknown scorer kind {state.kind!r}; expected one of {sorted(self.kinds)}")
        return cls.from_state(state, self)

    def need_catalog(self, kind: str) -> Any:
        """The catalogue. Raises ArtifactError when the context has none."""
        if self.catalog is None:
            raise ArtifactError(f"the {kind} scorer is rebuilt from the ICD-10 catalogue; none was given")
        return self.catalog


@runtime_checkable
class EvidenceSource(Protocol):
    """What supports one note's scores: asked for some output columns, the sentence of the note behind
    each (None where no sentence stands for it). It comes with the scores, from the same pass, and lives
    as long as its caller keeps it (note text stays in process memory only, never in a log)."""

    def evidence(self, code_indices: list[int]) -> dict[int, Segment | None]: ...


class NoEvidence:
    """The evidence of a scorer whose scores no sentence stands for (the nearest training notes)."""

    def evidence(self, code_indices: list[int]) -> dict[int, Segment | None]:
        return {i: None for i in code_indices}


Scored = tuple[np.ndarray, list[EvidenceSource]]  # scores (notes, columns) and each note's evidence


@runtime_checkable
class Scorer(Protocol):
    """What every coder (linear model, catalogue matcher, transformer, hybrid, ...) offers the predictor:
    its output columns (`codes`, each with its system); per note a score per column with the evidence
    behind them (`score`), or the scores alone (`probs`); and its state (`kind`, `to_state()`,
    `from_state()`)."""

    kind: ClassVar[str]
    codes: list[str]
    code_systems: list[str]

    def score(self, texts: list[str]) -> Scored: ...

    def probs(self, texts: list[str]) -> np.ndarray: ...

    def to_state(self) -> ScorerState: ...

    @classmethod
    def from_state(cls, state: ScorerState, context: StateContext | None = None) -> Scorer: ...


@runtime_checkable
class CompositeScorer(Protocol):
    """A scorer made of named parts (the hybrid); `proposers` are the parts whose columns are codes."""

    components: dict[str, Any]

    def proposers(self) -> dict[str, Any]: ...


@runtime_checkable
class DeferredScorer(Protocol):
    """A scorer that can start a pass and be asked for its result later (the coalescing transformer), so
    that the caller's thread scores with the other parts meanwhile."""

    def score_later(self, texts: list[str]) -> Callable[[], Scored]: ...


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


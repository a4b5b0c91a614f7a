"""Scores for code groups: ICD-10-CM categories (3 characters) and ICD-10-PCS tables (4 characters).

A group has many more training examples than any one of its codes: "C34" has every lung cancer of the
training notes, whatever the site within the lung. A linear model over those groups tells the hybrid's
ranker how likely a candidate's group is, which is what lets a code never seen in training (a sibling
proposed by the catalogue matcher) rank above a code of an unlikely group. It never proposes candidates
itself: its scores are features of the candidates that other components propose.
"""

from __future__ import annotations

import numpy as np

from models.codes import category_of
from models.linear import LinearCoder, LinearEvidence, LinearSettings
from models.scorer import Scored, ScorerState, StateContext


def group_targets(targets: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
    """Each document's codes replaced by their groups (each group once)."""
    return {
        system: [list(dict.fromkeys(category_of(c, system) for c in doc)) for doc in docs]
        for system, docs in targets.items()
    }


class GroupCoder:
    """A linear model over code groups; `codes` are the groups, so its columns never become candidates."""

    kind = "groups"

    def __init__(self, linear: LinearCoder) -> None:
        self.linear = linear
        self.codes = linear.codes  # groups
        self.code_systems = linear.code_systems

    @classmethod
    def fit(cls, texts: list[str], targets: dict[str, list[list[str]]], settings: LinearSettings | None = None
            ) -> GroupCoder:
        """Train on notes and their codes (the groups are derived here)."""
        return cls(LinearCoder.fit(texts, group_targets(targets), settings, progress=False))

    def probs(self, texts: list[str]) -> np.ndarray:
        """Probability of each group, (docs, groups)."""
        return self.linear.probs(texts)

    def score(self, texts: list[str]) -> Scored:
        """Probability of each group, with the linear model's evidence for the groups."""
        return self.probs(texts), [LinearEvidence(self.linear, text) for text in texts]

    def to_state(self) -> ScorerState:
        """The state of its linear model, under its own kind."""
        state = self.linear.to_state()
        state.kind = self.kind
        return state

    @classmethod
    def from_state(cls, state: ScorerState, context: StateContext | None = None) -> GroupCoder:
        """Rebuild from what `to_state()` produced; raises ArtifactError when parts do not fit."""
        return cls(LinearCoder.from_state(state, context))

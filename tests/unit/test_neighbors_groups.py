"""The nearest-notes scorer and the code-group scorer on hand-made notes: shapes, what they score, and a
state round trip that gives identical scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.errors import ArtifactError, InputError
from models.hierarchy import GroupCoder, group_targets
from models.linear import LinearSettings
from models.neighbors import NeighborCoder, NeighborSettings

NOTES = [
    "type 2 diabetes mellitus with poor glycaemic control, metformin",
    "diabetes mellitus type 2 on metformin, neuropathy of both feet",
    "acute appendicitis, laparoscopic appendectomy performed",
    "perforated appendicitis, appendectomy and drainage of abscess",
]
TARGETS = {
    "ICD-10-CM": [["E11.65"], ["E11.42"], ["K35.80"], ["K35.32"]],
    "ICD-10-PCS": [[], [], ["0DTJ4ZZ"], ["0DTJ0ZZ", "0D9J0ZZ"]],
}


def test_neighbors_give_the_codes_of_similar_notes() -> None:
    coder = NeighborCoder.fit(NOTES, TARGETS, NeighborSettings(k=2, min_df=1))
    probs = coder.probs(["diabetes mellitus type 2, metformin", "appendicitis; appendectomy"])
    assert probs.shape == (2, len(coder.codes))
    col = {c: j for j, c in enumerate(coder.codes)}
    assert probs[0, col["E11.65"]] > 0 and probs[0, col["E11.42"]] > 0 and probs[0, col["K35.80"]] == 0
    assert probs[1, col["0DTJ4ZZ"]] > 0 and probs[1, col["E11.65"]] == 0
    # Weights are shares of the neighbours' similarity: at most 1, and a code all neighbours carry is 1.
    assert probs.max() <= 1.0 + 1e-6
    assert coder.code_systems[col["0DTJ0ZZ"]] == "ICD-10-PCS"


def test_neighbors_state_round_trip_gives_identical_scores() -> None:
    coder = NeighborCoder.fit(NOTES, TARGETS, NeighborSettings(k=3, min_df=1))
    state = coder.to_state()
    assert state.kind == "neighbors" and state.labels == {"ICD-10-CM": ["E11.42", "E11.65", "K35.32", "K35.80"],
                                                          "ICD-10-PCS": ["0D9J0ZZ", "0DTJ0ZZ", "0DTJ4ZZ"]}
    again = NeighborCoder.from_state(state)
    probe = ["appendectomy for appendicitis and type 2 diabetes"]
    np.testing.assert_array_equal(again.probs(probe), coder.probs(probe))
    with pytest.raises(ArtifactError, match="neighbour"):
        NeighborCoder.from_state(replace(state, tensors={k: v for k, v in state.tensors.items() if k != "idf"}))


def test_neighbors_keep_no_term_of_a_single_note() -> None:
    coder = NeighborCoder.fit(NOTES, TARGETS, NeighborSettings(min_df=2))
    assert "metformin" in coder.vocabulary and "glycaemic" not in coder.vocabulary


def test_neighbors_refuse_bad_training_data() -> None:
    with pytest.raises(InputError, match="no training documents"):
        NeighborCoder.fit([], TARGETS)
    with pytest.raises(InputError, match="ICD-10-CM: 1 code lists for 4 documents"):
        NeighborCoder.fit(NOTES, {"ICD-10-CM": [["E11.9"]]})


def test_group_targets_are_categories_and_tables() -> None:
    groups = group_targets(TARGETS)
    assert groups["ICD-10-CM"] == [["E11"], ["E11"], ["K35"], ["K35"]]
    assert groups["ICD-10-PCS"][3] == ["0DTJ", "0D9J"]


def test_group_coder_scores_groups_and_round_trips() -> None:
    coder = GroupCoder.fit(NOTES, TARGETS, LinearSettings(min_df=1, ngram_max=1))
    assert coder.codes == ["E11", "K35", "0D9J", "0DTJ"]  # sorted within each system, CM first
    probe = ["metformin for diabetes", "appendectomy"]
    probs = coder.probs(probe)
    col = {c: j for j, c in enumerate(coder.codes)}
    assert probs[0, col["E11"]] > probs[0, col["K35"]] and probs[1, col["0DTJ"]] > probs[1, col["E11"]]
    state = coder.to_state()
    assert state.kind == "groups"
    again = GroupCoder.from_state(state)
    np.testing.assert_array_equal(again.probs(probe), probs)

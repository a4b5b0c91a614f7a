"""Nearest coded notes: a note gets the codes of the training notes most like it, weighted by similarity.

Notes are compared as TF-IDF vectors (words and word pairs, sublinear counts, cosine similarity). A
code's score is the similarity-weighted share of the `k` nearest training notes that carry it, so a
code that two close neighbours share outranks one that a distant neighbour has. It adds what a
per-code model cannot: codes seen once or twice in training, proposed because a similar case had them.

What is stored of the training notes is their sparse TF-IDF vectors over terms that occur in at least
`min_df` notes (a word unique to one note, such as a name, is not kept), and their codes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from models.errors import ArtifactError, InputError
from models.linear import tfidf_vectorizer
from models.scorer import NoEvidence, Scored, ScorerState, StateContext


@dataclass(frozen=True)
class NeighborSettings:
    """How notes are compared and how many neighbours vote."""

    k: int = 20
    ngram_max: int = 2
    min_df: int = 2
    max_features: int = 60_000
    power: float = 2.0  # similarities are raised to this power before voting: close neighbours count more


class NeighborCoder:
    """Codes of the most similar training notes; a scorer with the linear model's interface."""

    kind = "neighbors"

    def __init__(
        self,
        settings: NeighborSettings,
        vocabulary: list[str],
        idf: np.ndarray,
        note_vectors: sp.csr_matrix,
        note_codes: sp.csr_matrix,
        codes: list[str],
        code_systems: list[str],
    ) -> None:
        if note_vectors.shape[1] != len(vocabulary) or note_codes.shape != (note_vectors.shape[0], len(codes)):
            raise ArtifactError(
                f"neighbour matrices have shapes {note_vectors.shape} and {note_codes.shape} for "
                f"{len(vocabulary)} terms and {len(codes)} codes"
            )
        self.settings = settings
        self.vocabulary = vocabulary
        self.idf = idf.astype(np.float32)
        self.note_vectors = note_vectors.astype(np.float32).tocsr()  # (train notes, terms), rows unit length
        self._note_vectors_t = self.note_vectors.T.tocsr()  # (terms, train notes)
        self.note_codes = note_codes.astype(np.float32).tocsr()  # (train notes, codes), 0/1
        self.codes = codes
        self.code_systems = code_systems
        self._vectorizer = _vectorizer(settings, vocabulary)
        self._vectorizer.idf_ = self.idf

    @classmethod
    def fit(cls, texts: list[str], targets: dict[str, list[list[str]]], settings: NeighborSettings | None = None
            ) -> NeighborCoder:
        """Index the training notes and their codes.

        Raises:
            InputError: when there are no documents, or the code lists do not match them.
        """
        settings = settings or NeighborSettings()
        if not texts:
            raise InputError("no training documents")
        vectorizer = _vectorizer(settings)
        vectors = vectorizer.fit_transform(texts)  # (docs, terms), l2-normalised rows
        codes, code_systems = [], []
        for system in sorted(targets):
            if len(targets[system]) != len(texts):
                raise InputError(f"{system}: {len(targets[system])} code lists for {len(texts)} documents")
            system_codes = sorted({c for doc in targets[system] for c in doc})
            codes += system_codes
            code_systems += [system] * len(system_codes)
        index = {(s, c): j for j, (s, c) in enumerate(zip(code_systems, codes))}
        rows, cols = [], []
        for system, docs in targets.items():
            for d, doc in enumerate(docs):
                for code in set(doc):
                    rows.append(d)
                    cols.append(index[(system, code)])
        note_codes = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(codes)))
        return cls(settings, vectorizer.get_feature_names_out().tolist(), vectorizer.idf_, vectors, note_codes,
                   codes, code_systems)

    def similarities(self, texts: list[str]) -> np.ndarray:
        """Cosine similarity of each note to each training note, (docs, train notes)."""
        features = self._vectorizer.transform(texts)  # (docs, terms)
        return np.asarray((features @ self._note_vectors_t).todense())

    def probs(self, texts: list[str]) -> np.ndarray:
        """Similarity-weighted share of the k nearest training notes that carry each code, (docs, codes)."""
        sims = self.similarities(texts)
        k = min(self.settings.k, sims.shape[1])
        out = np.zeros((len(texts), len(self.codes)), dtype=np.float32)
        for d, row in enumerate(sims):
            nearest = np.argpartition(-row, k - 1)[:k]
            weights = np.clip(row[nearest], 0, None) ** self.settings.power
            total = weights.sum()
            if total <= 0:
                continue
            out[d] = np.asarray(self.note_codes[nearest].T @ weights).ravel() / total
        return out

    def score(self, texts: list[str]) -> Scored:
        """`probs`, with no evidence: no sentence of the note stands for a neighbour's code (the hybrid's
        other components give it)."""
        return self.probs(texts), [NoEvidence() for _ in texts]

    # -- storage -------------------------------------------------------------------------
    def to_state(self) -> ScorerState:
        """The training notes' vectors and codes (sparse, as CSR parts) and the vocabulary."""
        tensors = {
            "idf": self.idf,
            **_csr_tensors("notes", self.note_vectors),
            **_csr_tensors("note_codes", self.note_codes),
        }
        return ScorerState.with_labels(self.kind, self, asdict(self.settings), tensors, {"vocabulary": self.vocabulary})

    @classmethod
    def from_state(cls, state: ScorerState, context: StateContext | None = None) -> NeighborCoder:
        """Rebuild from what `to_state()` produced; raises ArtifactError when parts do not fit."""
        codes, code_systems = state.vocabulary()
        settings, tensors = state.settings, state.tensors
        try:
            vocabulary = list(state.parts["vocabulary"])
            notes = _csr_from(tensors, "notes", len(vocabulary))
            return cls(NeighborSettings(**settings), vocabulary, tensors["idf"], notes,
                       _csr_from(tensors, "note_codes", len(codes)), codes, code_systems)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"neighbour model state is incomplete or inconsistent: {exc}") from exc


def _vectorizer(settings: NeighborSettings, vocabulary: list[str] | None = None) -> TfidfVectorizer:
    return tfidf_vectorizer(settings.ngram_max, settings.min_df, settings.max_features, vocabulary)


def _csr_tensors(name: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    return {
        f"{name}.data": matrix.data.astype(np.float32),
        f"{name}.indices": matrix.indices.astype(np.int32),
        f"{name}.indptr": matrix.indptr.astype(np.int64),
    }


def _csr_from(tensors: dict[str, np.ndarray], name: str, columns: int) -> sp.csr_matrix:
    indptr = tensors[f"{name}.indptr"]
    return sp.csr_matrix((tensors[f"{name}.data"], tensors[f"{name}.indices"], indptr),
                         shape=(len(indptr) - 1, columns))

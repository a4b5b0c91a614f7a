"""Supervised linear text model: TF-IDF n-grams and one logistic regression per code.

Fast and strong on small data. It is stored as plain arrays (vocabulary, idf, a sparse weight matrix,
intercepts), never as a pickle, so loading it runs no code from the artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from models.errors import ArtifactError, InputError
from models.scorer import Scored, ScorerState, StateContext
from models.text import Segment, fold, split_sentences


@dataclass(frozen=True)
class LinearSettings:
    """Hyper-parameters of the linear model (they travel in the artifact's config.json)."""

    ngram_max: int = 2
    min_df: int = 2
    max_features: int = 60_000
    C: float = 10.0
    class_weight: str | None = "balanced"
    keep_per_code: int = 400  # only the largest weights of each code are stored (size; measured harmless)


def tfidf_vectorizer(ngram_max: int, min_df: int, max_features: int, vocabulary: list[str] | None = None
                     ) -> TfidfVectorizer:
    """Word 1..n-grams of folded text, sublinear counts; fitted anew, or over a stored vocabulary."""
    return TfidfVectorizer(
        preprocessor=fold,
        ngram_range=(1, ngram_max),
        min_df=min_df if vocabulary is None else 1,
        max_features=max_features if vocabulary is None else None,
        sublinear_tf=True,
        vocabulary=vocabulary,
        dtype=np.float32,
    )


class LinearCoder:
    """One-vs-rest logistic regression over TF-IDF features, for one or several code systems."""

    kind = "linear"

    def __init__(
        self,
        settings: LinearSettings,
        vocabulary: list[str],
        idf: np.ndarray,
        weights: sp.csr_matrix,
        intercepts: np.ndarray,
        codes: list[str],
        code_systems: list[str],
    ) -> None:
        if weights.shape != (len(codes), len(vocabulary)) or intercepts.shape != (len(codes),):
            raise ArtifactError(
                f"linear weights have shape {weights.shape}, expected {(len(codes), len(vocabulary))}"
            )
        self.settings = settings
        self.vocabulary = vocabulary
        self.idf = idf.astype(np.float32)
        self.weights = weights.astype(np.float32).tocsr()  # (codes, features)
        self._weights_t = self.weights.T.tocsr()  # (features, codes)
        self.intercepts = intercepts.astype(np.float32)
        self.codes = codes
        self.code_systems = code_systems
        self._vectorizer = self._make_vectorizer(settings, vocabulary)
        self._vectorizer.idf_ = self.idf

    @staticmethod
    def _make_vectorizer(settings: LinearSettings, vocabulary: list[str] | None = None) -> TfidfVectorizer:
        return tfidf_vectorizer(settings.ngram_max, settings.min_df, settings.max_features, vocabulary)

    @classmethod
    def fit(
        cls,
        texts: list[str],
        targets: dict[str, list[list[str]]],
        settings: LinearSettings | None = None,
        progress: bool = True,
    ) -> LinearCoder:
        """Train on notes and their codes.

        Args:
            texts: one note per document.
            targets: per code system ("ICD-10-CM", "ICD-10-PCS"), the codes of each document.
            settings: hyper-parameters.
            progress: show a progress bar over codes.
        Raises:
            InputError: when there are no documents or no codes at all.
        """
        settings = settings or LinearSettings()
        if not texts:
            raise InputError("no training documents")
        vectorizer = cls._make_vectorizer(settings)
        features = vectorizer.fit_transform(texts)  # (docs, features)
        vocabulary = vectorizer.get_feature_names_out().tolist()
        codes: list[str] = []
        code_systems: list[str] = []
        for system in sorted(targets):
            if len(targets[system]) != len(texts):
                raise InputError(f"{system}: {len(targets[system])} code lists for {len(texts)} documents")
            system_codes = sorted({c for doc in targets[system] for c in doc})
            codes.extend(system_codes)
            code_systems.extend([system] * len(system_codes))
        if not codes:
            raise InputError("the training documents carry no codes")
        rows, cols, vals = [], [], []
        intercepts = np.zeros(len(codes), dtype=np.float32)
        doc_sets = {s: [set(doc) for doc in targets[s]] for s in targets}
        for label_idx in tqdm(range(len(codes)), desc="linear model", unit="code", disable=not progress):
            code, system = codes[label_idx], code_systems[label_idx]
            y = np.fromiter((code in doc for doc in doc_sets[system]), dtype=np.int8, count=len(texts))
            if y.all():
                intercepts[label_idx] = 10.0
                continue
            clf = LogisticRegression(C=settings.C, class_weight=settings.class_weight, solver="liblinear")
            clf.fit(features, y)
            w = clf.coef_.ravel()
            if settings.keep_per_code < w.size:
                keep = np.argpartition(-np.abs(w), settings.keep_per_code)[: settings.keep_per_code]
            else:
                keep = np.arange(w.size)
            keep = keep[w[keep] != 0]
            rows.extend([label_idx] * len(keep))
            cols.extend(keep.tolist())
            vals.extend(w[keep].tolist())
            intercepts[label_idx] = clf.intercept_[0]
        weights = sp.csr_matrix(
            (np.asarray(vals, np.float32), (rows, cols)), shape=(len(codes), len(vocabulary))
        )
        return cls(settings, vocabulary, vectorizer.idf_, weights, intercepts, codes, code_systems)

    # -- inference -----------------------------------------------------------------------
    def logits(self, texts: list[str]) -> np.ndarray:
        """Raw scores, (docs, codes)."""
        features = self._vectorizer.transform(texts)  # (docs, features)
        return np.asarray((features @ self._weights_t).todense()) + self.intercepts

    def probs(self, texts: list[str]) -> np.ndarray:
        """Probabilities after the sigmoid, (docs, codes)."""
        return 1.0 / (1.0 + np.exp(-self.logits(texts)))

    def score(self, texts: list[str]) -> Scored:
        """`probs`, and per note its evidence: for each code asked, the sentence whose features add most to
        the code's logit (computed when asked)."""
        return self.probs(texts), [LinearEvidence(self, text) for text in texts]

    def sentence_evidence(self, text: str, code_indices: list[int]) -> dict[int, Segment | None]:
        """For each code, the sentence of `text` whose features add most to the code's logit."""
        segments = split_sentences(text)
        if not segments or not code_indices:
            return {i: None for i in code_indices}
        features = self._vectorizer.transform([s.text for s in segments])  # (sentences, features)
        # Rows of the (codes, features) matrix: a CSR row slice, where a column slice of its transpose is slow.
        contrib = np.asarray((features @ self.weights[code_indices].T).todense())  # (sentences, k)
        best = contrib.argmax(axis=0)
        return {
            code_idx: (segments[int(best[j])] if contrib[best[j], j] > 0 else None)
            for j, code_idx in enumerate(code_indices)
        }

    # -- storage -------------------------------------------------------------------------
    def to_state(self) -> ScorerState:
        """The model as arrays (the sparse weights as CSR parts) and its vocabulary."""
        tensors = {
            "idf": self.idf,
            "weights.data": self.weights.data.astype(np.float32),
            "weights.indices": self.weights.indices.astype(np.int32),
            "weights.indptr": self.weights.indptr.astype(np.int64),
            "intercepts": self.intercepts,
        }
        return ScorerState.with_labels(self.kind, self, asdict(self.settings), tensors, {"vocabulary": self.vocabulary})

    @classmethod
    def from_state(cls, state: ScorerState, context: StateContext | None = None) -> LinearCoder:
        """Rebuild from what `to_state()` produced; raises ArtifactError when parts do not fit."""
        codes, code_systems = state.vocabulary()
        settings, tensors = state.settings, state.tensors
        try:
            vocabulary = list(state.parts["vocabulary"])
            weights = sp.csr_matrix(
                (tensors["weights.data"], tensors["weights.indices"], tensors["weights.indptr"]),
                shape=(len(codes), len(vocabulary)),
            )
            return cls(
                LinearSettings(**settings), vocabulary, tensors["idf"], weights, tensors["intercepts"],
                codes, code_systems,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"linear model state is incomplete or inconsistent: {exc}") from exc


@dataclass(frozen=True)
class LinearEvidence:
    """One note's evidence from a linear model, computed when asked (per sentence, for the asked codes)."""

    model: LinearCoder
    text: str

    def evidence(self, code_indices: list[int]) -> dict[int, Segment | None]:
        return self.model.sentence_evidence(self.text, code_indices)

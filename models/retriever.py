"""Dense retrieval over the whole catalogue: MiniLM sentence embeddings of code names and of a note's
sentences; a code scores the best cosine similarity between one of its names and one sentence.

It finds codes whose names share meaning but few words with the note ("heart attack" and "acute
myocardial infarction"), which the lexical catalogue matcher misses, and which a trained model cannot
propose when the code never occurred in training. The names are those the matcher uses
(`models.matcher.catalog_entries`): ICD-10-CM descriptions and inclusion terms, ICD-10-PCS descriptions and
index terms. Embedding them takes minutes on a CPU, so it is done once: the vectors are cached on disk,
keyed by the encoder and the names, and stored in a trained artifact (float16).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from models.catalog import Catalog
from models.errors import ArtifactError
from models.fast_encoder import OnnxEncoder
from models.matcher import catalog_entries
from models.scorer import Scored, ScorerState, StateContext
from models.text import Segment, SentenceEvidence, split_sentences
from models.transformer import DEFAULT_ENCODER, resolve_encoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrieverSettings:
    """The sentence encoder (a sentence-similarity model: mean pooling, unit length) and its limits."""

    encoder: str = DEFAULT_ENCODER
    max_tokens: int = 64  # a longer sentence is cut: a code name is short, and so is what matches it
    batch_size: int = 128
    # "exact": every sentence against every name (a matrix product over ~185,000 names); "ivf": an inverted
    # file index per code system (FAISS), searching the `nprobe` nearest of its clusters for each sentence's
    # `neighbours` nearest names. Codes no sentence reaches score 0.
    search: str = "exact"
    neighbours: int = 100
    nprobe: int = 32


SENTENCE_LENGTH_STEP = 16  # the fast path encodes sentences in groups whose lengths differ by less


def cache_dir() -> Path:
    """Where name embeddings are cached: $ICD10_CODER_CACHE, else the user's cache folder."""
    if os.environ.get("ICD10_CODER_CACHE"):
        return Path(os.environ["ICD10_CODER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "icd10-coder"


class SentenceEncoder:
    """Mean-pooled, unit-length embeddings from a Hugging Face encoder (as sentence-transformers does).
    With `fast` set (the encoder exported to ONNX, see `models.fast_encoder`) the note's sentences run in
    ONNX Runtime; PyTorch stays the reference, and embeds the catalogue names."""

    def __init__(self, settings: RetrieverSettings) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_encoder(settings.encoder)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
            self.model = AutoModel.from_pretrained(path).eval()
        except OSError as exc:
            raise ArtifactError(f"cannot load the encoder {settings.encoder!r}: {exc}") from exc
        self.settings = settings
        self._torch = torch
        self.fast: OnnxEncoder | None = None

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(texts, dim) float32, each row of unit length; texts are embedded shortest first, in batches."""
        from tqdm.auto import tqdm

        if self.fast is not None:
            return self._embed_fast(texts)
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        steps = range(0, len(texts), self.settings.batch_size)
        for start in tqdm(steps, desc="embedding names", unit="batch", disable=not progress):
            idx = order[start:start + self.settings.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.settings.max_tokens, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state  # (batch, tokens, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def _embed_fast(self, texts: list[str]) -> np.ndarray:
        """The ONNX encoder over sentences grouped by length, each group trimmed to its longest sentence: a
        note's sentences range from a few tokens to `max_tokens`, and padding them all to the longest
        would spend most of the pass on padding."""
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.settings.max_tokens,
                               return_tensors="np")
        mask = batch["attention_mask"]
        pooled = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows, hidden in self.fast.by_length(batch["input_ids"], mask, SENTENCE_LENGTH_STEP):
            weights = mask[rows, :hidden.shape[1], None].astype(np.float32)  # (rows, width, 1)
            pooled[rows] = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1.0)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


SEARCHES = ("exact", "ivf")


def _ivf_indexes(vectors: np.ndarray, name_code: np.ndarray, code_systems: list[str], settings: RetrieverSettings):
    """One FAISS inverted-file index (inner product) per code system, with the name ids it holds. Built
    at load from the stored vectors: k-means over a system's names takes seconds."""
    import faiss

    systems = np.asarray(code_systems)[name_code]
    out = []
    for system in dict.fromkeys(code_systems):
        name_ids = np.flatnonzero(systems == system)
        lists = int(min(max(4 * np.sqrt(len(name_ids)), 1), len(name_ids) // 39 or 1))
        quantizer = faiss.IndexFlatIP(vectors.shape[1])
        index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[name_ids])
        index.add(vectors[name_ids])
        index.nprobe = min(settings.nprobe, lists)
        out.append((index, name_ids))
    return out


class CatalogRetriever:
    """Scores every catalogue code by the best cosine similarity of one of its names to one sentence."""

    kind = "retriever"

    def __init__(self, settings: RetrieverSettings, codes: list[str], code_systems: list[str],
                 name_code: np.ndarray, name_vectors: np.ndarray, encoder: SentenceEncoder | None = None) -> None:
        if name_vectors.ndim != 2 or len(name_code) != len(name_vectors):
            raise ArtifactError(f"retriever: {len(name_code)} names for {len(name_vectors)} vectors")
        if len(name_code) and (np.any(np.diff(name_code) < 0) or name_code[-1] >= len(codes)):
            raise ArtifactError("retriever: names must be grouped by code, in code order")
        self.settings = settings
        self.codes = codes
        self.code_systems = code_systems
        self.name_code = name_code.astype(np.int32)
        self.name_vectors = np.ascontiguousarray(name_vectors, dtype=np.float32)  # (names, dim), unit rows
        # Each code's names are one run of rows: a reduce over runs gives every code's best name.
        self._starts = np.flatnonzero(np.r_[True, self.name_code[1:] != self.name_code[:-1]])
        self._run_code = self.name_code[self._starts]
        if settings.search not in SEARCHES:
            raise ArtifactError(f"retriever: unknown search {settings.search!r}; expected one of {SEARCHES}")
        self._indexes = _ivf_indexes(self.name_vectors, self.name_code, code_systems, settings) \
            if settings.search == "ivf" else []
        self._encoder = encoder or SentenceEncoder(settings)
        self._lock = threading.Lock()

    @classmethod
    def build(cls, catalog: Catalog, settings: RetrieverSettings | None = None,
              systems: tuple[str, ...] = ("ICD-10-CM", "ICD-10-PCS"), cache: Path | None = None,
              progress: bool = True) -> CatalogRetriever:
        """Embed every code name of the catalogue (or read the vectors from the disk cache)."""
        settings = settings or RetrieverSettings()
        codes, code_systems, names, name_code = [], [], [], []
        for system in systems:
            for code, description, others in sorted(catalog_entries(catalog, system)):
                for name in dict.fromkeys([description, *others]):
                    names.append(name)
                    name_code.append(len(codes))
                codes.append(code)
                code_systems.append(system)
        encoder = SentenceEncoder(settings)
        digest = hashlib.sha256("\0".join([settings.encoder, str(settings.max_tokens), *names]).encode()).hexdigest()
        path = (cache or cache_dir()) / f"names-{digest[:24]}.npy"
        if path.is_file():
            vectors = np.load(path)
        else:
            logger.info("retriever: embedding %d names of %d codes (once; cached in %s)", len(names), len(codes),
                        path.parent)
            vectors = encoder.embed(names, progress=progress).astype(np.float16)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            os.replace(tmp, path)
        return cls(settings, codes, code_systems, np.asarray(name_code), vectors, encoder)

    @property
    def encoder(self) -> SentenceEncoder:
        """The sentence encoder (its PyTorch module is what `models.artifact.export_fast_path` exports)."""
        return self._encoder

    @property
    def runtime(self) -> str:
        """Where the note's sentences are encoded: "onnx" or "torch"."""
        return "onnx" if self._encoder.fast is not None else "torch"

    def _score(self, text: str) -> tuple[np.ndarray, SentenceEvidence]:
        segments = split_sentences(text)
        if not segments:
            return np.zeros(len(self.codes), np.float32), SentenceEvidence(segments, np.full(len(self.codes), -1))
        with self._lock:  # one torch pass at a time: request threads share the two cores anyway
            sentences = self._encoder.embed([s.text for s in segments])  # (sentences, dim)
        if self._indexes:
            return self._score_ivf(sentences, segments)
        sims = sentences @ self.name_vectors.T  # (sentences, names)
        best_sentence_of_name = sims.argmax(axis=0)
        best_name = sims[best_sentence_of_name, np.arange(sims.shape[1])]  # (names,)
        run_best = np.maximum.reduceat(best_name, self._starts)
        scores = np.zeros(len(self.codes), np.float32)
        scores[self._run_code] = np.clip(run_best, 0.0, 1.0)
        # The sentence behind each code's best name.
        winner = np.flatnonzero(best_name == np.repeat(run_best, np.diff(np.r_[self._starts, len(best_name)])))
        best_sentence = np.full(len(self.codes), -1, dtype=np.int64)
        best_sentence[self.name_code[winner[::-1]]] = best_sentence_of_name[winner[::-1]]
        return scores, SentenceEvidence(segments, best_sentence)

    def _score_ivf(self, sentences: np.ndarray, segments: list[Segment]) -> tuple[np.ndarray, SentenceEvidence]:
        sims, names, sentence_of = [], [], []
        for index, name_ids in self._indexes:
            found_sims, found = index.search(sentences, self.settings.neighbours)  # (sentences, neighbours)
            hit = found >= 0
            sims.append(found_sims[hit])
            names.append(name_ids[found[hit]])
            sentence_of.append(np.nonzero(hit)[0])
        sims, names, sentence_of = np.concatenate(sims), np.concatenate(names), np.concatenate(sentence_of)
        codes = self.name_code[names]
        order = np.argsort(-sims, kind="stable")
        _, first = np.unique(codes[order], return_index=True)  # each code's best hit
        best = order[first]
        scores = np.zeros(len(self.codes), np.float32)
        scores[codes[best]] = np.clip(sims[best], 0.0, 1.0)
        best_sentence = np.full(len(self.codes), -1, dtype=np.int64)
        best_sentence[codes[best]] = sentence_of[best]
        return scores, SentenceEvidence(segments, best_sentence)

    def score(self, texts: list[str]) -> Scored:
        """Best name-to-sentence cosine similarity per code, clipped to [0, 1], (docs, codes), not calibrated
        probabilities; per note, the sentence that came closest to one of each code's names."""
        out = np.zeros((len(texts), len(self.codes)), dtype=np.float32)
        sources = []
        for d, text in enumerate(texts):
            out[d], evidence = self._score(text)
            sources.append(evidence)
        return out, sources

    def probs(self, texts: list[str]) -> np.ndarray:
        """The scores of `score` alone."""
        return self.score(texts)[0]

    # -- storage -------------------------------------------------------------------------
    def to_state(self) -> ScorerState:
        """The name vectors (float16) and each name's code."""
        tensors = {"name_vectors": self.name_vectors.astype(np.float16), "name_code": self.name_code}
        return ScorerState.with_labels(self.kind, self, asdict(self.settings), tensors)

    @classmethod
    def from_state(cls, state: ScorerState, context: StateContext | None = None) -> CatalogRetriever:
        """Rebuild from what `to_state()` produced; raises ArtifactError when parts do not fit."""
        codes, code_systems = state.vocabulary()
        try:
            return cls(RetrieverSettings(**state.settings), codes, code_systems, state.tensors["name_code"],
                       state.tensors["name_vectors"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"retriever state is incomplete or inconsistent: {exc}") from exc

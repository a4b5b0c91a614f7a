"""The transformer's fast path: its encoder exported to ONNX, int8-quantised, run by ONNX Runtime.

`OnnxRuntime` is the transformer's second runtime (`models.transformer.TorchRuntime` is the first, the
reference). The label-wise attention head runs on each note's real tokens only: int8 in ONNX Runtime
(`OnnxHead`, built from the weights at load), or PyTorch's `LabelAttention.packed` in fp32 or bf16. Windows
are encoded in groups of similar length, so padding costs little. `export_encoder` checks the exported graph
against PyTorch before it writes anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from models.errors import ArtifactError
from models.transformer import NoteScores, PlmIcdModel

RUNTIMES = ("auto", "torch", "onnx")  # auto: onnx when the artifact has an exported encoder
# The fast path's head: auto is int8 in ONNX Runtime (OnnxHead); float32 and bfloat16 run PyTorch's packed
# head. bf16 is no safe default: measured 4x faster than fp32 on an AMD EPYC, 1.6x slower on an Intel Xeon,
# both with AVX512-BF16. The reference path is always float32 PyTorch.
HEAD_PRECISIONS = ("auto", "int8", "float32", "bfloat16")
FP32_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"
# Encoders whose graph ONNX Runtime's transformer optimizer fuses (model_type "bert" covers them).
FUSABLE = ("bert", "roberta", "xlm-roberta", "camembert")
# Fusions left out, in the export and in the session: ONNX Runtime 1.32's CPU SkipLayerNormalization took
# a quarter of MiniLM's int8 time, and the residual Add + LayerNormalization it replaces are faster
# (measured 24.5 -> 18-21 ms for 2 windows of 256 tokens, 2 threads).
SLOW_FUSIONS = ("SkipLayerNormFusion",)
FP32_FFN_LAYERS = 2  # see _kept_in_fp32
LENGTH_STEP = 32  # windows are encoded in groups whose lengths differ by less than this
_QUANTIZER_LOCK = threading.Lock()


class _LastHidden(nn.Module):
    """The encoder as a function of ids and mask only (what the exporter traces)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_encoder(encoder: nn.Module, directory: str | Path, prefix: str = "", quantize: bool = True,
                   tolerance: float = 1e-3) -> list[Path]:
    """Write `<prefix>encoder.onnx` (and `<prefix>encoder.int8.onnx`) into `directory`.

    The encoder is traced with eager attention (the pattern ONNX Runtime's transformer optimizer
    recognises), then fused (one Attention and one BiasGelu node per layer) where ONNX Runtime knows the
    architecture. The fp32 graph must match the PyTorch encoder within `tolerance`
    on a padded probe batch, or nothing is written. Int8 uses ONNX Runtime's dynamic quantisation of the
    weights, per output channel.

    Raises:
        ArtifactError: the export fails or does not match the PyTorch encoder.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    directory = Path(directory)
    encoder = encoder.eval()
    probe_ids = torch.randint(1000, 2000, (2, 48))
    probe_mask = torch.ones_like(probe_ids)
    probe_mask[1, 20:] = 0
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=directory))
    written = []
    try:
        traced = tmp / "traced.onnx"
        _trace(encoder, probe_ids, probe_mask, traced)
        fp32 = tmp / f"{prefix}{FP32_FILE}"
        _fuse(traced, fp32, encoder.config)
        with torch.inference_mode():
            expected = _LastHidden(encoder).eval()(probe_ids, probe_mask).numpy()
        got = OnnxEncoder(fp32, threads=1)(probe_ids.numpy(), probe_mask.numpy())
        worst = float(np.abs(got - expected).max())
        if worst > tolerance:
            raise ArtifactError(f"the ONNX encoder differs from PyTorch by {worst:.2e} (> {tolerance:.0e})")
        outputs = [fp32]
        if quantize:
            int8 = tmp / f"{prefix}{INT8_FILE}"
            # Shape inference cannot type the outputs of the fused (contrib) nodes; they are all float.
            with _quiet_quantizer():
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                                 nodes_to_exclude=_kept_in_fp32(onnx.load(str(fp32))),
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            outputs.append(int8)
        for path in outputs:
            final = directory / path.name
            os.replace(path, final)
            written.append(final)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(f"cannot export the encoder to ONNX: {type(exc).__name__}: {exc}") from exc
    finally:
        for leftover in tmp.glob("*"):
            leftover.unlink()
        tmp.rmdir()
    return written


def _kept_in_fp32(model) -> list[str]:
    """The MatMul nodes left in fp32 by the int8 export: the feed-forward output projections of the
    first FP32_FFN_LAYERS layers (Hugging Face BERT-style node names; none for other names).

    Their inputs (after GELU) have the widest range, and one activation scale per tensor loses them.
    Measured on the recommended hybrid, CodiEsp dev EN, MAP P against the PyTorch path (the D changes of
    these three stay within 0.0015), each note encoded alone as a single client's are:

    | fp32 projections | 250 notes | first 200 (serve_bench) | 2 windows x 256 tokens, 2 threads |
    | none | -0.0032 | -0.0047 | 15.1 ms |
    | layer 0 | -0.0042 | -0.0049 | 19.6 ms |
    | layers 0-1 | -0.0015 | -0.0038 | 21.4 ms |

    Layers 0-1 keep the most margin under the 0.005 the fast path may lose, and `eval.serve_bench` gave
    no lower throughput for them (28.4 notes/s at 8 clients against 27.0-29.0 with layer 0 alone, AMD
    EPYC, 2026-11-27). Keeping layer 0's attention output or feed-forward input projection in fp32 as
    well did not help P. The loss moves by a few thousandths with the notes sharing a pass (activation
    scales are per pass) and from one trained artifact to the next: an earlier artifact, notes in passes
    of 8, lost 0.0051 with none, 0.0006 with layer 0 and gained 0.0031 with layers 0-1.
    """
    wanted = {f"layer.{i}/output/dense/MatMul" for i in range(FP32_FFN_LAYERS)}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and any(node.name.endswith(w) for w in wanted)]


def _trace(encoder: nn.Module, probe_ids: torch.Tensor, probe_mask: torch.Tensor, path: Path) -> None:
    """The encoder as an ONNX graph with dynamic batch and length, its attention in eager form.

    PyTorch's TorchScript exporter is used: its graph of eager attention is the one ONNX Runtime fuses
    (the dynamo exporter's is correct but keeps attention as loose MatMul/Softmax nodes).
    """
    previous = getattr(encoder.config, "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(encoder, "set_attn_implementation")
    if switch:
        encoder.set_attn_implementation("eager")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            torch.onnx.export(  # the wrapper in eval mode: the exporter leaves the module in the mode it found
                _LastHidden(encoder).eval(), (probe_ids, probe_mask), str(path), input_names=["input_ids", "attention_mask"],
                output_names=["hidden"], opset_version=17, dynamo=False,
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "hidden")},
            )
    finally:
        if switch:
            encoder.set_attn_implementation(previous)


def _fuse(source: Path, target: Path, config) -> None:
    """ONNX Runtime's transformer fusions for BERT-like encoders; other architectures are copied as traced."""
    if getattr(config, "model_type", None) not in FUSABLE:
        os.replace(source, target)
        return
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False  # see SLOW_FUSIONS
    fused = optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, opt_level=0, optimization_options=options)
    fused.save_model_to_file(str(target))


class OnnxEncoder:
    """An exported encoder in an ONNX Runtime session: (ids, mask) -> last hidden state, as numpy."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        self.session = _session(self.path, threads)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """input_ids, attention_mask (windows, tokens) -> hidden (windows, tokens, hidden)."""
        return self.session.run(None, {"input_ids": input_ids.astype(np.int64),
                                       "attention_mask": attention_mask.astype(np.int64)})[0]

    def by_length(self, input_ids: np.ndarray, attention_mask: np.ndarray, step: int
                  ) -> list[tuple[list[int], np.ndarray]]:
        """The rows with real tokens (padding on the right) encoded in groups whose lengths differ by less
        than `step`, each group trimmed to its longest row, so padding costs at most `step` tokens a row:
        per group, (its row indices, hidden (rows, its width, hidden))."""
        lengths = attention_mask.sum(axis=1)
        groups: dict[int, list[int]] = {}
        for row in np.flatnonzero(lengths):
            groups.setdefault(-(-int(lengths[row]) // step), []).append(int(row))
        out = []
        for rows in groups.values():
            width = int(lengths[rows].max())
            out.append((rows, self(input_ids[rows, :width], attention_mask[rows, :width])))
        return out


def _session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session for the fast path. Raises ArtifactError for a file it cannot load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's threads otherwise spin after each run, taking the cores from the other work of the
    # request threads (on 2 cores that doubled a PyTorch head's time).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(SLOW_FUSIONS))
    except Exception as exc:
        raise ArtifactError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from exc


def fast_encoder_file(directory: str | Path, prefix: str = "", quantized: bool = True) -> Path | None:
    """The exported encoder of an artifact (int8 first when asked), or None when it has none."""
    names = [INT8_FILE, FP32_FILE] if quantized else [FP32_FILE]
    for name in names:
        path = Path(directory) / f"{prefix}{name}"
        if path.is_file():
            return path
    return None


def head_choice(precision: str) -> str:
    """The head the fast path runs for a HEAD_PRECISIONS value: "int8" (ONNX Runtime), "float32" or "bfloat16"
    (PyTorch). auto is int8.

    Raises:
        ArtifactError: an unknown precision.
    """
    if precision not in HEAD_PRECISIONS:
        raise ArtifactError(f"unknown head precision {precision!r}; expected one of {HEAD_PRECISIONS}")
    return "int8" if precision == "auto" else precision


class _OneNoteHead(nn.Module):
    """`LabelAttention.one_note` as a module the exporter traces."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.one_note(hidden)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantiser reports each tensor at INFO, and advises pre-processing at WARNING, on the
    root logger: noise in a training run's and the service's log. Raised to ERROR meanwhile (one
    quantisation at a time, so that concurrent ones restore the right level)."""
    with _QUANTIZER_LOCK:
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))
        try:
            yield
        finally:
            root.setLevel(level)


class OnnxHead:
    """The label-wise attention head, int8, in ONNX Runtime: built from the model's weights when it loads
    (a second or two), so it always matches them. Its two products per note are dynamically quantised
    (per-code weight scales), about twice as fast as fp32 PyTorch on the CPUs measured; see docs/performance.md for
    what it costs in MAP."""

    def __init__(self, head: nn.Module, threads: int = 1) -> None:
        """`threads`: ONNX Runtime threads per note. One by default: each request's thread runs its own
        note's head, so concurrent requests are the parallelism; a second thread per note cost 1-2 ms more
        CPU a note for 1.6 ms less wall time (AMD EPYC, 100 CodiEsp dev notes)."""
        from onnxruntime.quantization import QuantType, quantize_dynamic

        hidden = head.project.in_features
        with tempfile.TemporaryDirectory(prefix="onnx-head-") as folder:
            fp32, int8 = Path(folder) / "head.onnx", Path(folder) / "head.int8.onnx"
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
                torch.onnx.export(_OneNoteHead(head).eval(), (torch.zeros(8, hidden),), str(fp32),
                                  input_names=["hidden"], output_names=["logits", "best"], opset_version=17,
                                  dynamo=False, dynamic_axes={"hidden": {0: "tokens"}})
            with _quiet_quantizer():
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
            self.session = _session(int8, threads)

    def __call__(self, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """hidden (tokens, hidden) of one note -> logits (labels,), best token per label (labels,)."""
        logits, best = self.session.run(None, {"hidden": np.ascontiguousarray(hidden, dtype=np.float32)})
        return logits, best


class EncodedNote(NamedTuple):
    """One note's row of the onnx runtime's shared pass: the encoder's output, its head still to run."""

    hidden: np.ndarray  # (real tokens, hidden), the note's windows one after another
    positions: np.ndarray  # (real tokens,) each token's index into windows * tokens
    offsets: np.ndarray  # (windows * tokens, 2) each token's character span, (-1, -1) for special and padding


class OnnxRuntime:
    """The fast path: the shared pass runs the exported encoder over the notes' real tokens only; each note's
    head runs in its caller's thread (`finish`), so one thread's pass is not the bottleneck. The head is
    int8 in ONNX Runtime, or PyTorch's packed head in float32 or bfloat16 (`head_choice`)."""

    name = "onnx"

    def __init__(self, encoder: OnnxEncoder, head: nn.Module, choice: str = "int8") -> None:
        """`head`: the model's `LabelAttention`, which the int8 head is built from; `choice` as `use_head`."""
        self.encoder = encoder
        self.use_head(head, choice)

    def use_head(self, head: nn.Module, choice: str) -> None:
        """The head to run: "int8" (ONNX Runtime, built now from `head`'s weights), "float32" or "bfloat16"
        (PyTorch's packed head in that precision)."""
        self.int8_head = OnnxHead(head) if choice == "int8" else None
        self.head_dtype = torch.float32 if choice == "int8" else getattr(torch, choice)

    def run(self, model: PlmIcdModel, input_ids: torch.Tensor, mask: torch.Tensor, offsets: np.ndarray
            ) -> list[EncodedNote]:
        hidden, positions = self._encode(input_ids, mask)
        return [EncodedNote(*row) for row in zip(hidden, positions, offsets)]

    def finish(self, model: PlmIcdModel, row: EncodedNote) -> NoteScores:
        if self.int8_head is not None:
            logits, best = self.int8_head(row.hidden)
            return NoteScores(logits, row.positions[best], row.offsets)
        with torch.inference_mode():
            logits, best = model.head.packed(torch.from_numpy(row.hidden), [len(row.hidden)], self.head_dtype)
        return NoteScores(logits[0].numpy(), row.positions[best[0].numpy()], row.offsets)

    def _encode(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The ONNX encoder over the real tokens only. input_ids, mask (batch, windows, tokens) -> per note,
        the hidden states of its real tokens one window after another (tokens, hidden), and each token's
        position as an index into windows * tokens.

        Windows are encoded in groups of similar length, each group trimmed to its longest window, so
        padding costs at most `LENGTH_STEP` tokens per window.
        """
        batch, windows, tokens = input_ids.shape
        flat_ids = input_ids.reshape(batch * windows, tokens).numpy()
        flat_mask = mask.reshape(batch * windows, tokens).numpy()
        lengths = flat_mask.sum(axis=1)  # real tokens (a prefix of the window: padding is on the right)
        encoded: dict[int, np.ndarray] = {}
        for rows, out in self.encoder.by_length(flat_ids, flat_mask, LENGTH_STEP):
            for i, row in enumerate(rows):
                encoded[row] = out[i, : lengths[row]]
        hidden, positions = [], []
        for note in range(batch):
            rows = [note * windows + k for k in range(windows) if lengths[note * windows + k]]
            hidden.append(np.concatenate([encoded[row] for row in rows]))
            positions.append(np.concatenate([(row - note * windows) * tokens + np.arange(lengths[row])
                                             for row in rows]))
        return hidden, positions

"""The transformer's fast path: its encoder exported to ONNX, int8-quantised, run by ONNX Runtime.

The label-wise attention head stays in PyTorch (`LabelAttention.packed`: the notes' real tokens only,
bf16 products where they are measured faster than fp32 on this CPU); only the encoder moves. Windows are
encoded in groups of similar length, so padding costs little. The PyTorch path is the reference: `export_encoder` checks the exported
graph against it before it writes anything.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.errors import ArtifactError

RUNTIMES = ("auto", "torch", "onnx")  # auto: onnx when the artifact has an exported encoder
# The fast path's head products: auto is bfloat16 where the CPU computes it natively (AVX512-BF16, AMX) and
# a head-sized product runs at least BF16_MIN_GAIN times faster in it than in float32, measured when a model
# loads; else float32. AVX512-BF16 alone does not make it faster: measured 4x faster on an AMD EPYC, 1.6x
# slower on an Intel Xeon, both with the flag. The reference path is always float32.
HEAD_PRECISIONS = ("auto", "float32", "bfloat16")
BF16_MIN_GAIN = 1.25
FP32_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"
# Encoders whose graph ONNX Runtime's transformer optimizer fuses (model_type "bert" covers them).
FUSABLE = ("bert", "roberta", "xlm-roberta", "camembert")
# Fusions left out, in the export and in the session: ONNX Runtime 1.32's CPU SkipLayerNormalization took
# a quarter of MiniLM's int8 time, and the residual Add + LayerNormalization it replaces are faster
# (measured 24.5 -> 18-21 ms for 2 windows of 256 tokens, 2 threads).
SLOW_FUSIONS = ("SkipLayerNormFusion",)
FP32_FFN_LAYERS = 1  # see _kept_in_fp32


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
    Measured on the recommended hybrid, CodiEsp dev EN, 250 notes in one process, MAP D/P against the
    PyTorch path: every layer int8 +0.0002/-0.0051 (P over the 0.005 the fast path may lose); layer 0
    in fp32 -0.0011/-0.0006 (about 5 ms more CPU per note); layers 0-1 +0.0004/+0.0031 (10 ms more CPU,
    throughput with 8 clients 26.1 -> 22.5 notes/s); layer 5 or layers 4-5 in fp32 did not help P.
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
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's threads otherwise spin after each run, taking the cores from the PyTorch head
        # that runs next (on 2 cores that doubled the head's time).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=list(SLOW_FUSIONS))
        except Exception as exc:
            raise ArtifactError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__})") from exc

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """input_ids, attention_mask (windows, tokens) -> hidden (windows, tokens, hidden)."""
        return self.session.run(None, {"input_ids": input_ids.astype(np.int64),
                                       "attention_mask": attention_mask.astype(np.int64)})[0]


def fast_encoder_file(directory: str | Path, prefix: str = "", quantized: bool = True) -> Path | None:
    """The exported encoder of an artifact (int8 first when asked), or None when it has none."""
    names = [INT8_FILE, FP32_FILE] if quantized else [FP32_FILE]
    for name in names:
        path = Path(directory) / f"{prefix}{name}"
        if path.is_file():
            return path
    return None


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (otherwise bf16 is emulated, and slower than fp32)."""
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


@functools.lru_cache(maxsize=8)
def bf16_speedup(hidden: int = 384, tokens: int = 256, codes: int = 512, repeats: int = 7) -> float:
    """How many times faster a head-sized product (tokens, hidden) x (hidden, codes) runs in bfloat16 than in
    float32 on this CPU: the ratio of the medians of `repeats` timings (about 20 ms in all, once per process)."""
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(tokens, hidden, generator=generator)
    right = torch.randn(hidden, codes, generator=generator)

    def median_seconds(dtype: torch.dtype) -> float:
        a, b = left.to(dtype), right.to(dtype)
        a @ b  # the first call sets up the kernel
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - started)
        return float(np.median(times))

    with torch.inference_mode():
        return median_seconds(torch.float32) / median_seconds(torch.bfloat16)


def head_dtype(precision: str, hidden: int = 384) -> torch.dtype:
    """The dtype of the fast path's head products for a HEAD_PRECISIONS value (auto: measured for a head of
    `hidden` features, see `BF16_MIN_GAIN`).

    Raises:
        ArtifactError: an unknown precision.
    """
    if precision not in HEAD_PRECISIONS:
        raise ArtifactError(f"unknown head precision {precision!r}; expected one of {HEAD_PRECISIONS}")
    if precision == "auto":
        faster = native_bf16() and bf16_speedup(hidden) >= BF16_MIN_GAIN
        return torch.bfloat16 if faster else torch.float32
    return getattr(torch, precision)

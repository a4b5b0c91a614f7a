"""The transformer's fast path: its encoder exported to ONNX, optionally int8-quantised, run by ONNX Runtime.

The label-wise attention head stays in PyTorch (it is small); only the encoder, which does nearly all the
arithmetic, moves. Windows are trimmed to the longest real window of a batch instead of the full window
length, so a short note pays for its own tokens only. The PyTorch path is the reference: `export_encoder`
checks the exported graph against it before it writes anything.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.errors import ArtifactError

RUNTIMES = ("auto", "torch", "onnx")  # auto: onnx when the artifact has an exported encoder
FP32_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"


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

    The fp32 graph must match the PyTorch encoder within `tolerance` on a padded probe batch, or nothing
    is written. Int8 uses ONNX Runtime's dynamic quantisation of the weights (activations stay float).

    Raises:
        ArtifactError: the export fails or does not match the PyTorch encoder.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    directory = Path(directory)
    encoder = encoder.eval()
    probe_ids = torch.randint(1000, 2000, (2, 48))
    probe_mask = torch.ones_like(probe_ids)
    probe_mask[1, 20:] = 0
    batch, tokens = torch.export.Dim("batch", max=4096), torch.export.Dim("tokens", max=4096)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=directory))
    written = []
    try:
        fp32 = tmp / f"{prefix}{FP32_FILE}"
        torch.onnx.export(
            _LastHidden(encoder), (probe_ids, probe_mask), str(fp32), input_names=["input_ids", "attention_mask"],
            output_names=["hidden"], dynamic_shapes={"input_ids": {0: batch, 1: tokens},
                                                     "attention_mask": {0: batch, 1: tokens}},
            dynamo=True, external_data=False, verbose=False,
        )
        with torch.inference_mode():
            expected = _LastHidden(encoder)(probe_ids, probe_mask).numpy()
        got = OnnxEncoder(fp32, threads=1)(probe_ids.numpy(), probe_mask.numpy())
        worst = float(np.abs(got - expected).max())
        if worst > tolerance:
            raise ArtifactError(f"the ONNX encoder differs from PyTorch by {worst:.2e} (> {tolerance:.0e})")
        outputs = [fp32]
        if quantize:
            int8 = tmp / f"{prefix}{INT8_FILE}"
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
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


class OnnxEncoder:
    """An exported encoder in an ONNX Runtime session: (ids, mask) -> last hidden state, as numpy."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
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

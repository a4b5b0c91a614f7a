"""The transformer's fast path (ONNX Runtime, int8) against the PyTorch reference, through an artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models.artifact import export_fast_path, load_artifact, save_artifact
from models.catalog import Catalog
from models.decision import Thresholds
from models.errors import ArtifactError
from models.fast_encoder import FP32_FILE, INT8_FILE, EncodedNote, OnnxRuntime
from models.transformer import TorchRuntime, TransformerCoder, TransformerSettings
from training.export import main as export_main

NOTES = [
    "Type 2 diabetes mellitus without complications. Essential hypertension treated with enalapril. " * 3,
    "Acute appendicitis; laparoscopic appendectomy.",
    "Chest pain. " * 40,  # longer than one window, shorter than three
]


@pytest.fixture
def artifact(tiny_encoder_dir: Path, catalog: Catalog, tmp_path: Path) -> Path:
    settings = TransformerSettings(encoder=str(tiny_encoder_dir), window_tokens=32, max_windows=3)
    codes = ["E11.9", "I10", "K35.80", "R07.9"]
    coder = TransformerCoder.create(settings, codes, ["ICD-10-CM"] * 4,
                                    [catalog.describe(c, "ICD-10-CM") for c in codes])
    return save_artifact(tmp_path / "tiny-transformer", coder, Thresholds(), model_version="tiny-transformer")


def test_the_onnx_path_gives_the_reference_scores_and_evidence(artifact: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    written = export_fast_path(artifact)
    assert {p.name for p in written} == {FP32_FILE, INT8_FILE}
    # The first layers' feed-forward output projections stay fp32 in the int8 graph (MAP, see _kept_in_fp32).
    int8_nodes = {n.name: n.op_type for n in onnx.load(str(artifact / INT8_FILE)).graph.node}
    assert int8_nodes["/encoder/encoder/layer.0/output/dense/MatMul"] == "MatMul"
    assert "MatMulInteger" in int8_nodes.values() and "QAttention" in int8_nodes.values()
    reference = load_artifact(artifact, runtime="torch").scorer
    assert reference.runtime == "torch" and isinstance(reference.engine, TorchRuntime)
    assert isinstance(load_artifact(artifact, runtime="auto").scorer.engine, OnnxRuntime)
    (artifact / INT8_FILE).rename(artifact / "int8.aside")  # the fp32 export first: it must match exactly
    fast = load_artifact(artifact, runtime="onnx", head_precision="float32").scorer
    assert fast.runtime == "onnx" and isinstance(fast.engine, OnnxRuntime)
    assert fast.engine.encoder.path.name == FP32_FILE
    np.testing.assert_allclose(fast.probs(NOTES), reference.probs(NOTES), atol=1e-4)
    _, ref_argmax, _ = reference.logits_and_attention(NOTES)
    _, fast_argmax, _ = fast.logits_and_attention(NOTES)
    # The trimmed windows map back to the same token of the note (ties aside, which random weights avoid).
    assert (ref_argmax == fast_argmax).mean() > 0.99
    for fast_source, reference_source in zip(fast.score(NOTES)[1], reference.score(NOTES)[1]):
        assert fast_source.evidence([0, 1]) == reference_source.evidence([0, 1])
    # A list longer than batch_size is encoded and finished one slice at a time (bounded memory).
    passes: list[int] = []
    shared_pass = fast._shared_pass
    monkeypatch.setattr(fast, "_shared_pass", lambda texts: passes.append(len(texts)) or shared_pass(texts))
    monkeypatch.setattr(fast, "batch_size", 2)
    np.testing.assert_allclose(fast.probs(NOTES), reference.probs(NOTES), atol=1e-4)
    assert passes == [2, 1]
    (artifact / "int8.aside").rename(artifact / INT8_FILE)
    quantized = load_artifact(artifact, runtime="onnx", head_precision="bfloat16").scorer
    assert quantized.engine.encoder.path.name == INT8_FILE and quantized.engine.head_dtype == torch.bfloat16
    np.testing.assert_allclose(quantized.probs(NOTES), reference.probs(NOTES), atol=0.05)
    auto = load_artifact(artifact, runtime="onnx").scorer
    assert auto.engine.int8_head is not None  # auto: the int8 head in ONNX Runtime
    np.testing.assert_allclose(auto.probs(NOTES), reference.probs(NOTES), atol=0.05)


def test_the_int8_head_is_the_packed_head_to_quantisation_error(artifact: Path) -> None:
    export_fast_path(artifact)
    fp32 = load_artifact(artifact, runtime="onnx", head_precision="float32").scorer
    int8 = load_artifact(artifact, runtime="onnx", head_precision="int8").scorer
    assert fp32.engine.int8_head is None and int8.engine.int8_head is not None
    # One thread per note: the request threads running their heads side by side are the parallelism.
    assert int8.engine.int8_head.session.get_session_options().intra_op_num_threads == 1
    rows = fp32._shared_pass(NOTES)
    for row in rows:
        assert isinstance(row, EncodedNote)
        (exact_logits, exact_best, _), (logits, best, _) = fp32.engine.finish(fp32.model, row), \
            int8.engine.finish(int8.model, row)
        assert logits.shape == exact_logits.shape and best.shape == exact_best.shape
        np.testing.assert_allclose(logits, exact_logits, atol=0.1)
        assert (best == exact_best).mean() >= 0.75  # near-ties in attention may flip under int8
    # The int8 head is built from the weights it was loaded with: other weights give other logits.
    with torch.no_grad():
        int8.model.head.out_bias.add_(1.0)
    int8.engine.use_head(int8.model.head, "int8")
    np.testing.assert_allclose(int8.engine.finish(int8.model, rows[0]).logits,
                               fp32.engine.finish(fp32.model, rows[0]).logits + 1.0, atol=0.1)
    int8.engine.use_head(int8.model.head, "float32")
    assert int8.engine.int8_head is None and int8.engine.head_dtype == torch.float32


def test_onnx_without_an_export_or_with_a_bad_file_is_refused(artifact: Path, capsys) -> None:
    with pytest.raises(ArtifactError, match="no exported encoder"):
        load_artifact(artifact, runtime="onnx")
    with pytest.raises(ArtifactError, match="unknown runtime"):
        load_artifact(artifact, runtime="tensorrt")
    with pytest.raises(ArtifactError, match="unknown head precision"):
        load_artifact(artifact, runtime="torch", head_precision="float8")
    assert export_main(["--artifact", str(artifact), "--no-quantize"]) == 0
    assert "encoder.onnx" in capsys.readouterr().out and not (artifact / INT8_FILE).exists()
    (artifact / FP32_FILE).write_bytes(b"not an onnx graph")
    with pytest.raises(ArtifactError, match=FP32_FILE):
        load_artifact(artifact, runtime="onnx")


def test_concurrent_notes_share_transformer_passes_and_get_the_answers_they_get_alone(artifact: Path) -> None:
    import threading

    export_fast_path(artifact)
    predictor = load_artifact(artifact, runtime="onnx", head_precision="float32")
    alone = [predictor.predict(text, top_k=3) for text in NOTES * 2]
    assert predictor.batch_concurrent_calls(max_notes=4, max_wait_ms=50) == 1
    coalescer = predictor.scorer._coalescer
    answers: dict[int, object] = {}
    threads = [threading.Thread(target=lambda n=n: answers.__setitem__(n, predictor.predict(NOTES[n % 3], top_k=3)))
               for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    predictor.close()
    assert coalescer.items == 6 and coalescer.batches < 6  # notes shared passes
    for n in range(6):
        got, expected = answers[n], alone[n]
        assert [c.code for c in got.codes] == [c.code for c in expected.codes]
        assert [c.evidence for c in got.codes] == [c.evidence for c in expected.codes]
        # int8's activation scales are dynamic, per pass: batch-mates move a score in the 5th decimal.
        np.testing.assert_allclose([c.confidence for c in got.codes], [c.confidence for c in expected.codes],
                                   atol=1e-3)
    assert predictor.predict(NOTES[0], top_k=3).codes  # closed: unbatched again

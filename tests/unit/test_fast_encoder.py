"""Which of the encoder's products the int8 export leaves in fp32."""

from __future__ import annotations

from onnx import helper

from models.fast_encoder import FP32_FFN_LAYERS, _kept_in_fp32


def _graph(names: list[tuple[str, str]]):
    nodes = [helper.make_node(op, ["x", "w"], [f"y{i}"], name=name) for i, (op, name) in enumerate(names)]
    return helper.make_model(helper.make_graph(nodes, "encoder", [], []))


def test_the_first_layers_feed_forward_output_projections_stay_fp32_and_nothing_else() -> None:
    names = []
    for layer in range(6):
        for part in ("attention/output/dense", "intermediate/dense", "output/dense"):
            names.append(("MatMul", f"/encoder/encoder/layer.{layer}/{part}/MatMul"))
    names.append(("Gemm", "/encoder/encoder/layer.0/output/dense/Gemm"))  # not a MatMul
    kept = _kept_in_fp32(_graph(names))
    assert kept == [f"/encoder/encoder/layer.{layer}/output/dense/MatMul" for layer in range(FP32_FFN_LAYERS)]
    assert FP32_FFN_LAYERS == 2
    # Layer 10's projection is not layer 1's, and other architectures' names keep everything in int8.
    assert _kept_in_fp32(_graph([("MatMul", "/encoder/layer.10/output/dense/MatMul")])) == []
    assert _kept_in_fp32(_graph([("MatMul", "/transformer/h.0/mlp/c_proj/MatMul")])) == []

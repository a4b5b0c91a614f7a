"""Transformer training: save -> load round trip, resuming from a checkpoint, and a two-process (DDP, gloo)
run through torchrun with no code change. A tiny local encoder keeps it to seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.artifact import load_artifact, save_artifact
from models.decision import Thresholds
from models.transformer import TransformerSettings
from training.data import load_data
from training.loop import LoopSettings, train_loop
from training.transformer import fit_transformer, label_space, target_matrix

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "fixtures" / "codiesp_mini"


@pytest.fixture(scope="module")
def mini():
    data = load_data(MINI, splits="train+dev")["train+dev"]
    return list(data["text"]), {"ICD-10-CM": list(data["diagnoses"]), "ICD-10-PCS": list(data["procedures"])}


def _settings(encoder: Path) -> TransformerSettings:
    return TransformerSettings(encoder=str(encoder), window_tokens=32, max_windows=2)


def test_transformer_round_trip_gives_identical_outputs(mini, catalog, tiny_encoder_dir, tmp_path: Path) -> None:
    texts, targets = mini
    coder, history = fit_transformer(texts, targets, catalog, _settings(tiny_encoder_dir),
                                     LoopSettings(epochs=2, batch_size=2, grad_accum=1, patience=5), progress=False)
    assert [e["epoch"] for e in history["epochs"]] == [1, 2] and history["best_epoch"] in (1, 2)
    saved = save_artifact(tmp_path / "transformer", coder, Thresholds(), model_version="tiny-transformer")
    loaded = load_artifact(saved, catalog)
    probe = ["Type 2 diabetes mellitus and essential hypertension.", "Renal ultrasound."]
    assert loaded.scorer.codes == coder.codes
    np.testing.assert_allclose(loaded.scorer.probs(probe), coder.probs(probe), rtol=0, atol=1e-6)
    assert loaded.predict(probe[0], top_k=3).model_version == "tiny-transformer"


def test_training_resumes_from_its_checkpoint(mini, catalog, tiny_encoder_dir, tmp_path: Path) -> None:
    from models.transformer import TransformerCoder

    texts, targets = mini
    codes, systems = label_space(targets)
    y = target_matrix(targets, codes, systems)
    val = {s: [d[:1] for d in targets[s][:2]] for s in targets}

    def run(epochs: int):
        coder = TransformerCoder.create(_settings(tiny_encoder_dir), codes, systems)
        return train_loop(coder, texts, y, texts[:2], val, LoopSettings(epochs=epochs, batch_size=2, grad_accum=1,
                                                                          patience=9), tmp_path / "ckpt", False)

    first = run(1)
    resumed = run(2)
    assert len(first["epochs"]) == 1 and len(resumed["epochs"]) == 2
    assert resumed["epochs"][0] == first["epochs"][0]  # epoch 1 was restored, not run again
    assert json.loads((tmp_path / "ckpt" / "history.json").read_text())["epochs"][1]["epoch"] == 2


def test_two_process_training_with_torchrun(tiny_encoder_dir, tmp_path: Path) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "name: tiny-ddp\nmodel:\n  kind: transformer\n"
        f"  encoder: {tiny_encoder_dir}\n  window_tokens: 32\n  max_windows: 2\n"
        "  epochs: 2\n  batch_size: 1\n  grad_accum: 1\n  patience: 5\n"
        f"data:\n  source: {MINI}\n  train_split: train+dev\n",
        encoding="utf-8",
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "training", "--config", str(recipe), "--output", str(tmp_path / "ddp")],
        check=False, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training on 2 process(es), MULTI_CPU" in result.stderr
    assert (tmp_path / "ddp" / "weights.safetensors").is_file()
    assert load_artifact(tmp_path / "ddp").model_version == "tiny-ddp"


def test_hybrid_recipe_with_a_transformer_component(tiny_encoder_dir, tmp_path: Path) -> None:
    from training.config import load_config
    from training.train import train

    recipe = tmp_path / "hybrid.yaml"
    recipe.write_text(
        "name: tiny-hybrid-transformer\nmodel:\n  kind: hybrid\n  folds: 2\n  candidates_per_component: 10\n"
        "  n_estimators: 20\n  min_child_samples: 1\n  code_form: codiesp\n"
        "  linear: {kind: linear, min_df: 1, ngram_max: 1, keep_per_code: 50}\n"
        f"  transformer: {{kind: transformer, encoder: '{tiny_encoder_dir}', window_tokens: 32, max_windows: 2, "
        "epochs: 1, batch_size: 2, grad_accum: 1}\n"
        f"data:\n  source: {MINI}\n  train_split: train\n  eval_split: dev\n",
        encoding="utf-8",
    )
    saved = train(load_config(recipe), tmp_path / "artifact", progress=False)
    config = json.loads((saved / "config.json").read_text())
    assert list(config["settings"]["components"]) == ["linear", "matcher", "transformer"]
    metrics = json.loads((saved / "metrics.json").read_text())
    assert set(metrics["components"]) == {"linear", "matcher", "transformer"}
    assert "triage" in metrics["out_of_fold"] and "calibration" in metrics
    predictor = load_artifact(saved)
    assert predictor.scorer.calibrator is not None
    assert predictor.predict("Type 2 diabetes mellitus. Renal ultrasound.", top_k=5).codes

"""The training loop of the transformer coder, on Hugging Face Accelerate.

One code path for a CPU, a GPU (bf16) and several processes (`accelerate launch` / `torchrun`, DDP; gloo
on CPUs): AdamW with linear warm-up, gradient accumulation and clipping, evaluation on a validation set
after every epoch with early stopping and selection of the best epoch by validation MAP, a resumable
checkpoint after every epoch, fixed seeds, and a progress bar with the loss and the ETA.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from eval import metrics
from models.transformer import TransformerCoder, encode_notes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    epochs: int = 12
    batch_size: int = 4
    grad_accum: int = 2
    lr_encoder: float = 4e-5
    lr_head: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    patience: int = 3
    loss: str = "bce"  # "bce" or "focal"
    focal_gamma: float = 2.0
    mixed_precision: str = "no"  # "no", "bf16" (GPUs), "fp16"
    seed: int = 13


def multilabel_loss(logits: torch.Tensor, targets: torch.Tensor, settings: LoopSettings) -> torch.Tensor:
    """Mean binary cross-entropy over codes, or its focal form (down-weights the easy negatives)."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if settings.loss == "focal":
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        bce = bce * (1 - p_t) ** settings.focal_gamma
    return bce.sum(dim=1).mean()


def validation_map(coder: TransformerCoder, texts: list[str], gold: dict[str, list[list[str]]]) -> float:
    """Mean over code systems of the CodiEsp MAP of the coder's ranking on validation notes."""
    probs = coder.probs(texts)  # (notes, codes)
    systems = np.asarray(coder.code_systems)
    values = []
    for system, docs in gold.items():
        columns = np.flatnonzero(systems == system)
        if columns.size == 0:
            continue
        ranked = metrics.ranked_from_scores(probs[:, columns], [coder.codes[c] for c in columns], k=200)
        gold_map = {str(i): g for i, g in enumerate(docs) if g}
        values.append(metrics.codiesp_map(gold_map, {str(i): r for i, r in enumerate(ranked) if str(i) in gold_map}))
    return float(np.mean(values)) if values else 0.0


def train_loop(
    coder: TransformerCoder,
    texts: list[str],
    targets: np.ndarray,
    val_texts: list[str],
    val_gold: dict[str, list[list[str]]],
    settings: LoopSettings,
    checkpoint_dir: str | Path,
    progress: bool = True,
) -> dict:
    """Train `coder` in place; at the end it holds the weights of the best validation epoch.

    Args:
        targets: (notes, codes) 0/1 matrix in the coder's code order.
        checkpoint_dir: where the resumable state is written after each epoch; if it already holds
            one, training resumes from it.
    Returns:
        The training history (per-epoch loss and validation MAP, best epoch).
    """
    set_seed(settings.seed)
    # Without a GPU, processes started by torchrun / accelerate launch train together on CPUs (gloo).
    accelerator = Accelerator(gradient_accumulation_steps=settings.grad_accum, mixed_precision=settings.mixed_precision,
                              cpu=not torch.cuda.is_available())
    logger.info("training on %d process(es), %s, device %s", accelerator.num_processes,
                accelerator.distributed_type.value, accelerator.device)
    encoded = encode_notes(coder.tokenizer, texts, coder.settings)
    dataset = TensorDataset(encoded.input_ids, encoded.attention_mask, torch.from_numpy(targets.astype(np.float32)))
    generator = torch.Generator().manual_seed(settings.seed)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=True, generator=generator)
    model = coder.model
    head_params = [p for n, p in model.named_parameters() if n.startswith("head.")]
    encoder_params = [p for n, p in model.named_parameters() if not n.startswith("head.")]
    optimizer = torch.optim.AdamW(
        [{"params": encoder_params, "lr": settings.lr_encoder}, {"params": head_params, "lr": settings.lr_head}],
        weight_decay=settings.weight_decay,
    )
    steps_per_epoch = math.ceil(len(loader) / max(accelerator.num_processes, 1) / settings.grad_accum)
    total_steps = max(steps_per_epoch * settings.epochs, 1)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    checkpoint_dir = Path(checkpoint_dir)
    history: dict = {"epochs": [], "best_epoch": None, "best_map": -1.0}
    start_epoch = 0
    state_file = checkpoint_dir / "history.json"
    if state_file.is_file() and (checkpoint_dir / "last").is_dir():
        history = json.loads(state_file.read_text())
        accelerator.load_state(str(checkpoint_dir / "last"))
        start_epoch = len(history["epochs"])
        logger.info("resuming after epoch %d (best %s)", start_epoch, history["best_epoch"])
    best_path = checkpoint_dir / "best.pt"

    for epoch in range(start_epoch, settings.epochs):
        model.train()
        running, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch",
                   disable=not (progress and accelerator.is_local_main_process))
        for input_ids, attention_mask, y in bar:
            with accelerator.accumulate(model):
                logits, _ = model(input_ids, attention_mask)
                loss = multilabel_loss(logits.float(), y, settings)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            running += float(loss.detach()) * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{running / max(seen, 1):.3f}")
        accelerator.wait_for_everyone()
        coder.model = accelerator.unwrap_model(model)
        val_map = validation_map(coder, val_texts, val_gold) if accelerator.is_main_process else 0.0
        coder.model.train()
        record = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), "val_map": val_map}
        history["epochs"].append(record)
        if accelerator.is_main_process:
            logger.info("epoch %d: loss %.4f, validation MAP %.4f", epoch + 1, record["train_loss"], val_map)
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            if val_map > history["best_map"]:
                history["best_map"], history["best_epoch"] = val_map, epoch + 1
                torch.save(coder.model.state_dict(), best_path)
        accelerator.save_state(str(checkpoint_dir / "last"))
        if accelerator.is_main_process:
            state_file.write_text(json.dumps(history, indent=2))
        best_epoch = _broadcast(accelerator, history["best_epoch"] or 0)
        if epoch + 1 - best_epoch >= settings.patience:
            logger.info("early stop: no validation gain for %d epochs", settings.patience)
            break
    accelerator.wait_for_everyone()
    coder.model = accelerator.unwrap_model(model)
    if best_path.is_file():
        coder.model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True))
    coder.model.eval()
    return history


def _broadcast(accelerator: Accelerator, value: int) -> int:
    """The main process's value on every process (early stopping must agree everywhere)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast

    tensor = torch.tensor([value], device=accelerator.device)
    return int(broadcast(tensor, from_process=0).item())


def remove_checkpoints(checkpoint_dir: str | Path) -> None:
    """Delete a finished run's checkpoints."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)

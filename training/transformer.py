"""Fit the transformer coder on notes: code vocabulary from the training notes, description-initialised
label queries, a validation split for early stopping, then the Accelerate loop."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from models.catalog import Catalog
from models.transformer import TransformerCoder, TransformerSettings
from training.loop import LoopSettings, remove_checkpoints, train_loop

logger = logging.getLogger(__name__)

SYSTEM_ORDER = ("ICD-10-CM", "ICD-10-PCS")


def label_space(targets: dict[str, list[list[str]]]) -> tuple[list[str], list[str]]:
    """Sorted codes of each system that occur in the training notes, systems in a fixed order."""
    codes, systems = [], []
    for system in SYSTEM_ORDER:
        found = sorted({c for doc in targets.get(system, []) for c in doc})
        codes += found
        systems += [system] * len(found)
    return codes, systems


def target_matrix(targets: dict[str, list[list[str]]], codes: list[str], systems: list[str]) -> np.ndarray:
    """(notes, codes) 0/1 matrix; codes outside the label space are ignored."""
    index = {(s, c): i for i, (c, s) in enumerate(zip(codes, systems))}
    n_notes = max((len(docs) for docs in targets.values()), default=0)
    y = np.zeros((n_notes, len(codes)), dtype=np.float32)
    for system, docs in targets.items():
        for d, doc in enumerate(docs):
            for code in doc:
                i = index.get((system, code))
                if i is not None:
                    y[d, i] = 1.0
    return y


def fit_transformer(
    texts: list[str],
    targets: dict[str, list[list[str]]],
    catalog: Catalog,
    settings: TransformerSettings,
    loop: LoopSettings,
    val_fraction: float = 0.1,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[TransformerCoder, dict]:
    """Train a transformer coder; returns it (best validation epoch) and the training history.

    A `val_fraction` of the notes (seeded) is held out for early stopping and epoch selection. Resuming:
    pass the same `checkpoint_dir` again.
    """
    texts = [str(t) for t in texts]
    targets = {s: [list(doc) for doc in docs] for s, docs in targets.items()}
    codes, systems = label_space(targets)
    descriptions = [catalog.describe_nearest(c, s) or c for c, s in zip(codes, systems)]
    coder = TransformerCoder.create(settings, codes, systems, descriptions)
    y = target_matrix(targets, codes, systems)
    rng = np.random.default_rng(loop.seed)
    order = rng.permutation(len(texts))
    n_val = max(1, round(val_fraction * len(texts))) if len(texts) > 1 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    own_dir = checkpoint_dir is None
    directory = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="transformer-ckpt-"))
    try:
        history = train_loop(
            coder,
            [texts[i] for i in train_idx],
            y[train_idx],
            [texts[i] for i in val_idx],
            {s: [targets[s][i] for i in val_idx] for s in targets},
            loop,
            directory,
            progress=progress,
        )
    finally:
        if own_dir:
            remove_checkpoints(directory)
    return coder, history

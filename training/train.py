"""Train a recipe into an artifact directory, evaluating it on the recipe's eval split when there is one."""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
from accelerate import PartialState
from datasets import Dataset, concatenate_datasets

from eval.report import evaluate
from models.artifact import export_fast_path, save_artifact
from models.catalog import get_catalog
from models.decision import Thresholds
from models.errors import InputError
from models.hierarchy import GroupCoder
from models.hybrid import HybridSettings
from models.linear import LinearCoder, LinearSettings
from models.matcher import CatalogMatcher
from models.neighbors import NeighborCoder, NeighborSettings
from models.predictor import Predictor
from models.retriever import CatalogRetriever, RetrieverSettings
from models.transformer import TransformerSettings
from training.config import HybridModelConfig, LinearModelConfig, TrainConfig, TransformerModelConfig
from training.data import LoadReport, is_codiesp, load_data
from training.hybrid import fit_hybrid
from training.loop import LoopSettings
from training.transformer import fit_transformer

logger = logging.getLogger(__name__)


def fingerprint(dataset: Dataset) -> dict:
    """A hash of the ids, texts and codes a model was trained on (no text is stored)."""
    digest = hashlib.sha256()
    for row in dataset:
        for part in (row["id"], row["text"], "|".join(row["diagnoses"]), "|".join(row["procedures"])):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
    return {"sha256": digest.hexdigest(), "documents": len(dataset)}


def train(
    config: TrainConfig, output: str | Path, progress: bool = True, checkpoint_dir: str | Path | None = None
) -> Path | None:
    """Train the recipe and write its artifact (on the main process of a multi-process run; the others
    return None). `checkpoint_dir` makes a transformer run resumable.

    Raises:
        InputError: when the recipe has no data source or the data cannot be loaded.
    """
    random.seed(config.seed)
    np.random.seed(config.seed)
    data_cfg = config.data
    if data_cfg.source is None:
        raise InputError("the recipe names no data source (data.source, or --data on the command line)")
    splits = [data_cfg.train_split] + ([data_cfg.eval_split] if data_cfg.eval_split else [])
    report = LoadReport()
    data = load_data(
        data_cfg.source, splits=splits, language=data_cfg.language, on_unknown=data_cfg.on_unknown, report=report
    )
    logger.info("data: %s", report.summary())
    train_set = data[data_cfg.train_split]
    for extra in data_cfg.extra_train:
        more = load_data(extra, on_unknown=data_cfg.on_unknown, report=report)["train"]
        train_set = concatenate_datasets([train_set, more.cast(train_set.features)])
        logger.info("data: %d more training notes from %s", len(more), extra)
    catalog = get_catalog()
    thresholds = Thresholds(**config.thresholds.model_dump())
    targets = {"ICD-10-CM": train_set["diagnoses"], "ICD-10-PCS": train_set["procedures"]}
    model = config.model
    oof_report: dict = {}
    if isinstance(model, LinearModelConfig):
        settings = LinearSettings(**model.model_dump(exclude={"kind"}))
        scorer = LinearCoder.fit(train_set["text"], targets, settings, progress=progress)
    elif isinstance(model, TransformerModelConfig):
        scorer, history = _fit_transformer(model, config.seed, catalog, progress, checkpoint_dir)(
            train_set["text"], targets
        )
        oof_report = {"training_history": history}
    elif isinstance(model, HybridModelConfig):
        extra = {}
        if model.transformer is not None:
            fit = _fit_transformer(model.transformer, config.seed, catalog, progress, None)
            extra["transformer"] = lambda texts, fold_targets: fit(texts, fold_targets)[0]
        if model.neighbors is not None:
            neighbor_settings = NeighborSettings(**model.neighbors.model_dump(exclude={"kind"}))
            extra["neighbors"] = lambda texts, fold_targets: NeighborCoder.fit(texts, fold_targets, neighbor_settings)
        if model.groups is not None:
            group_settings = LinearSettings(**model.groups.model_dump(exclude={"kind"}))
            extra["groups"] = lambda texts, fold_targets: GroupCoder.fit(texts, fold_targets, group_settings)
        zero_shot = {}
        if model.retriever is not None:
            zero_shot["retriever"] = CatalogRetriever.build(
                catalog, RetrieverSettings(**model.retriever.model_dump(exclude={"kind"})), progress=progress
            )
        scorer, thresholds, oof_report = fit_hybrid(
            train_set["text"],
            targets,
            catalog,
            CatalogMatcher(catalog, **model.matcher.model_dump(exclude={"kind"})),
            LinearSettings(**model.linear.model_dump(exclude={"kind"})),
            HybridSettings(**model.model_dump(
                exclude={"kind", "folds", "linear", "matcher", "transformer", "neighbors", "groups", "retriever"})),
            folds=model.folds,
            seed=config.seed,
            progress=progress,
            target_precision=config.decision.target_precision,
            decision_top_k=config.decision.top_k,
            fit_extra=extra,
            zero_shot=zero_shot,
        )
    else:
        scorer = CatalogMatcher(catalog, **model.model_dump(exclude={"kind"}))
    if not PartialState().is_main_process:
        return None
    metrics: dict = {"out_of_fold": oof_report} if oof_report else {}
    if data_cfg.eval_split:
        eval_set = data[data_cfg.eval_split]
        predictor = Predictor(scorer, catalog, thresholds, model_version=config.name)
        metrics |= evaluate(
            predictor,
            eval_set["id"],
            eval_set["text"],
            {"ICD-10-CM": eval_set["diagnoses"], "ICD-10-PCS": eval_set["procedures"]},
            code_form="codiesp" if is_codiesp(data_cfg.source) else "as-is",
            top_k=config.decision.top_k,
            progress=progress,
            encounter_classes=eval_set["encounter_class"],
        )
        metrics["split"] = data_cfg.eval_split
    path = save_artifact(
        output,
        scorer,
        thresholds,
        model_version=config.name,
        metrics=metrics,
        training_config=config.model_dump(),
        data_fingerprint={**fingerprint(train_set), "source": str(data_cfg.source),
                          "extra_train": list(data_cfg.extra_train),
                          "split": data_cfg.train_split, "load_report": _report_dict(report)},
    )
    # The fast path (ONNX, int8) for the service; the PyTorch weights stay the reference.
    for written in export_fast_path(path, scorer=scorer):
        logger.info("fast path: wrote %s", written.name)
    return path


def _fit_transformer(cfg: TransformerModelConfig, seed: int, catalog, progress: bool, checkpoint_dir):
    """A function (texts, targets) -> (transformer coder, history) for one recipe."""

    def fit(texts: list[str], targets: dict) -> tuple:
        return fit_transformer(
            texts, targets, catalog, TransformerSettings(**cfg.architecture()), LoopSettings(**cfg.loop(seed)),
            val_fraction=cfg.val_fraction, checkpoint_dir=checkpoint_dir, progress=progress,
        )

    return fit


def _report_dict(report: LoadReport) -> dict:
    data = asdict(report)
    return {k: (dict(v) if hasattr(v, "items") else v) for k, v in data.items()}

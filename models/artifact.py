"""The trained artifact: one directory per model, written atomically, validated on load, never pickled.

Layout:
    config.json          format version, kind of scorer and its settings, model version
    labels.json          {"ICD-10-CM": [...], "ICD-10-PCS": [...]}, each sorted; outputs follow this order
    weights.safetensors  the scorer's arrays (absent for the catalogue matcher, which has none)
    parts.json           non-array state (e.g. the linear model's vocabulary, code frequencies)
    ranker.txt           the hybrid's LightGBM ranker, in LightGBM's text model format
    thresholds.json      the decision thresholds
    metrics.json         the evaluation that justified them
    training_config.json the resolved training recipe
    data_fingerprint.json what the model was trained on
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from models.calibration import IsotonicCalibrator
from models.catalog import Catalog, get_catalog
from models.decision import Thresholds
from models.errors import ArtifactError
from models.fast_encoder import (
    INT8_FILE,
    RUNTIMES,
    OnnxEncoder,
    OnnxRuntime,
    export_encoder,
    fast_encoder_file,
    head_choice,
)
from models.hierarchy import GroupCoder
from models.hybrid import CodeStats, HybridCoder, HybridSettings, code_converter
from models.linear import LinearCoder
from models.matcher import CatalogMatcher
from models.neighbors import NeighborCoder
from models.predictor import SYSTEMS, Predictor
from models.retriever import CatalogRetriever
from models.scorer import CompositeScorer
from models.transformer import TransformerCoder

FORMAT_VERSION = 1
KINDS = ("linear", "matcher", "transformer", "hybrid", "neighbors", "groups", "retriever")
DEFAULT_MODEL_VERSION = "catalog-matcher-default"


def _labels_of(scorer: Any) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {s: [] for s in SYSTEMS}
    for code, system in zip(scorer.codes, scorer.code_systems):
        labels[system].append(code)
    return labels


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass
class ScorerState:
    """What an artifact stores of a scorer: arrays go to safetensors, the rest to JSON or text files."""

    kind: str
    settings: dict
    systems: list[str]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    parts: dict = field(default_factory=dict)
    labels: dict[str, list[str]] | None = None
    texts: dict[str, str] = field(default_factory=dict)  # file name -> content (the ranker's text model)


def _sorted_labels(scorer: Any) -> dict[str, list[str]]:
    labels = _labels_of(scorer)
    for system, codes in labels.items():
        if codes != sorted(codes):
            raise ArtifactError(f"{system} labels are not sorted")
    return labels


def _linear_state(scorer: LinearCoder) -> ScorerState:
    settings, tensors, parts = scorer.state()
    labels = _sorted_labels(scorer)
    return ScorerState("linear", settings, [s for s in SYSTEMS if labels[s]], tensors, parts, labels)


def _matcher_state(scorer: CatalogMatcher) -> ScorerState:
    return ScorerState("matcher", scorer.settings(), list(dict.fromkeys(scorer.code_systems)))


def _transformer_state(scorer: TransformerCoder) -> ScorerState:
    settings, tensors = scorer.state()
    labels = _sorted_labels(scorer)
    return ScorerState("transformer", settings, [s for s in SYSTEMS if labels[s]], tensors, {}, labels)


def _stated_state(scorer: NeighborCoder | GroupCoder | CatalogRetriever) -> ScorerState:
    """A scorer with the `to_state()` / `from_state()` contract and a code vocabulary."""
    settings, tensors, parts = scorer.to_state()
    labels = _sorted_labels(scorer)
    return ScorerState(scorer.kind, settings, [s for s in SYSTEMS if labels[s]], tensors, parts, labels)


def _hybrid_state(scorer: HybridCoder) -> ScorerState:
    """Each component's state nested under its name: tensors `<name>.<tensor>`, parts and labels by name."""
    settings: dict = {"hybrid": scorer.settings_dict(), "components": {}}
    tensors: dict[str, np.ndarray] = {}
    parts: dict = {"stats": asdict(scorer.stats), "components": {}, "labels": {}}
    for name, component in scorer.components.items():
        sub = scorer_state(component)
        settings["components"][name] = {"kind": sub.kind, "settings": sub.settings, "systems": sub.systems}
        tensors |= {f"{name}.{k}": v for k, v in sub.tensors.items()}
        parts["components"][name] = sub.parts
        parts["labels"][name] = sub.labels
    if scorer.calibrator is not None:
        tensors |= {"calibration.x": scorer.calibrator.x, "calibration.y": scorer.calibrator.y}
    return ScorerState("hybrid", settings, list(dict.fromkeys(scorer.code_systems)), tensors, parts, None,
                       {"ranker.txt": scorer.ranker_text})


def scorer_state(scorer: Any) -> ScorerState:
    """The state of a scorer of a known kind. Raises ArtifactError for other objects."""
    for cls, to_state in _STATE_OF.items():
        if isinstance(scorer, cls):
            return to_state(scorer)
    raise ArtifactError(f"cannot save a scorer of type {type(scorer).__name__}")


def save_artifact(
    directory: str | Path,
    scorer: Any,
    thresholds: Thresholds,
    *,
    model_version: str | None = None,
    metrics: dict | None = None,
    training_config: dict | None = None,
    data_fingerprint: dict | None = None,
) -> Path:
    """Write an artifact directory atomically (temporary folder, then rename).

    Returns:
        The artifact directory.
    Raises:
        ArtifactError: if the target exists and is not an artifact, or the scorer is of an unknown kind.
    """
    target = Path(directory)
    state = scorer_state(scorer)
    created = datetime.now(UTC)
    config = {
        "format_version": FORMAT_VERSION,
        "kind": state.kind,
        "settings": state.settings,
        "model_version": model_version or f"{state.kind}-{created:%Y%m%d-%H%M%S}",
        "created": created.isoformat(),
        "systems": state.systems,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_json(tmp / "config.json", config)
        if state.labels is not None:
            _write_json(tmp / "labels.json", state.labels)
        if state.tensors:
            save_file({k: np.ascontiguousarray(v) for k, v in state.tensors.items()}, str(tmp / "weights.safetensors"))
        if state.parts:
            _write_json(tmp / "parts.json", state.parts)
        for name, content in state.texts.items():
            (tmp / name).write_text(content, encoding="utf-8")
        _write_json(tmp / "thresholds.json", thresholds.to_dict())
        _write_json(tmp / "metrics.json", metrics or {})
        _write_json(tmp / "training_config.json", training_config or {})
        _write_json(tmp / "data_fingerprint.json", data_fingerprint or {})
        if target.exists():
            if not (target / "config.json").exists():
                raise ArtifactError(f"{target} exists and is not an artifact directory; not overwriting it")
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc


def read_config(directory: str | Path) -> dict:
    """Read and validate an artifact's config.json."""
    path = Path(directory) / "config.json"
    config = _read_json(path)
    if not isinstance(config, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    if config.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unsupported format_version {config.get('format_version')!r}")
    if config.get("kind") not in KINDS:
        raise ArtifactError(f"{path}: unknown kind {config.get('kind')!r}; expected one of {KINDS}")
    return config


def _read_state(root: Path, config: dict) -> ScorerState:
    """The stored state of an artifact, each file validated as it is read."""
    weights = root / "weights.safetensors"
    try:
        tensors = load_file(str(weights)) if weights.exists() else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights}: cannot be read ({exc})") from exc
    labels = _read_json(root / "labels.json") if (root / "labels.json").exists() else None
    if labels is not None and (not isinstance(labels, dict) or set(labels) - set(SYSTEMS)):
        raise ArtifactError(f"{root / 'labels.json'}: expected an object keyed by {list(SYSTEMS)}")
    parts = _read_json(root / "parts.json") if (root / "parts.json").exists() else {}
    texts = {p.name: p.read_text(encoding="utf-8") for p in root.glob("*.txt")}
    return ScorerState(config["kind"], config.get("settings") or {}, config.get("systems") or list(SYSTEMS),
                       tensors, parts, labels, texts)


def _codes_of(labels: dict[str, list[str]] | None, where: Path) -> tuple[list[str], list[str]]:
    if not labels:
        raise ArtifactError(f"{where}: the code vocabulary (labels) is missing")
    return [c for s in SYSTEMS for c in labels.get(s, [])], [s for s in SYSTEMS for _ in labels.get(s, [])]


def _build_linear(state: ScorerState, root: Path, catalog: Catalog, **_: Any) -> LinearCoder:
    codes, code_systems = _codes_of(state.labels, root / "labels.json")
    if not state.tensors:
        raise ArtifactError(f"{root / 'weights.safetensors'}: missing")
    try:
        return LinearCoder.from_state(state.settings, state.tensors, state.parts, codes, code_systems)
    except ArtifactError as exc:
        raise ArtifactError(f"{root}: {exc}") from exc


def _build_stated(state: ScorerState, root: Path, catalog: Catalog, **_: Any
                  ) -> NeighborCoder | GroupCoder | CatalogRetriever:
    codes, code_systems = _codes_of(state.labels, root / "labels.json")
    try:
        return _STATED[state.kind].from_state(state.settings, state.tensors, state.parts, codes, code_systems)
    except ArtifactError as exc:
        raise ArtifactError(f"{root}: {exc}") from exc


def _build_retriever(state: ScorerState, root: Path, catalog: Catalog, runtime: str = "torch", prefix: str = "",
                     **_: Any) -> CatalogRetriever:
    """The retriever; with the onnx runtime its sentences are encoded by its exported encoder when the
    artifact has one (`python -m training.export`), else by PyTorch."""
    retriever = _build_stated(state, root, catalog)
    path = fast_encoder_file(root, prefix) if runtime in ("onnx", "auto") else None
    if path is not None:
        retriever.encoder.fast = OnnxEncoder(path)
    return retriever


def _build_matcher(state: ScorerState, root: Path, catalog: Catalog, **_: Any) -> CatalogMatcher:
    try:
        return CatalogMatcher(catalog, tuple(state.systems), **state.settings)
    except TypeError as exc:
        raise ArtifactError(f"{root / 'config.json'}: bad matcher settings ({exc})") from exc


def _build_transformer(
    state: ScorerState, root: Path, catalog: Catalog, runtime: str = "torch", prefix: str = "",
    head_precision: str = "auto", **_: Any
) -> TransformerCoder:
    codes, code_systems = _codes_of(state.labels, root / "labels.json")
    try:
        coder = TransformerCoder.from_state(state.settings, state.tensors, codes, code_systems)
    except ArtifactError as exc:
        raise ArtifactError(f"{root / 'weights.safetensors'}: {exc}") from exc
    if runtime in ("onnx", "auto"):
        path = fast_encoder_file(root, prefix)
        if path is None and runtime == "auto":
            return coder
        if path is None:
            raise ArtifactError(f"{root}: no exported encoder ({prefix}{INT8_FILE}); run "
                                f"`python -m training.export --artifact {root}` or use the torch runtime")
        coder.use_runtime(OnnxRuntime(OnnxEncoder(path), coder.model.head, head_choice(head_precision)))
    return coder


def _build_hybrid(state: ScorerState, root: Path, catalog: Catalog, **options: Any) -> HybridCoder:
    try:
        hybrid_settings = HybridSettings(**state.settings["hybrid"])
        stats = CodeStats(**state.parts["stats"])
        components = {}
        for name, spec in state.settings["components"].items():
            if spec["kind"] not in _BUILDERS or spec["kind"] == "hybrid":
                raise ArtifactError(f"{root / 'config.json'}: unknown component kind {spec['kind']!r}")
            prefix = f"{name}."
            sub = ScorerState(
                spec["kind"], spec["settings"], spec["systems"],
                {k.removeprefix(prefix): v for k, v in state.tensors.items() if k.startswith(prefix)},
                state.parts["components"].get(name) or {}, state.parts["labels"].get(name),
            )
            components[name] = _BUILDERS[spec["kind"]](sub, root, catalog, prefix=f"{name}.", **options)
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{root}: hybrid settings or parts are incomplete ({exc})") from exc
    calibrator = (
        IsotonicCalibrator(state.tensors["calibration.x"], state.tensors["calibration.y"])
        if "calibration.x" in state.tensors else None
    )
    if "ranker.txt" not in state.texts:
        raise ArtifactError(f"{root / 'ranker.txt'}: missing")
    try:
        return HybridCoder(components, stats, state.texts["ranker.txt"], hybrid_settings,
                           convert=code_converter(catalog, hybrid_settings.code_form), calibrator=calibrator)
    except ArtifactError as exc:
        raise ArtifactError(f"{root / 'ranker.txt'}: {exc}") from exc


def load_artifact(directory: str | Path, catalog: Catalog | None = None, runtime: str = "torch",
                  head_precision: str = "auto") -> Predictor:
    """Load an artifact directory into a ready Predictor.

    Args:
        runtime: "torch" (the reference) or "onnx": the transformer's encoder runs from the artifact's
            exported ONNX file (int8 when there is one; see `models.fast_encoder`); "auto": onnx when the
            artifact has the file, else torch.
        head_precision: the onnx path's label-attention head: "int8" (ONNX Runtime; "auto" is int8),
            "float32" or "bfloat16" (PyTorch). The torch path is always float32 PyTorch.

    Raises:
        ArtifactError: naming the file that is missing, corrupt or inconsistent.
    """
    if runtime not in RUNTIMES:
        raise ArtifactError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    root = Path(directory)
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a directory")
    config = read_config(root)
    catalog = catalog or get_catalog()
    thresholds = Thresholds.from_dict(_read_json(root / "thresholds.json"))
    head_choice(head_precision)  # an unknown precision is refused whether or not a transformer is inside
    scorer = _BUILDERS[config["kind"]](_read_state(root, config), root, catalog, runtime=runtime,
                                       head_precision=head_precision)
    return Predictor(scorer, catalog, thresholds, model_version=str(config["model_version"]))


_STATE_OF: dict[type, Callable[[Any], ScorerState]] = {
    LinearCoder: _linear_state,
    CatalogMatcher: _matcher_state,
    TransformerCoder: _transformer_state,
    HybridCoder: _hybrid_state,
    NeighborCoder: _stated_state,
    GroupCoder: _stated_state,
    CatalogRetriever: _stated_state,
}
_STATED = {"neighbors": NeighborCoder, "groups": GroupCoder, "retriever": CatalogRetriever}
_BUILDERS: dict[str, Callable[..., Any]] = {
    "linear": _build_linear,
    "matcher": _build_matcher,
    "transformer": _build_transformer,
    "hybrid": _build_hybrid,
    "neighbors": _build_stated,
    "groups": _build_stated,
    "retriever": _build_retriever,
}


def default_predictor(catalog: Catalog | None = None) -> Predictor:
    """The embedded default: the zero-shot catalogue matcher, needing no training data."""
    catalog = catalog or get_catalog()
    return Predictor(CatalogMatcher(catalog), catalog, DEFAULT_THRESHOLDS, model_version=DEFAULT_MODEL_VERSION)


# The matcher's scores are coverage-based, not calibrated: a full match of a specific name scores
# about 0.85-1.0, so only those are accepted without review.
DEFAULT_THRESHOLDS = Thresholds(accept=0.85, suggest=0.05, review_band=0.3)


def export_fast_path(directory: str | Path, quantize: bool = True, scorer: Any = None) -> list[Path]:
    """Export the encoder of every transformer and dense retriever in an artifact to ONNX, next to its weights.

    Args:
        scorer: the artifact's scorer when the caller has it (training does), to skip loading it again.

    Returns the files written (none for an artifact without a transformer or a dense retriever).

    Raises:
        ArtifactError: the artifact does not load, or the export does not match the PyTorch encoder.
    """
    root = Path(directory)
    scorer = scorer if scorer is not None else load_artifact(root).scorer
    targets = (
        {f"{name}.": part for name, part in scorer.components.items()}
        if isinstance(scorer, CompositeScorer) else {"": scorer}
    )
    written: list[Path] = []
    for prefix, part in targets.items():
        if isinstance(part, TransformerCoder):
            written += export_encoder(part.model.encoder, root, prefix=prefix, quantize=quantize)
        elif isinstance(part, CatalogRetriever):
            written += export_encoder(part.encoder.model, root, prefix=prefix, quantize=quantize)
    return written

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
from models.hybrid import CodeStats, HybridCoder, HybridSettings, code_converter
from models.linear import LinearCoder
from models.matcher import CatalogMatcher
from models.predictor import SYSTEMS, Predictor

FORMAT_VERSION = 1
KINDS = ("linear", "matcher", "hybrid")
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


def _linear_state(scorer: LinearCoder) -> ScorerState:
    settings, tensors, parts = scorer.state()
    labels = _labels_of(scorer)
    for system, codes in labels.items():
        if codes != sorted(codes):
            raise ArtifactError(f"{system} labels are not sorted")
    return ScorerState("linear", settings, [s for s in SYSTEMS if labels[s]], tensors, parts, labels)


def _matcher_state(scorer: CatalogMatcher) -> ScorerState:
    return ScorerState("matcher", scorer.settings(), list(dict.fromkeys(scorer.code_systems)))


def _hybrid_state(scorer: HybridCoder) -> ScorerState:
    linear, matcher = scorer.components["linear"], scorer.components["matcher"]
    lin = _linear_state(linear)
    return ScorerState(
        "hybrid",
        {"hybrid": scorer.settings_dict(), "linear": lin.settings, "matcher": matcher.settings(),
         "components": list(scorer.components)},
        list(dict.fromkeys(scorer.code_systems)),
        {f"linear.{k}": v for k, v in lin.tensors.items()}
        | ({"calibration.x": scorer.calibrator.x, "calibration.y": scorer.calibrator.y} if scorer.calibrator else {}),
        {"linear": lin.parts, "stats": asdict(scorer.stats)},
        lin.labels,
        {"ranker.txt": scorer.ranker_text},
    )


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


def _load_labels(root: Path) -> tuple[list[str], list[str]]:
    labels = _read_json(root / "labels.json")
    if not isinstance(labels, dict) or set(labels) - set(SYSTEMS):
        raise ArtifactError(f"{root / 'labels.json'}: expected an object keyed by {list(SYSTEMS)}")
    codes = [c for s in SYSTEMS for c in labels.get(s, [])]
    return codes, [s for s in SYSTEMS for _ in labels.get(s, [])]


def _load_tensors(root: Path) -> dict[str, np.ndarray]:
    try:
        return load_file(str(root / "weights.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{root / 'weights.safetensors'}: cannot be read ({exc})") from exc


def _build_linear(root: Path, settings: dict, tensors: dict[str, np.ndarray], parts: dict) -> LinearCoder:
    codes, code_systems = _load_labels(root)
    try:
        return LinearCoder.from_state(settings, tensors, parts, codes, code_systems)
    except ArtifactError as exc:
        raise ArtifactError(f"{root}: {exc}") from exc


def _build_matcher(root: Path, catalog: Catalog, systems: list[str], settings: dict) -> CatalogMatcher:
    try:
        return CatalogMatcher(catalog, tuple(systems), **settings)
    except TypeError as exc:
        raise ArtifactError(f"{root / 'config.json'}: bad matcher settings ({exc})") from exc


def _load_linear(root: Path, config: dict, catalog: Catalog) -> LinearCoder:
    return _build_linear(root, config.get("settings") or {}, _load_tensors(root), _read_json(root / "parts.json"))


def _load_matcher(root: Path, config: dict, catalog: Catalog) -> CatalogMatcher:
    return _build_matcher(root, catalog, config["systems"], config.get("settings") or {})


def _load_hybrid(root: Path, config: dict, catalog: Catalog) -> HybridCoder:
    settings = config.get("settings") or {}
    parts = _read_json(root / "parts.json")
    tensors = _load_tensors(root)
    try:
        linear = _build_linear(
            root, settings["linear"],
            {k.removeprefix("linear."): v for k, v in tensors.items() if k.startswith("linear.")}, parts["linear"],
        )
        calibrator = (
            IsotonicCalibrator(tensors["calibration.x"], tensors["calibration.y"])
            if "calibration.x" in tensors else None
        )
        matcher = _build_matcher(root, catalog, list(SYSTEMS), settings["matcher"])
        hybrid_settings = HybridSettings(**settings["hybrid"])
        stats = CodeStats(**parts["stats"])
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{root}: hybrid settings or parts are incomplete ({exc})") from exc
    ranker_path = root / "ranker.txt"
    if not ranker_path.is_file():
        raise ArtifactError(f"{ranker_path}: missing")
    try:
        return HybridCoder(
            {"linear": linear, "matcher": matcher},
            stats,
            ranker_path.read_text(encoding="utf-8"),
            hybrid_settings,
            convert=code_converter(catalog, hybrid_settings.code_form),
            calibrator=calibrator,
        )
    except ArtifactError as exc:
        raise ArtifactError(f"{ranker_path}: {exc}") from exc


def load_artifact(directory: str | Path, catalog: Catalog | None = None) -> Predictor:
    """Load an artifact directory into a ready Predictor.

    Raises:
        ArtifactError: naming the file that is missing, corrupt or inconsistent.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a directory")
    config = read_config(root)
    catalog = catalog or get_catalog()
    thresholds = Thresholds.from_dict(_read_json(root / "thresholds.json"))
    scorer = _LOADERS[config["kind"]](root, config, catalog)
    return Predictor(scorer, catalog, thresholds, model_version=str(config["model_version"]))


_STATE_OF: dict[type, Callable[[Any], ScorerState]] = {
    LinearCoder: _linear_state,
    CatalogMatcher: _matcher_state,
    HybridCoder: _hybrid_state,
}
_LOADERS: dict[str, Callable[[Path, dict, Catalog], Any]] = {
    "linear": _load_linear,
    "matcher": _load_matcher,
    "hybrid": _load_hybrid,
}


def default_predictor(catalog: Catalog | None = None) -> Predictor:
    """The embedded default: the zero-shot catalogue matcher, needing no training data."""
    catalog = catalog or get_catalog()
    return Predictor(CatalogMatcher(catalog), catalog, DEFAULT_THRESHOLDS, model_version=DEFAULT_MODEL_VERSION)


# The matcher's scores are coverage-based, not calibrated: a full match of a specific name scores
# about 0.85-1.0, so only those are accepted without review.
DEFAULT_THRESHOLDS = Thresholds(accept=0.85, suggest=0.05, review_band=0.3)

"""The trained artifact: one directory per model, written atomically, validated on load, never pickled.

Layout:
    config.json          format version, kind of scorer and its settings, model version
    labels.json          {"ICD-10-CM": [...], "ICD-10-PCS": [...]}, each sorted; outputs follow this order
    weights.safetensors  the scorer's arrays (absent for the catalogue matcher, which has none)
    parts.json           non-array state (e.g. the linear model's vocabulary)
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from models.catalog import Catalog, get_catalog
from models.decision import Thresholds
from models.errors import ArtifactError
from models.linear import LinearCoder
from models.matcher import CatalogMatcher
from models.predictor import SYSTEMS, Predictor

FORMAT_VERSION = 1
KINDS = ("linear", "matcher")
DEFAULT_MODEL_VERSION = "catalog-matcher-default"


def _labels_of(scorer: Any) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {s: [] for s in SYSTEMS}
    for code, system in zip(scorer.codes, scorer.code_systems):
        labels[system].append(code)
    return labels


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def save_artifact(
    directory: str | Path,
    scorer: LinearCoder | CatalogMatcher,
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
    if isinstance(scorer, LinearCoder):
        kind = "linear"
        settings, tensors, parts = scorer.state()
    elif isinstance(scorer, CatalogMatcher):
        kind, settings, tensors, parts = "matcher", scorer.settings(), {}, {}
    else:
        raise ArtifactError(f"cannot save a scorer of type {type(scorer).__name__}")
    labels = _labels_of(scorer)
    for system, codes in labels.items():
        if kind == "linear" and codes != sorted(codes):
            raise ArtifactError(f"{system} labels are not sorted")
    created = datetime.now(UTC)
    config = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "settings": settings,
        "model_version": model_version or f"{kind}-{created:%Y%m%d-%H%M%S}",
        "created": created.isoformat(),
        "systems": [s for s in SYSTEMS if labels[s]] if kind == "linear" else list(dict.fromkeys(scorer.code_systems)),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_json(tmp / "config.json", config)
        if kind == "linear":
            _write_json(tmp / "labels.json", labels)
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "weights.safetensors"))
            _write_json(tmp / "parts.json", parts)
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
    if config["kind"] == "matcher":
        settings = config.get("settings") or {}
        try:
            scorer: LinearCoder | CatalogMatcher = CatalogMatcher(catalog, tuple(config["systems"]), **settings)
        except TypeError as exc:
            raise ArtifactError(f"{root / 'config.json'}: bad matcher settings ({exc})") from exc
    else:
        labels = _read_json(root / "labels.json")
        if not isinstance(labels, dict) or set(labels) - set(SYSTEMS):
            raise ArtifactError(f"{root / 'labels.json'}: expected an object keyed by {list(SYSTEMS)}")
        codes = [c for s in SYSTEMS for c in labels.get(s, [])]
        code_systems = [s for s in SYSTEMS for _ in labels.get(s, [])]
        try:
            tensors = load_file(str(root / "weights.safetensors"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ArtifactError(f"{root / 'weights.safetensors'}: cannot be read ({exc})") from exc
        parts = _read_json(root / "parts.json")
        try:
            scorer = LinearCoder.from_state(config.get("settings") or {}, tensors, parts, codes, code_systems)
        except ArtifactError as exc:
            raise ArtifactError(f"{root}: {exc}") from exc
    return Predictor(scorer, catalog, thresholds, model_version=str(config["model_version"]))


def default_predictor(catalog: Catalog | None = None) -> Predictor:
    """The embedded default: the zero-shot catalogue matcher, needing no training data."""
    catalog = catalog or get_catalog()
    return Predictor(CatalogMatcher(catalog), catalog, DEFAULT_THRESHOLDS, model_version=DEFAULT_MODEL_VERSION)


# The matcher's scores are coverage-based, not calibrated: a full match of a specific name scores
# about 0.85-1.0, so only those are accepted without review.
DEFAULT_THRESHOLDS = Thresholds(accept=0.85, suggest=0.05, review_band=0.3)

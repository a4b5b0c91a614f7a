"""The trained artifact: one directory per model, written atomically, validated on load, never pickled.

Layout:
    config.json          format version, kind of scorer and its settings, model version, the scorer's own files
    labels.json          {"ICD-10-CM": [...], "ICD-10-PCS": [...]}, each sorted; outputs follow this order
    weights.safetensors  the scorer's arrays (absent for the catalogue matcher, which has none)
    parts.json           non-array state (e.g. the linear model's vocabulary, code frequencies)
    ranker.txt           the hybrid's LightGBM ranker, in LightGBM's text model format (one of the scorer's
                         own files, which config.json lists under "files")
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
from models.hybrid import HybridCoder
from models.linear import LinearCoder
from models.matcher import CatalogMatcher
from models.neighbors import NeighborCoder
from models.predictor import SYSTEMS, Predictor
from models.retriever import CatalogRetriever
from models.scorer import CompositeScorer, ScorerState, StateContext
from models.transformer import TransformerCoder

FORMAT_VERSION = 1
# Every kind of scorer an artifact can hold (a hybrid holds several): its class offers `to_state()` and
# `from_state(state, context)` (see `models.scorer`).
SCORER_KINDS: dict[str, type] = {
    "linear": LinearCoder,
    "matcher": CatalogMatcher,
    "transformer": TransformerCoder,
    "hybrid": HybridCoder,
    "neighbors": NeighborCoder,
    "groups": GroupCoder,
    "retriever": CatalogRetriever,
}
KINDS = tuple(SCORER_KINDS)
DEFAULT_MODEL_VERSION = "catalog-matcher-default"
# The artifact's own files; a scorer's files take other names.
_RESERVED = frozenset({"config.json", "labels.json", "weights.safetensors", "parts.json", "thresholds.json",
                       "metrics.json", "training_config.json", "data_fingerprint.json"})


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def scorer_state(scorer: Any) -> ScorerState:
    """The state of a scorer of a known kind (`SCORER_KINDS`), a hybrid's components included.

    Raises:
        ArtifactError: for an object of another type, or a state the artifact cannot hold.
    """
    if not isinstance(scorer, tuple(SCORER_KINDS.values())):
        raise ArtifactError(f"cannot save a scorer of type {type(scorer).__name__}")
    if isinstance(scorer, CompositeScorer):
        for component in scorer.components.values():
            if not isinstance(component, tuple(SCORER_KINDS.values())) or isinstance(component, CompositeScorer):
                raise ArtifactError(f"cannot save a hybrid component of type {type(component).__name__}")
    state = scorer.to_state()
    for name in state.files:
        if name in _RESERVED or not _plain_file_name(name):
            raise ArtifactError(f"a scorer file may not be named {name!r}")
    return state


def _plain_file_name(name: str) -> bool:
    return bool(name) and Path(name).name == name and not name.startswith(".") and "\\" not in name


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
        "files": sorted(state.files),
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
        for name, content in state.files.items():
            (tmp / name).write_bytes(content)
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


def read_json(path: Path) -> Any:
    """A JSON file's content.

    Raises:
        ArtifactError: the file is missing, or not UTF-8 JSON.
    """
    if not path.is_file():
        raise ArtifactError(f"{path}: missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc


def read_config(directory: str | Path) -> dict:
    """Read and validate an artifact's config.json."""
    path = Path(directory) / "config.json"
    config = read_json(path)
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
    labels = read_json(root / "labels.json") if (root / "labels.json").exists() else None
    if labels is not None and (not isinstance(labels, dict) or set(labels) - set(SYSTEMS)):
        raise ArtifactError(f"{root / 'labels.json'}: expected an object keyed by {list(SYSTEMS)}")
    parts = read_json(root / "parts.json") if (root / "parts.json").exists() else {}
    # The scorer's own files are listed in config.json; an artifact written before the list has its ranker
    # as its only one, a text file.
    names = config.get("files")
    if names is None:
        names = sorted(p.name for p in root.glob("*.txt"))
    if not isinstance(names, list) or not all(isinstance(n, str) and _plain_file_name(n) for n in names):
        raise ArtifactError(f"{root / 'config.json'}: files must be a list of plain file names")
    files = {}
    for name in names:
        try:
            files[name] = (root / name).read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{root / name}: cannot be read ({type(exc).__name__})") from exc
    return ScorerState(config["kind"], config.get("settings") or {}, config.get("systems") or list(SYSTEMS),
                       tensors, parts, labels, files)


def _parts_by_prefix(scorer: Any) -> dict[str, Any]:
    """The scorers that do the work, keyed by the prefix of their files in the artifact: a hybrid's
    components ("<name>."), or the scorer itself ("")."""
    if isinstance(scorer, CompositeScorer):
        return {f"{name}.": part for name, part in scorer.components.items()}
    return {"": scorer}


def _choose_runtimes(scorer: Any, root: Path, runtime: str, head_precision: str) -> None:
    """Each transformer and dense retriever on the asked runtime: with "onnx" (or "auto") their encoder
    runs from the artifact's exported ONNX file (`python -m training.export`).

    Raises:
        ArtifactError: "onnx" for a transformer the artifact has no exported encoder for.
    """
    if runtime not in ("onnx", "auto"):
        return
    for prefix, part in _parts_by_prefix(scorer).items():
        path = fast_encoder_file(root, prefix)
        if isinstance(part, TransformerCoder):
            if path is None and runtime == "onnx":
                raise ArtifactError(f"{root}: no exported encoder ({prefix}{INT8_FILE}); run "
                                    f"`python -m training.export --artifact {root}` or use the torch runtime")
            if path is not None:
                part.use_runtime(OnnxRuntime(OnnxEncoder(path), part.model.head, head_choice(head_precision)))
        elif isinstance(part, CatalogRetriever) and path is not None:
            part.encoder.fast = OnnxEncoder(path)  # else PyTorch encodes its sentences


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
    thresholds = Thresholds.from_dict(read_json(root / "thresholds.json"))
    head_choice(head_precision)  # an unknown precision is refused whether or not a transformer is inside
    try:
        scorer = StateContext(catalog, SCORER_KINDS).from_state(_read_state(root, config))
    except ArtifactError as exc:
        raise ArtifactError(f"{root}: {exc}") from exc
    _choose_runtimes(scorer, root, runtime, head_precision)
    return Predictor(scorer, catalog, thresholds, model_version=str(config["model_version"]))


# The embedded default reads US-style notes and codes them by the US guidelines: abbreviations written out
# (HTN, DM2, AFib); a condition named without detail to its unspecified code before an "other specified"
# one; an injury to its initial encounter unless the note says otherwise; names without their nonessential
# modifiers and closing "without ..." clauses, and as a note that leaves out the default says them (untyped
# diabetes is type 2); cancer as "malignant neoplasm", "hypoxic" as "hypoxia", "type 1" as one term; history
# and family history codes; long-term drug therapy, weeks of gestation and the outcome of a delivery;
# hypertension with heart failure or CKD, diabetes with its complications, coronary atherosclerosis with
# angina, as their combination; symptoms integral to a definitive diagnosis weigh half; what a note rules
# out ("MI r/o", "troponin neg", "never smoker") not coded; complete PCS codes, and no inspection beside the
# procedure it served; an unspecified site kept as a site; a code whose name lies inside the fuller name of a
# sibling or an Excludes1 partner gives way to it; status after a procedure (Z95.1 for "s/p CABG") and on
# dialysis; external causes only beside an injury; hemiplegia's dominant side from the handedness; obstetric
# names without "maternal care for" and with the trimester of the gestational age; a breast of the patient's
# sex; the 7th character from the note's encounter words; more "with" pairs as one code (N13.2, F10.220);
# a pregnant patient's conditions as complicating the pregnancy (O23.12, O99.282); the body mass index beside
# a weight diagnosis (Z68); morbid obesity as E66.01 and gout as idiopathic, as the index has them; no
# "without complications" code beside another of its category.
# A trained recipe chooses for its own notes (the same keys under `matcher:`); on CodiEsp's translated
# notes the abbreviations cost MAP (docs/quality.md).
DEFAULT_MATCHER_SETTINGS = {"abbreviations": True, "other_specified": 0.8, "later_encounter": 0.5,
                            "nonessential": True, "without_optional": True, "lexicon": 5, "history": True,
                            "status_codes": 3, "combinations": 3, "integral_symptoms": 0.5,
                            "complete_pcs": True, "inspection_inherent": True, "negation": 2,
                            "index_defaults": 3, "unspecified_site": True, "excluded_within": True,
                            "external_causes": 0.5, "dominance": True, "pregnancy": True, "sex": True,
                            "encounter": True, "uncomplicated": True}
# CodiEsp's coders followed conventions of their own: the procedure table row where a note did not tell
# its codes apart, inspections coded beside other procedures, and symptoms beside the diagnoses they
# belong to (418 of train's 500 notes; 29 % of its diagnosis codes are symptoms). Its code form leaves
# these off; they also coded what a note set out to rule out (a differential of 35 codes in one train note),
# and codes that an Excludes1 note keeps apart (414 such pairs in 192 of train's 500 notes).
_CODIESP_CONVENTIONS = {"complete_pcs": False, "inspection_inherent": False, "integral_symptoms": 1.0,
                        "negation": 1, "excluded_within": False}


def default_predictor(catalog: Catalog | None = None, code_form: str = "as-is", calibrated: bool = True) -> Predictor:
    """The embedded default: the zero-shot catalogue matcher, needing no training data. In CodiEsp's code
    form it codes as CodiEsp's coders did (procedure table rows such as 0DBN, inspections and symptoms kept).

    Its confidences are calibrated probabilities (`DEFAULT_CALIBRATION`, fitted per code form on coded notes
    by `python -m training.default_calibration`: US-style notes for "as-is", CodiEsp train for "codiesp");
    `calibrated=False` gives the raw match scores, to fit it.
    """
    catalog = catalog or get_catalog()
    settings = dict(DEFAULT_MATCHER_SETTINGS)
    if code_form == "codiesp":
        settings.update(_CODIESP_CONVENTIONS)
    thresholds = DEFAULT_THRESHOLDS
    if calibrated:
        shipped = default_calibration(code_form)
        settings["calibration"] = shipped["calibration"]
        thresholds = Thresholds.from_dict(shipped["thresholds"])
    return Predictor(CatalogMatcher(catalog, **settings), catalog, thresholds, model_version=DEFAULT_MODEL_VERSION)


# The thresholds of the raw match scores (`calibrated=False`), which are coverage-based: a full match of a
# specific name scores about 0.85-1.0.
DEFAULT_THRESHOLDS = Thresholds(accept=0.85, suggest=0.05, review_band=0.3)
# The default's calibrations and the thresholds tuned on them, one per code form, shipped with the package.
DEFAULT_CALIBRATION = Path(__file__).with_name("default_calibration.json")


def default_calibration(code_form: str = "as-is") -> dict:
    """The shipped calibration of the default in a code form: per code system the isotonic breakpoints
    (`calibration`), the decision `thresholds` tuned on them, and what they were fitted on (`fit`).

    A code form has its own because its coders had their own conventions: CodiEsp's coded symptoms beside
    diagnoses and the table row of a procedure, so the same match is right less often there.

    Raises:
        ArtifactError: the file is missing or unreadable, or holds no calibration for the code form.
    """
    data = read_json(DEFAULT_CALIBRATION)
    entry = data.get(code_form) if isinstance(data, dict) else None
    if not isinstance(entry, dict) or not {"calibration", "thresholds"} <= set(entry):
        raise ArtifactError(f"{DEFAULT_CALIBRATION}: expected 'calibration' and 'thresholds' under {code_form!r}")
    return entry


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
    written: list[Path] = []
    for prefix, part in _parts_by_prefix(scorer).items():
        if isinstance(part, TransformerCoder):
            written += export_encoder(part.model.encoder, root, prefix=prefix, quantize=quantize)
        elif isinstance(part, CatalogRetriever):
            written += export_encoder(part.encoder.model, root, prefix=prefix, quantize=quantize)
    return written

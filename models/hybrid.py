"""The hybrid coder: candidates from every component, re-ranked by gradient-boosted trees.

Each component (the linear model, the catalogue matcher, and any other scorer with the same interface)
proposes its best codes for a note. Every candidate gets features: each component's score and rank,
how often the code and its category occurred in training, and how much support the code's category
has. A LightGBM classifier trained on out-of-fold predictions turns them into the probability that the
code is correct. The ranker is stored as LightGBM's text model format, never as a pickle.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from models.calibration import IsotonicCalibrator, calibrate_keeping_order
from models.codes import category_of
from models.errors import ArtifactError
from models.hierarchy import GroupCoder
from models.scorer import SYSTEMS, DeferredScorer, EvidenceSource, Scored, ScorerState, StateContext
from models.text import Segment

OBJECTIVES = ("binary", "lambdarank")
RANKER_FILE = "ranker.txt"


@dataclass(frozen=True)
class HybridSettings:
    """How many candidates each component proposes per note and system, and the ranker's settings."""

    candidates_per_component: int = 60
    code_form: str = "as-is"  # "codiesp": CM codes without the 7th character, as CodiEsp writes them
    num_leaves: int = 15
    n_estimators: int = 300
    learning_rate: float = 0.05
    min_child_samples: int = 20
    # "binary": a classifier of each candidate; "lambdarank": one query per note, ordered for MAP. Either
    # way the isotonic calibration on top turns the ranker's output into a probability.
    objective: str = "binary"
    cooccurrence: bool = False  # features: how often a candidate came with the note's strong candidates


def code_converter(catalog, code_form: str):
    """The function that puts a component's code into the hybrid's code form ("as-is" or "codiesp")."""
    if code_form == "codiesp":
        return catalog.codiesp_form
    if code_form != "as-is":
        raise ArtifactError(f"unknown code form {code_form!r}; expected 'as-is' or 'codiesp'")
    return lambda code, system: code


def _key(system: str, code: str) -> str:
    return f"{system}|{code}"


@dataclass
class CodeStats:
    """Training-set frequencies of codes and categories (from the documents a model was fitted on), and
    how often two codes were given to the same note (`pair_counts`, keyed "a\tb" with a < b)."""

    code_counts: dict[str, int]
    category_counts: dict[str, int]
    documents: int
    pair_counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_targets(cls, targets: dict[str, list[list[str]]]) -> CodeStats:
        codes: Counter[str] = Counter()
        cats: Counter[str] = Counter()
        pairs: Counter[str] = Counter()
        documents = max((len(docs) for docs in targets.values()), default=0)
        for system, docs in targets.items():
            for doc in docs:
                codes.update(_key(system, c) for c in set(doc))
                cats.update({_key(system, category_of(c, system)) for c in doc})
        for d in range(documents):
            keys = sorted({_key(s, c) for s, docs in targets.items() if d < len(docs) for c in docs[d]})
            pairs.update(f"{a}\t{b}" for i, a in enumerate(keys) for b in keys[i + 1:])
        return cls(dict(codes), dict(cats), documents, dict(pairs))

    def given(self, code: str, other: str) -> float:
        """How often `code` was on a note that had `other` (both "system|code" keys): P(code | other)."""
        pair = f"{code}\t{other}" if code < other else f"{other}\t{code}"
        together = self.pair_counts.get(pair, 0)
        return together / self.code_counts[other] if together else 0.0


FEATURE_NAMES_PER_COMPONENT = ("score", "rank", "present", "category_max", "category_count")
FEATURE_NAMES_PER_GROUP_SCORER = ("group_score", "group_rank")
FEATURE_NAMES_GLOBAL = (
    "system", "code_length", "log_code_freq", "log_category_freq", "seen_in_training", "components_present",
    "n_candidates_same_category",
)
FEATURE_NAMES_COOCCURRENCE = ("cooc_max", "cooc_sum")
STRONG_PER_COMPONENT = 5  # a component's best codes per system are the note's "strong" candidates


def feature_names(components: list[str], groups: list[str] = (), cooccurrence: bool = False) -> list[str]:
    """Column names of the ranker's feature matrix: per proposing component, per group scorer, global."""
    return (
        [f"{c}_{f}" for c in components for f in FEATURE_NAMES_PER_COMPONENT]
        + [f"{g}_{f}" for g in groups for f in FEATURE_NAMES_PER_GROUP_SCORER]
        + list(FEATURE_NAMES_GLOBAL)
        + (list(FEATURE_NAMES_COOCCURRENCE) if cooccurrence else [])
    )


def candidate_features(
    component_scores: dict[str, dict[str, dict[str, float]]],
    stats: CodeStats,
    per_component: int,
    groups: frozenset[str] = frozenset(),
    cooccurrence: bool = False,
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Candidates of one note and their features.

    Args:
        component_scores: component -> system -> {code: score} (codes already in the hybrid's code form);
            for a group scorer, {category: score}.
        stats: training frequencies.
        per_component: candidates each component proposes per system.
        groups: the names of the components that score categories: they give features, not candidates.
        cooccurrence: add the co-occurrence features.
    Returns:
        (system, code) pairs and the (candidates, features) matrix, in `feature_names` order.
    """
    components = [c for c in component_scores if c not in groups]
    group_names = [g for g in component_scores if g in groups]
    ranks: dict[str, dict[str, dict[str, int]]] = {}
    candidates: dict[tuple[str, str], None] = {}
    strong: set[str] = set()
    for comp, by_system in component_scores.items():
        ranks[comp] = {}
        for system, scores in by_system.items():
            ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
            ranks[comp][system] = {code: r for r, (code, _) in enumerate(ordered)}
            if comp in groups:
                continue
            for code, score in ordered[:per_component]:
                if score > 0:
                    candidates[(system, code)] = None
            strong.update(_key(system, code) for code, score in ordered[:STRONG_PER_COMPONENT] if score > 0)
    strong_known = [o for o in strong if o in stats.code_counts] if cooccurrence else []
    pairs = list(candidates)
    cat_max: dict[str, dict[tuple[str, str], float]] = {comp: {} for comp in components}
    cat_count: dict[str, Counter[tuple[str, str]]] = {comp: Counter() for comp in components}
    for comp in components:
        for system, scores in component_scores[comp].items():
            top = sorted(scores.items(), key=lambda kv: -kv[1])[:per_component]
            for code, score in top:
                key = (system, category_of(code, system))
                cat_max[comp][key] = max(cat_max[comp].get(key, 0.0), score)
                cat_count[comp][key] += 1
    same_category = Counter((s, category_of(c, s)) for s, c in pairs)
    rows = np.zeros((len(pairs), len(feature_names(components, group_names, cooccurrence))), dtype=np.float32)
    missing_rank = float(per_component * 4)
    for i, (system, code) in enumerate(pairs):
        values: list[float] = []
        present = 0
        key = (system, category_of(code, system))
        for comp in components:
            score = component_scores[comp].get(system, {}).get(code, 0.0)
            rank = ranks[comp].get(system, {}).get(code)
            present += rank is not None and score > 0
            values += [
                score,
                float(rank) if rank is not None else missing_rank,
                float(rank is not None and score > 0),
                cat_max[comp].get(key, 0.0),
                float(cat_count[comp].get(key, 0)),
            ]
        for group in group_names:
            rank = ranks[group].get(system, {}).get(key[1])
            values += [component_scores[group].get(system, {}).get(key[1], 0.0),
                       float(rank) if rank is not None else missing_rank]
        code_freq = stats.code_counts.get(_key(system, code), 0)
        cat_freq = stats.category_counts.get(_key(system, key[1]), 0)
        values += [
            float(system == "ICD-10-PCS"),
            float(len(code.replace(".", ""))),
            math.log1p(code_freq),
            math.log1p(cat_freq),
            float(code_freq > 0),
            float(present),
            float(same_category[key]),
        ]
        if cooccurrence:
            own = _key(system, code)
            given = [stats.given(own, o) for o in strong_known if o != own] if code_freq else []
            values += [max(given, default=0.0), float(sum(given))]
        rows[i] = values
    return pairs, rows


class HybridCoder:
    """Components + frequencies + a LightGBM ranker; scores every code of the union vocabulary."""

    kind = "hybrid"

    def __init__(
        self,
        components: dict[str, Any],
        stats: CodeStats,
        ranker_text: str,
        settings: HybridSettings,
        convert=None,
        calibrator: IsotonicCalibrator | None = None,
    ) -> None:
        import lightgbm as lgb

        self.calibrator = calibrator
        self.components = components
        self.stats = stats
        self.settings = settings
        self.ranker_text = ranker_text
        try:
            self._ranker = lgb.Booster(model_str=ranker_text)
        except lgb.basic.LightGBMError as exc:
            raise ArtifactError(f"the ranker model cannot be read: {exc}") from exc
        if settings.objective not in OBJECTIVES:
            raise ArtifactError(f"unknown ranker objective {settings.objective!r}; expected one of {OBJECTIVES}")
        self.groups = group_scorers(components)
        expected = ranker_feature_names(components, settings.cooccurrence)
        if self._ranker.num_feature() != len(expected):
            raise ArtifactError(
                f"the ranker expects {self._ranker.num_feature()} features, the components give {len(expected)}"
            )
        trained = self._ranker.feature_name()
        if trained != expected:
            # Same count, other names or order: every feature would feed the wrong split of the trees.
            first = next(i for i, (a, b) in enumerate(zip(trained, expected)) if a != b)
            raise ArtifactError(f"the ranker's feature {first} is {trained[first]!r}, the components give "
                                f"{expected[first]!r}: the components are not those, or not in the order, it was "
                                "trained on")
        self._convert = convert or (lambda code, system: code)
        self._columns = component_columns(components, self._convert)
        # The union vocabulary of the proposing components, in the hybrid's code form, ordered by system
        # then code (a group scorer's columns are categories, not codes).
        vocab: set[tuple[str, str]] = set()
        for name, columns in self._columns.items():
            if name not in self.groups:
                vocab.update(zip(columns.systems.tolist(), columns.codes))
        ordered = sorted(vocab, key=lambda sc: (SYSTEMS.index(sc[0]), sc[1]))
        self.codes = [c for _, c in ordered]
        self.code_systems = [s for s, _ in ordered]
        self.code_to_idx = {sc: i for i, sc in enumerate(ordered)}
        # (system, code) -> the component's column; several columns may share one converted code.
        self._lookups = {
            name: {(s, c): j for j, (s, c) in reversed(list(enumerate(zip(columns.systems.tolist(), columns.codes))))}
            for name, columns in self._columns.items() if name not in self.groups
        }

    def proposers(self) -> dict[str, Any]:
        """The components whose columns are codes (candidates); the others score code groups."""
        return {name: comp for name, comp in self.components.items() if name not in self.groups}

    def component_scores(self, texts: list[str]) -> list[dict[str, dict[str, dict[str, float]]]]:
        """Per note: component -> system -> {code: score} for each component's top candidates."""
        return collect_component_scores(
            self.components, self._columns, texts, self.settings.candidates_per_component * 2
        )

    def score(self, texts: list[str]) -> Scored:
        """Ranker probabilities over the union vocabulary, (docs, codes), non-candidates 0; per note, its
        components' evidence (for each code, the first component that points at a sentence)."""
        outputs = run_components(self.components, texts, evidence=True)
        per_note = top_scores_per_note(self.components, self._columns, outputs, len(texts),
                                       self.settings.candidates_per_component * 2)
        sources: list[EvidenceSource] = [
            HybridEvidence(self, {name: outputs[name][1][d] for name in self._lookups}) for d in range(len(texts))
        ]
        return self._rank(per_note), sources

    def probs(self, texts: list[str]) -> np.ndarray:
        """The probabilities of `score` alone."""
        return self._rank(self.component_scores(texts))

    def _rank(self, per_note: list[dict[str, dict[str, dict[str, float]]]]) -> np.ndarray:
        """Ranker probabilities of each note's candidates, (docs, codes)."""
        out = np.zeros((len(per_note), len(self.codes)), dtype=np.float32)
        for d, scores in enumerate(per_note):
            pairs, features = candidate_features(scores, self.stats, self.settings.candidates_per_component,
                                                 self.groups, self.settings.cooccurrence)
            if not pairs:
                continue
            # A few hundred rows: threads cost more than they save, and requests run side by side.
            p = self._ranker.predict(features, num_threads=1)
            if self.calibrator is not None:
                p = calibrate_keeping_order(self.calibrator, p)
            for (system, code), value in zip(pairs, p):
                out[d, self.code_to_idx[(system, code)]] = value
        return out

    # -- storage -------------------------------------------------------------------------
    def to_state(self) -> ScorerState:
        """Each component's state nested under its name (tensors and files `<name>.<key>`, settings, parts
        and labels keyed by name), the frequencies, the calibration, and the ranker as `ranker.txt`
        (LightGBM's text model format)."""
        # The ranker's features follow the components' order; the artifact's JSON keeps objects with sorted
        # keys, so the order is kept as a list of its own.
        settings: dict = {"hybrid": asdict(self.settings), "components": {}, "order": list(self.components)}
        tensors: dict[str, np.ndarray] = {}
        parts: dict = {"stats": asdict(self.stats), "components": {}, "labels": {}}
        files = {RANKER_FILE: self.ranker_text.encode("utf-8")}
        for name, component in self.components.items():
            sub = component.to_state()
            settings["components"][name] = {"kind": sub.kind, "settings": sub.settings, "systems": sub.systems}
            tensors |= {f"{name}.{k}": v for k, v in sub.tensors.items()}
            parts["components"][name] = sub.parts
            parts["labels"][name] = sub.labels
            files |= {f"{name}.{k}": v for k, v in sub.files.items()}
        if self.calibrator is not None:
            tensors |= {"calibration.x": self.calibrator.x, "calibration.y": self.calibrator.y}
        return ScorerState(self.kind, settings, list(dict.fromkeys(self.code_systems)), tensors, parts, None, files)

    @classmethod
    def from_state(cls, state: ScorerState, context: StateContext | None = None) -> HybridCoder:
        """Rebuild from `to_state()`: each component through `context` (its registry of kinds), the code
        form from its catalogue. Raises ArtifactError when a part is missing or does not fit."""
        context = context or StateContext()
        try:
            hybrid_settings = HybridSettings(**state.settings["hybrid"])
            stats = CodeStats(**state.parts["stats"])
            components = {}
            specs = state.settings["components"]
            order = state.settings.get("order") or _trained_order(state.files.get(RANKER_FILE, b""), list(specs))
            if sorted(order) != sorted(specs):
                raise ArtifactError(f"the components' order {order} does not name the components {sorted(specs)}")
            for name in order:
                spec = specs[name]
                if spec["kind"] == cls.kind:
                    raise ArtifactError(f"component {name!r}: a hybrid cannot hold a hybrid")
                prefix = f"{name}."
                sub = ScorerState(
                    spec["kind"], spec["settings"], spec["systems"],
                    {k.removeprefix(prefix): v for k, v in state.tensors.items() if k.startswith(prefix)},
                    state.parts["components"].get(name) or {}, state.parts["labels"].get(name),
                    {k.removeprefix(prefix): v for k, v in state.files.items() if k.startswith(prefix)},
                )
                components[name] = context.from_state(sub)
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"hybrid settings or parts are incomplete ({exc})") from exc
        calibrator = (
            IsotonicCalibrator(state.tensors["calibration.x"], state.tensors["calibration.y"])
            if "calibration.x" in state.tensors else None
        )
        if RANKER_FILE not in state.files:
            raise ArtifactError(f"{RANKER_FILE}: missing")
        convert = code_converter(context.need_catalog(cls.kind), hybrid_settings.code_form)
        try:
            return cls(components, stats, state.files[RANKER_FILE].decode("utf-8"), hybrid_settings, convert=convert,
                       calibrator=calibrator)
        except (ArtifactError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{RANKER_FILE}: {exc}") from exc


def _trained_order(ranker_file: bytes, names: list[str]) -> list[str]:
    """The components' order as the ranker's feature names give it (artifacts written before the order was
    stored kept the components in an object with sorted keys); names it does not mention come last."""
    header = next((line for line in ranker_file.decode("utf-8", "replace").splitlines()
                   if line.startswith("feature_names=")), "")
    suffixes = FEATURE_NAMES_PER_COMPONENT + FEATURE_NAMES_PER_GROUP_SCORER
    order: list[str] = []
    for feature in header.removeprefix("feature_names=").split():
        for name in names:
            if name not in order and any(feature == f"{name}_{suffix}" for suffix in suffixes):
                order.append(name)
    return order + [name for name in names if name not in order]


class HybridEvidence:
    """One note's evidence from a hybrid: for each code, that of the first proposing component (in the
    components' order) that points at a sentence for it."""

    def __init__(self, hybrid: HybridCoder, sources: dict[str, EvidenceSource]) -> None:
        self._hybrid = hybrid
        self._sources = sources  # proposing component -> its evidence of this note

    def evidence(self, code_indices: list[int]) -> dict[int, Segment | None]:
        hybrid = self._hybrid
        result: dict[int, Segment | None] = {i: None for i in code_indices}
        for name, lookup in hybrid._lookups.items():
            wanted = {i: lookup.get((hybrid.code_systems[i], hybrid.codes[i])) for i in code_indices if result[i] is None}
            wanted = {i: j for i, j in wanted.items() if j is not None}
            if not wanted:
                continue
            spans = self._sources[name].evidence(list(wanted.values()))
            for i, j in wanted.items():
                result[i] = result[i] or spans.get(j)
        return result


def group_scorers(components: dict[str, Any]) -> frozenset[str]:
    """The names of the components that score code groups (features of candidates, never candidates)."""
    return frozenset(name for name, comp in components.items() if isinstance(comp, GroupCoder))


def ranker_feature_names(components: dict[str, Any], cooccurrence: bool) -> list[str]:
    """The ranker's feature names for a hybrid of these components (in their order)."""
    groups = group_scorers(components)
    return feature_names([n for n in components if n not in groups], [n for n in components if n in groups],
                         cooccurrence)


def top_scores(row: np.ndarray, system_ids: np.ndarray, codes: list[str], depth: int) -> dict[str, dict[str, float]]:
    """The `depth` best codes of each system in one score row: system -> {code: score}.

    `system_ids` is each column's system as an index into SYSTEMS (`Columns.system_ids`; comparing small
    integers, not strings, matters for the matcher's 160 000 columns). Only positive scores count (the
    matcher scores most codes 0, so they are skipped first); equal scores keep column order.
    """
    out: dict[str, dict[str, float]] = {}
    positive = np.flatnonzero(row > 0)
    positive_ids = system_ids[positive]
    for k, system in enumerate(SYSTEMS):
        if not (system_ids == k).any():
            continue
        columns = positive[positive_ids == k]
        if columns.size > depth:
            columns = columns[np.argpartition(-row[columns], depth - 1)[:depth]]
        scores: dict[str, float] = {}
        for j in columns[np.lexsort((columns, -row[columns]))]:
            code = codes[j]
            scores[code] = max(scores.get(code, 0.0), float(row[j]))
        out[system] = scores
    return out


class Columns(NamedTuple):
    """A component's output columns: each one's system and its code in the hybrid's form (computed once)."""

    systems: np.ndarray  # system names
    codes: list[str]
    system_ids: np.ndarray  # the systems as indices into SYSTEMS


def component_columns(components: dict[str, Any], convert) -> dict[str, Columns]:
    """Per component, the system and the code in the hybrid's form of each output column."""
    out = {}
    for name, comp in components.items():
        systems = np.asarray(comp.code_systems)
        ids = np.zeros(len(systems), dtype=np.int8)
        for k, system in enumerate(SYSTEMS):
            ids[systems == system] = k
        out[name] = Columns(systems, [convert(c, s) for c, s in zip(comp.codes, comp.code_systems)], ids)
    return out


def run_components(components: dict[str, Any], texts: list[str], evidence: bool = False
                   ) -> dict[str, tuple[np.ndarray, list[EvidenceSource] | None]]:
    """Each component's scores of the notes, (docs, component codes), and with `evidence` each note's
    evidence source (else None)."""
    # A scorer that can start its pass and finish it later (the coalescing transformer) runs while this
    # thread scores with the others.
    started = {name: comp.score_later(texts) for name, comp in components.items() if isinstance(comp, DeferredScorer)}
    outputs = {name: comp.score(texts) if evidence else (comp.probs(texts), None)
               for name, comp in components.items() if name not in started}
    for name, finish in started.items():
        probs, sources = finish()
        outputs[name] = (probs, sources if evidence else None)
    return outputs


def top_scores_per_note(components: dict[str, Any], columns: dict[str, Columns],
                        outputs: dict[str, tuple[np.ndarray, Any]], n_texts: int, depth: int
                        ) -> list[dict[str, dict[str, dict[str, float]]]]:
    """Per note: component -> system -> {code in the hybrid's form: score}, each component's best `depth`."""
    per_note: list[dict[str, dict[str, dict[str, float]]]] = [{} for _ in range(n_texts)]
    for name in components:  # in the components' order: the ranker's features follow it
        for d, row in enumerate(outputs[name][0]):  # (docs, component codes)
            per_note[d][name] = top_scores(row, columns[name].system_ids, columns[name].codes, depth)
    return per_note


def collect_component_scores(
    components: dict[str, Any], columns: dict[str, Columns], texts: list[str], depth: int
) -> list[dict[str, dict[str, dict[str, float]]]]:
    """Per note: component -> system -> {code in the hybrid's form: score}, each component's best `depth`."""
    return top_scores_per_note(components, columns, run_components(components, texts), len(texts), depth)

"""Zero-shot catalogue matcher: every billable ICD-10-CM code and every ICD-10-PCS code, no training.

Each code has one or more *names* (its description with the non-essential parts removed, and its
inclusion terms). A note is split into sentences; for every (sentence, name) pair the matcher measures
how much of the name's information (idf mass over the catalogue's own vocabulary) the sentence
contains. A code scores high when one sentence covers one of its names fully; among codes that are
covered, the one whose matched name carries more information (the more specific code) ranks first.
Everything that does not depend on the note is built once, at construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from models.abbreviations import AbbreviationExpander
from models.catalog import Catalog
from models.errors import ArtifactError
from models.scorer import Scored, ScorerState, StateContext
from models.text import Segment, SentenceEvidence, split_sentences, tokenize

# Words that carry no information for matching, and the words of "unspecified" style that a note
# rarely states: a code named "X, unspecified" is what a note that merely says "X" is coded as.
_STOP = frozenset(
    "a an and are as at by due for from in into is of on or the to with than other specified "
    "unspecified nos nec elsewhere classified site part not approach".split()
)
_OPTIONAL_TAIL_RE = re.compile(
    r"(,\s*unspecified(\s+\w+){0,2}|,?\s*not elsewhere classified|\s+without complications?)\s*$",
    re.IGNORECASE,
)
_PARENS_RE = re.compile(r"\([^()]*\)")
# ICD-10-CM 7th characters D (subsequent encounter) and S (sequela): coded only when the note says so.
_LATER_ENCOUNTER_RE = re.compile(r",\s*(subsequent encounter|sequela)\b", re.IGNORECASE)
_LATER_CUE_RE = re.compile(r"\b(subsequent|follow[- ]?up|sequela|late effect|healing|aftercare|residual)", re.IGNORECASE)
_INITIAL_ENCOUNTER_RE = re.compile(r",\s*initial encounter(\s+for closed fracture)?\s*$", re.IGNORECASE)
_OTHER_RE = re.compile(r"^other\b|\bother specified\b", re.IGNORECASE)  # "other specified" CM codes
_APPROACH_RE = re.compile(r",\s*[^,]*approach\s*$", re.IGNORECASE)

# Clinical synonyms mapped onto the catalogue's words (both sides of a match pass through this).
_SYNONYMS = {
    "renal": "kidney", "kidneys": "kidney", "hepatic": "liver", "pulmonary": "lung", "lungs": "lung",
    "cardiac": "heart", "gastric": "stomach", "cerebral": "brain", "ocular": "eye", "dermal": "skin",
    "cutaneous": "skin", "vesical": "bladder", "ureteral": "ureter", "testicular": "testis",
    "testicle": "testis", "ovarian": "ovary", "uterine": "uterus", "colonic": "colon",
    "ultrasound": "ultrasonography", "ultrasounds": "ultrasonography", "sonography": "ultrasonography",
    "echography": "ultrasonography", "ultrasonographic": "ultrasonography", "ecography": "ultrasonography",
    "tomographic": "tomography", "scan": "tomography", "tac": "tomography",
    "mr": "magnetic", "radiographs": "radiography",
    "radiological": "radiography", "radiology": "radiography",
    "tumour": "neoplasm", "tumor": "neoplasm", "tumors": "neoplasm", "tumours": "neoplasm",
    "neoplasia": "neoplasm", "carcinoma": "malignant", "cancer": "malignant", "metastases": "secondary",
    "metastatic": "secondary", "metastasis": "secondary", "hypertensive": "hypertension",
    "diabetic": "diabetes", "abdominal": "abdomen", "thoracic": "chest", "thorax": "chest",
    "cranial": "head", "skull": "head", "pelvic": "pelvis", "lumbar": "lumbar", "cervical": "cervical", "anaemia": "anemia", "haemorrhage": "hemorrhage", "bleeding": "hemorrhage",
    "infarct": "infarction", "fever": "fever", "febrile": "fever", "pyrexia": "fever",
    "biopsy": "excision", "biopsies": "excision", "removal": "excision", "resected": "resection",
    "excised": "excision", "drained": "drainage", "puncture": "drainage", "aspiration": "drainage",
    "transfusion": "transfusion", "intravenous": "vein", "iv": "vein",
}


# Words that stand for several catalogue words: "appendectomy" is a resection of the appendix.
_EXPANSIONS = {
    "appendectomy": ("resection", "appendix"), "cholecystectomy": ("resection", "gallbladder"),
    "nephrectomy": ("resection", "kidney"), "hysterectomy": ("resection", "uterus"),
    "colectomy": ("resection", "colon"), "gastrectomy": ("resection", "stomach"),
    "mastectomy": ("resection", "breast"), "splenectomy": ("resection", "spleen"),
    "thyroidectomy": ("resection", "thyroid"), "prostatectomy": ("resection", "prostate"),
    "orchiectomy": ("resection", "testis"), "oophorectomy": ("resection", "ovary"),
    "adrenalectomy": ("resection", "adrenal"), "pancreatectomy": ("resection", "pancreas"),
    "cystectomy": ("resection", "bladder"), "laparoscopic": ("percutaneous", "endoscopic"),
    "laparoscopy": ("percutaneous", "endoscopic"), "endoscopy": ("endoscopic",),
    "ecg": ("measurement", "cardiac", "electrical", "activity"),
    "ekg": ("measurement", "cardiac", "electrical", "activity"),
    "electrocardiogram": ("measurement", "cardiac", "electrical", "activity"),
    "electrocardiography": ("measurement", "cardiac", "electrical", "activity"),
    "testicular": ("testis", "scrotum"), "scrotal": ("scrotum",),
    "ct": ("computerized", "tomography"), "mri": ("magnetic", "resonance", "imaging"),
    "xray": ("plain", "radiography"), "radiograph": ("plain", "radiography"),
    "radiography": ("plain", "radiography"), "ultrasound": ("ultrasonography",),
}


def _stem(token: str) -> str:
    token = _SYNONYMS.get(token, token)
    if len(token) > 4 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        token = token[:-1]
        token = _SYNONYMS.get(token, token)
    return token


# Negation and family-history cues. A cue marks the next content words of its clause, up to a NegEx-like
# window ("denies chest pain, reports cough": chest and pain are negated, cough is not), so that a negated
# or a relative's condition does not match a code name; "without" reaches one word ("without
# complications" is its own term, and a diagnosis after it is still coded).
_ABSENCE = frozenset(
    "without no non not denies denied deny negative absence absent free excluded ruled".split()
)
_FAMILY = frozenset(
    "mother father brother sister sibling siblings maternal paternal family grandmother "
    "grandfather aunt uncle son daughter".split()
)
NEGATION_SCOPE = 4  # content words a cue reaches
_SCOPE = {"without": 1, "non": 1}
_CLAUSE_RE = re.compile(r"[,;:.()\[\]]|\bbut\b|\bhowever\b|\balthough\b")


def _terms(text: str) -> list[str]:
    """Matching terms: stemmed, stop words dropped, negated / family words marked as such."""
    terms: list[str] = []
    for clause in _CLAUSE_RE.split(text.lower()):
        prefix, scope = "", 0
        for token in tokenize(clause):
            if token in _ABSENCE:
                prefix, scope = "not_", _SCOPE.get(token, NEGATION_SCOPE)
                continue
            if token in _FAMILY and not scope:
                prefix, scope = "fam_", NEGATION_SCOPE
                continue
            if token in _STOP:
                continue
            if scope == 0:
                prefix = ""
            terms.extend(prefix + _stem(t) for t in _EXPANSIONS.get(token, (token,)))
            scope = max(scope - 1, 0)
    return terms


def _name_variants(description: str, system: str, encounter_optional: bool = False) -> list[str]:
    """The description and its forms without the parts a note rarely states (with `encounter_optional`,
    also ", initial encounter": the default encounter of an injury)."""
    variants = [description]
    core = _PARENS_RE.sub(" ", description)
    if encounter_optional:
        core = _INITIAL_ENCOUNTER_RE.sub("", core)
    core = _OPTIONAL_TAIL_RE.sub("", core)
    if system == "ICD-10-PCS":
        core = _APPROACH_RE.sub("", core)
    if core.strip() and core != description:
        variants.append(core)
    return variants


def catalog_entries(catalog: Catalog, system: str) -> list[tuple[str, str, list[str]]]:
    """(code, description, other names) of every code a zero-shot scorer proposes in one system: every
    billable ICD-10-CM code with its inclusion terms; every ICD-10-PCS code and the 4-character prefixes
    that the PCS alphabetic index points at, with their index names."""
    if system == "ICD-10-CM":
        return [(c, catalog.cm.description(c), catalog.cm.inclusion_terms(c)) for c in catalog.cm.billable_codes]
    # The PCS alphabetic index names procedures the way notes do ("Colonoscopy"); it points at full codes
    # and at 4-character prefixes, which become codes too. A prefix with a single code under it stands
    # for that code. A prefix with several (CT with or without contrast, say) is what a coder writes when
    # the note does not tell them apart, so it comes first and wins ties with its codes.
    index_names: dict[str, list[str]] = {}
    for name, code in catalog.pcs.index_entries:
        if len(code) == 4 and len(catalog.pcs.codes_under(code)) == 1:
            code = catalog.pcs.codes_under(code)[0]
        if len(code) in (4, 7) and catalog.pcs.is_valid(code):
            index_names.setdefault(code, []).append(name)
    prefixes = sorted(c for c in index_names if len(c) == 4)
    entries = [(c, catalog.pcs.description(c), index_names[c]) for c in prefixes]
    return entries + [(c, catalog.pcs.descriptions[c], index_names.get(c, [])) for c in catalog.pcs.codes]


@dataclass(frozen=True, eq=False)
class MatchResult(SentenceEvidence):
    """Scores of one note over the matcher's codes, with the best supporting sentence per code (-1 in
    `best_segment` where nothing matched): the note's evidence source."""

    scores: np.ndarray  # (n_codes,) in [0, 1]


class CatalogMatcher:
    """Scores every catalogue code against a note by lexical coverage of the code's names."""

    kind = "matcher"

    def __init__(
        self,
        catalog: Catalog,
        systems: tuple[str, ...] = ("ICD-10-CM", "ICD-10-PCS"),
        min_coverage: float = 0.6,
        mass_scale: float = 8.0,
        sibling_decay: float = 0.6,
        abbreviations: bool = False,
        other_specified: float = 1.0,
        later_encounter: float = 1.0,
    ) -> None:
        self.min_coverage = min_coverage
        self.mass_scale = mass_scale
        self.sibling_decay = sibling_decay
        self.other_specified = other_specified
        self.later_encounter = later_encounter
        other_codes: list[bool] = []
        later_codes: list[bool] = []
        self.codes: list[str] = []
        self.code_systems: list[str] = []
        names: list[list[str]] = []
        name_code: list[int] = []
        for system in systems:
            entries = catalog_entries(catalog, system)
            for code, description, inclusion in entries:
                code_idx = len(self.codes)
                other_codes.append(system == "ICD-10-CM" and bool(_OTHER_RE.search(description)))
                later_codes.append(system == "ICD-10-CM" and bool(_LATER_ENCOUNTER_RE.search(description)))
                self.codes.append(code)
                self.code_systems.append(system)
                seen: set[tuple[str, ...]] = set()
                for name in [*_name_variants(description, system, later_encounter < 1.0), *inclusion]:
                    terms = tuple(dict.fromkeys(_terms(name)))
                    if terms and terms not in seen:
                        seen.add(terms)
                        names.append(list(terms))
                        name_code.append(code_idx)
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, terms in enumerate(names):
            for t in terms:
                rows.append(i)
                cols.append(vocab.setdefault(t, len(vocab)))
        self.vocab = vocab
        # A note's abbreviations are written out before matching (models.abbreviations); one that is
        # itself a catalogue word is left alone.
        self.abbreviations = AbbreviationExpander(lambda w: _stem(w) in vocab) if abbreviations else None
        n_names = len(names)
        presence = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_names, len(vocab)))
        df = np.asarray(presence.sum(axis=0)).ravel()
        self.idf = np.log((1 + n_names) / (1 + df)).astype(np.float32) + 1.0
        self._name_weights = (presence @ sp.diags(self.idf)).T.tocsr()  # (vocab, names)
        self._name_mass = np.asarray(presence @ self.idf).ravel()  # (names,)
        self._name_code = np.asarray(name_code, dtype=np.int64)
        # Guideline: a note that names a condition without more detail is coded to the documented,
        # unspecified code, not to "other specified"; such codes' names weigh `other_specified` (1: as any).
        self._name_prior = np.where(np.asarray(other_codes, bool)[self._name_code], np.float32(other_specified),
                                    np.float32(1.0)).astype(np.float32)
        # Guideline: an injury is coded for the initial encounter (7th character A) unless the note says
        # the encounter is a later one; subsequent-encounter and sequela names weigh `later_encounter` in a
        # sentence without such words.
        self._name_later = np.asarray(later_codes, bool)[self._name_code] if later_encounter < 1.0 else None
        self.code_to_idx = {c: i for i, c in enumerate(self.codes)}
        # Codes of one category (CM) or one root operation and body part (PCS) are siblings: a
        # sentence names one concept, so its second-best sibling is worth less than its best.
        groups = [c[:3] if s == "ICD-10-CM" else c[:4] for c, s in zip(self.codes, self.code_systems)]
        group_ids = {g: i for i, g in enumerate(dict.fromkeys(groups))}
        self._code_group = np.asarray([group_ids[g] for g in groups], dtype=np.int64)

    def _sentence_matrix(self, segments: list[Segment]) -> sp.csr_matrix:
        rows, cols = [], []
        for i, seg in enumerate(segments):
            text = self.abbreviations.expand(seg.text) if self.abbreviations else seg.text
            for t in set(_terms(text)):
                j = self.vocab.get(t)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        return sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(segments), len(self.vocab))
        )

    def match(self, text: str) -> MatchResult:
        """Score every code against one note."""
        segments = split_sentences(text)
        scores = np.zeros(len(self.codes), dtype=np.float32)
        best_segment = np.full(len(self.codes), -1, dtype=np.int64)
        if not segments:
            return MatchResult(segments, best_segment, scores)
        matched = (self._sentence_matrix(segments) @ self._name_weights).tocoo()  # (sentences, names)
        coverage = matched.data / self._name_mass[matched.col]
        keep = coverage >= self.min_coverage
        sent_idx, name_idx, coverage = matched.row[keep], matched.col[keep], coverage[keep]
        mass = matched.data[keep]
        name_scores = coverage**3 * (1.0 - np.exp(-mass / self.mass_scale)) * self._name_prior[name_idx]
        if self._name_later is not None:
            plain = np.asarray([not _LATER_CUE_RE.search(s.text) for s in segments])
            name_scores *= np.where(self._name_later[name_idx] & plain[sent_idx], np.float32(self.later_encounter), 1.0)
        code_idx = self._name_code[name_idx]
        order = np.argsort(-name_scores, kind="stable")
        # The first occurrence of a code in descending score order is its best (sentence, name).
        codes_sorted = code_idx[order]
        _, first = np.unique(codes_sorted, return_index=True)
        best = order[first]
        best = best[np.argsort(-name_scores[best], kind="stable")]
        # Rank of each code among the siblings matched in the same sentence, best first.
        keys = self._code_group[code_idx[best]] * (len(segments) + 1) + sent_idx[best]
        _, group = np.unique(keys, return_inverse=True)
        by_group = np.argsort(group, kind="stable")  # positions grouped, best first within each group
        sorted_groups = group[by_group]
        first_of_group = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
        group_sizes = np.diff(np.r_[first_of_group, len(sorted_groups)])
        sibling_rank = np.empty(len(best), dtype=np.int64)
        sibling_rank[by_group] = np.arange(len(sorted_groups)) - np.repeat(first_of_group, group_sizes)
        scores[code_idx[best]] = name_scores[best] * self.sibling_decay**sibling_rank
        best_segment[code_idx[best]] = sent_idx[best]
        return MatchResult(segments, best_segment, scores)

    # -- the scorer interface shared with the other coders -------------------------------
    def score(self, texts: list[str]) -> Scored:
        """Match scores in [0, 1] for each note, (docs, codes), not calibrated probabilities; each note's
        match result is its evidence (the sentence that matched each code best)."""
        results = [self.match(t) for t in texts]
        if not results:
            return np.zeros((0, len(self.codes))), []
        return np.stack([r.scores for r in results]), list(results)

    def probs(self, texts: list[str]) -> np.ndarray:
        """The scores of `score` alone."""
        return self.score(texts)[0]

    # -- storage -------------------------------------------------------------------------
    def to_state(self) -> ScorerState:
        """Its settings and code systems only: it is rebuilt from the catalogue."""
        settings = {"min_coverage": self.min_coverage, "mass_scale": self.mass_scale,
                    "sibling_decay": self.sibling_decay, "abbreviations": self.abbreviations is not None,
                    "other_specified": self.other_specified, "later_encounter": self.later_encounter}
        return ScorerState(self.kind, settings, list(dict.fromkeys(self.code_systems)))

    @classmethod
    def from_state(cls, state: ScorerState, context: StateContext | None = None) -> CatalogMatcher:
        """Rebuild from the catalogue of `context`; raises ArtifactError for settings it does not know."""
        catalog = (context or StateContext()).need_catalog(cls.kind)
        try:
            # Artifacts from before the abbreviation lexicon keep the matcher their ranker was trained on.
            return cls(catalog, tuple(state.systems), **{"abbreviations": False, **state.settings})
        except TypeError as exc:
            raise ArtifactError(f"bad matcher settings ({exc})") from exc

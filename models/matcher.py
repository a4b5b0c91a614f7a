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
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from models.abbreviations import AbbreviationExpander
from models.calibration import IsotonicCalibrator, calibrate_keeping_order
from models.catalog import Catalog
from models.combinations import (
    COMBINED,
    CONDITIONS,
    CORONARY,
    CORONARY_WITH,
    DIABETES,
    DIABETES_WITH,
    HYPERTENSION,
    IN_PREGNANCY,
    PAIRS,
    coronary_combination,
    diabetes_combinations,
    hypertension_combination,
    pair_combinations,
    pregnancy_combinations,
)
from models.errors import ArtifactError
from models.history import assign, history_ranges
from models.pcs_completion import complete, stated_approaches, stated_duration
from models.scorer import Scored, ScorerState, StateContext
from models.status import (
    BMI,
    GESTATION,
    OUTCOME,
    body_mass_index,
    delivery_outcome,
    drug_therapy,
    gestation,
    procedure_status,
    trimester,
)
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
# What may follow ", unspecified" and still go with it: the kind of detail left unstated, or an organ the
# condition's own name implies (conjunctivitis is of an eye). Any other word is a site the note must name:
# "Puncture wound without foreign body, unspecified hip" is no name for a puncture wound of the hand.
_UNSTATED_DETAIL = frozenset(
    "site sites side part portion region trimester depth degree stage time class level type organism severity "
    "weight cause control size person injured incompatibility material reason other eye eyes eyelid lid ear "
    "in remission relapse".split())
_UNSPECIFIED_TAIL_RE = re.compile(r",\s*unspecified((?:\s+\w+){0,2})\s*$", re.IGNORECASE)
# A part of a named site left unstated goes, the site stays: "Sprain of unspecified ligament of right ankle"
# is what "right ankle sprain" means, "Burn of unspecified degree of right hand" a burn of the right hand.
_UNSPECIFIED_PART_RE = re.compile(
    r"\bof unspecified (?:(?:degree|phalanx|front wall|back wall|wall|interphalangeal joint|(?:collateral |cruciate )?"
    r"ligament|deep veins|veins|deep vessels|blood vessel|bone|nerves?|level|type) )(?=of\b)", re.IGNORECASE)
_PARENS_RE = re.compile(r"\([^()]*\)")
_UNCOMPLICATED_RE = re.compile(r",\s*uncomplicated\s*$", re.IGNORECASE)  # what a note that says no more means
# So does a closing "without ..." clause: "Diverticulitis of large intestine without perforation or abscess
# without bleeding" is what a note that says "diverticulitis of the colon" means.
_WITHOUT_TAIL_RE = re.compile(r"\s+without\b[^,]*$", re.IGNORECASE)
# A "without ..." clause followed by the site goes, the site stays: "Laceration without foreign body of
# scalp" is a scalp laceration, "... fracture without intercondylar fracture of right humerus" a humerus
# fracture. (In "without loss of consciousness" the "of" belongs to the clause, which goes whole.)
_WITHOUT_BEFORE_SITE_RE = re.compile(
    r"\s+without\s+(?:foreign body|intraarticular extension|intracondylar extension|intercondylar fracture)"
    r"(?=\s+of\b)", re.IGNORECASE)
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


# Versions of the lexicon: an artifact keeps the one its ranker was trained on. Version 2 writes cancer
# and smoker out as the catalogue does ("malignant neoplasm"; the index's "Smoker - see Dependence, drug,
# nicotine"): one word of a two-word name covered too little of it.
_LEXICON_2 = {**_EXPANSIONS, "smoker": ("nicotine", "dependence"),
              **{w: ("malignant", "neoplasm") for w in ("cancer", "cancers", "carcinoma", "carcinomas")}}
# Version 3 also reads a condition's adjective as its noun, in notes and names alike ("acute hypoxic
# respiratory failure" is the catalogue's "acute respiratory failure with hypoxia"), and an extremity as
# the catalogue's limb ("RLE cellulitis", L03.115) and a part of the colon as the large intestine it is
# ("sigmoid diverticulitis", K57.32).
_CATALOGUE_WORDS = {
    "extremity": "limb", "extremities": "limb",
    "hypoxic": "hypoxia", "hypoxemic": "hypoxia", "hypercapnic": "hypercapnia", "hypercarbic": "hypercapnia",
    "anemic": "anemia", "ischemic": "ischemia", "septic": "sepsis", "obese": "obesity",
    "hyperglycemic": "hyperglycemia", "hypoglycemic": "hypoglycemia", "dehydrated": "dehydration",
    "fractured": "fracture", "infected": "infection", "inflamed": "inflammation", "nauseated": "nausea",
    "nauseous": "nausea", "asthmatic": "asthma", "anginal": "angina", "arthritic": "arthritis",
    "osteoporotic": "osteoporosis", "cirrhotic": "cirrhosis", "edematous": "edema", "syncopal": "syncope",
    "hypotensive": "hypotension", "tachycardic": "tachycardia", "bradycardic": "bradycardia",
    "hyponatremic": "hyponatremia", "hypokalemic": "hypokalemia", "hyperkalemic": "hyperkalemia",
    "psychotic": "psychosis", "depressive": "depression", "epileptic": "epilepsy", "migrainous": "migraine",
}
_LEXICONS = {
    1: _EXPANSIONS,
    2: _LEXICON_2,
    3: {**_LEXICON_2, **{word: (theirs,) for word, theirs in _CATALOGUE_WORDS.items()},
        **{part: (part, "large", "intestine") for part in ("colon", "sigmoid", "cecum", "rectosigmoid")}},
}
# Version 4 reads a number as part of the type, stage, grade or class it gives ("type 1" is one term, and
# "type II" the same as "type 2"), so that a "1" elsewhere in the sentence ("1 ppd") is not type 1 diabetes.
# It also reads the index's words for a few adjectives: "calculous cholecystitis" is cholecystitis with
# calculus (K80.00), an incarcerated or strangulated hernia one with obstruction (K40.30).
_LEXICONS[4] = {**_LEXICONS[3], "calculous": ("calculus",), "incarcerated": ("obstruction",),
                "strangulated": ("obstruction",)}
# Version 5 reads the organ a condition's name implies and the index's "Stone - see Calculus": "acute
# calculous cholecystitis" is K80.00's "calculus of gallbladder with acute cholecystitis", "cholelithiasis"
# a calculus of the gallbladder, a "stone" in the ureter a ureteral calculus; and "Hemiparesis - see
# Hemiplegia"; "preeclampsia" as the catalogue's "pre-eclampsia".
_LEXICONS[5] = {**_LEXICONS[4], "hemiparesis": ("hemiplegia",), "monoparesis": ("monoplegia",),
                "preeclampsia": ("pre", "eclampsia"), "embolic": ("embolism",), "cardioembolic": ("embolism",),
                "thrombotic": ("thrombosis",),
                "cholecystitis": ("cholecystitis", "gallbladder"),
                "cholelithiasis": ("calculus", "gallbladder"), "gallstone": ("calculus", "gallbladder"),
                "choledocholithiasis": ("calculus", "bile", "duct"), "nephrolithiasis": ("calculus", "kidney"),
                "ureterolithiasis": ("calculus", "ureter"), "stone": ("calculus",), "stones": ("calculus",),
                "gallstones": ("calculus", "gallbladder")}
_NUMBERED = frozenset("type stage grade class".split())
_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5"}
_NUMBER_RE = re.compile(r"\d+[a-z]?")


@lru_cache(maxsize=1 << 16)  # the catalogue's names alone ask for it about two million times at start-up
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
_GIVE_WAY = np.float32(0.5)  # a condition of the past, one a combination replaces, an inherent inspection
_PROCEDURE_NAMED = 0.3  # a PCS score from which a procedure counts as named
_DEFINITIVE = 0.6  # a diagnosis score from which a definitive diagnosis counts as named
_DIAGNOSIS_STATEMENT_RE = re.compile(r"\b(?:dx|ddx|diagnos[ei]s|impression|assessment|a/p)\b", re.IGNORECASE)
_CLAUSE_RE = re.compile(r"[,;:.()\[\]]|\bbut\b|\bhowever\b|\balthough\b")
_TO_CLAUSE_END = 1 << 30  # the scope of a cue that reaches the end of its clause
# Personal-history cues of a note ("history of stroke", "prior MI", "former smoker", "PMH: ..."); they
# reach the end of their clause, a heading ("past medical history:", "family history:") the end of its
# sentence.
_HISTORY = frozenset("history previous prior remote former".split())
# Negation version 2 also reads cues written after what they rule out, closing their clause ("troponin
# neg x3", "stress test negative", "MI ruled out", "MI r/o"): they mark the clause's words before them, as
# far as a cue reaches. With it, "never" is a cue ("never smoker"), and a condition still to be ruled out
# ("r/o PE") is not coded, as outpatient coders do (guideline IV.H); inpatient coders code it as if
# established (II.H).
_POST_ABSENCE = frozenset("neg negative excluded unlikely ruled rule".split())
_POST_TRAILER_RE = re.compile(r"x?\d+|out|times")  # what may follow such a cue ("neg x3", "ruled out")
_HEADING = {"past": "hx_", "medical": "hx_", "family": "fam_"}


def _terms(text: str, history: bool = False, lexicon: int = 1, negation: int = 1) -> list[str]:
    """Matching terms: stemmed, stop words dropped, negated / family words marked as such (and with
    `history`, a note's words in a personal-history context marked "hx_"; with `negation` 2, also the words
    before a cue that closes its clause)."""
    expansions = _LEXICONS[lexicon]
    terms: list[str] = []
    carry = ""  # the prefix a heading gives the rest of its sentence
    for clause in _CLAUSE_RE.split(text.lower()):
        prefix, scope = carry, _TO_CLAUSE_END if carry else 0
        tokens = tokenize(clause)
        if negation >= 2:
            tokens = _negate_before_closing_cue(tokens)
            tokens = ["no" if t == "never" or t == "rule" and tokens[i + 1:i + 2] == ["out"] else t
                      for i, t in enumerate(tokens)]
        for i, token in enumerate(tokens):
            if token in _ABSENCE:
                prefix, scope = "not_", _SCOPE.get(token, NEGATION_SCOPE)
                continue
            if token in _FAMILY and not scope:
                prefix, scope = "fam_", NEGATION_SCOPE
                continue
            if history and token in _HISTORY and not scope and tokens[i + 1:i + 3] != ["of", "present"] \
                    and tokens[i + 1:i + 2] != ["to"]:
                # The word itself stays a plain term: "personal history of ..." names contain it.
                terms.append(token)
                prefix, scope = "hx_", _TO_CLAUSE_END
                continue
            if token in _STOP:
                continue
            if scope == 0:
                prefix = ""
            if lexicon >= 4 and i and tokens[i - 1] in _NUMBERED and (_NUMBER_RE.fullmatch(token) or token in _ROMAN):
                token = tokens[i - 1] + _ROMAN.get(token, token)
            terms.extend(prefix + _stem(t) for t in expansions.get(token, (token,)))
            scope = max(scope - 1, 0)
        if history and tokens and tokens[-1] == "history":
            carry = next((_HEADING[t] for t in tokens if t in _HEADING), carry)
    return terms


# With `index_defaults`, a name also as a note that leaves out what the catalogue makes the default says it:
# diabetes of no stated type is type 2 (guideline I.C.4.a.2, E11); "unspecified as acute or chronic" and
# "not specified as recurrent" are what a note that says no more means; so is a "without ..." clause before
# the laterality ("Acute suppurative otitis media without spontaneous rupture of ear drum, right ear"); and
# [brackets] enclose synonyms or explanations (I.A.6), so a name holds without them.
_UNSTATED_RES = (
    re.compile(r"^type 2 (?=diabetes mellitus)", re.IGNORECASE),
    re.compile(r",\s*(?:unspecified|not specified) as\b[^,]*", re.IGNORECASE),
    re.compile(r"\s+without\b[^,]*(?=,\s*(?:right|left|bilateral|unspecified)\b[^,]*$)", re.IGNORECASE),
    re.compile(r"\s*\[[^\]]*\]"),
)
_UNSTATED_CUES = ("type 2", "specified as", "without", "[")  # words without which none of these applies
# Version 2 also reads what the index makes the default of a few more: an ulcer neither acute nor chronic is
# "chronic or unspecified" (K25.4 for a bleeding gastric ulcer), osteoarthritis is primary (M17.11), a
# condition of the right or the left is unilateral, a substance's effect with no use disorder stated is
# of its use ("alcohol intoxication" is F10.92-: "Alcohol use, unspecified with intoxication"), a cerebral
# infarction of an artery is "due to unspecified occlusion or stenosis" of it, "embolism and thrombosis" is
# either, and bronchiolitis is acute (the index: "Bronchiolitis (acute)").
_UNSTATED_RES_2 = (
    re.compile(r"^chronic or unspecified ", re.IGNORECASE),
    re.compile(r"\bprimary (?=osteoarthritis)", re.IGNORECASE),
    re.compile(r"^unilateral (?=.*\b(?:right|left)\b)", re.IGNORECASE),
    re.compile(r"\buse, unspecified (?=with\b)", re.IGNORECASE),
    re.compile(r"\bdue to unspecified occlusion or stenosis (?=of\b)", re.IGNORECASE),
    re.compile(r"\bembolism and (?=thrombosis\b)", re.IGNORECASE),
    re.compile(r"^acute (?=bronchiolitis\b)", re.IGNORECASE),
)
_UNSTATED_CUES_2 = ("chronic or unspecified", "primary osteoarthritis", "unilateral", "use, unspecified with",
                    "occlusion or stenosis", "embolism and thrombosis", "acute bronchiolitis")
# Version 3: morbid obesity is "due to excess calories" (the index: "Obesity, morbid E66.01") and gout is
# idiopathic ("Gout (acute) (attack) (flare) - see Gout, idiopathic").
_UNSTATED_RES_3 = (
    re.compile(r"(?<=obesity) due to excess calories$", re.IGNORECASE),
    re.compile(r"^idiopathic (?=gout\b)", re.IGNORECASE),
)
_UNSTATED_CUES_3 = ("due to excess calories", "idiopathic gout")


def _index_defaults(name: str, without_optional: bool = False, version: int = 1) -> list[str]:
    """The name as a note that leaves out what the catalogue makes the default says it, if that differs
    (`index_defaults`, 1 to 3; with `without_optional`, a "without ..." clause left closing the name goes too)."""
    lower = name.lower()
    patterns, cues = _UNSTATED_RES, _UNSTATED_CUES
    if version >= 2:
        patterns, cues = patterns + _UNSTATED_RES_2, cues + _UNSTATED_CUES_2
    if version >= 3:
        patterns, cues = patterns + _UNSTATED_RES_3, cues + _UNSTATED_CUES_3
    if not any(cue in lower for cue in cues):
        return []
    short = name
    for pattern in patterns:
        short = pattern.sub("", short)
    if without_optional:
        short = _WITHOUT_TAIL_RE.sub("", short)
    return [short] if short.strip() and short != name else []


_OBSTETRIC_RE = re.compile(r"^maternal care for |,\s*not applicable or unspecified$", re.IGNORECASE)
_TRIMESTER_RE = re.compile(r",\s*(first|second|third|unspecified) trimester\b", re.IGNORECASE)
_TRIMESTERS = {"first": 1, "second": 2, "third": 3, "unspecified": 4}
# Weight of an obstetric name by the trimester it leaves to the note (0: none, 1-3, 4: unspecified), for a
# note of each trimester (0: none stated).
_STAGE_WEIGHTS = {
    0: np.asarray([1, _GIVE_WAY, _GIVE_WAY, _GIVE_WAY, 1], np.float32),
    **{t: np.asarray([1, *(1 if s == t else 0 for s in (1, 2, 3)), _GIVE_WAY], np.float32) for t in (1, 2, 3)},
}
# `dominance`: a name's "affecting right dominant side" is also the side alone ("R hemiparesis" is G81.91),
# kept where the note's handedness makes that side dominant (or nondominant) as the name says.
_DOMINANCE_RE = re.compile(r"affecting (right|left) (dominant|nondominant) side", re.IGNORECASE)
_SIDES = {("right", "dominant"): 1, ("right", "nondominant"): 2, ("left", "dominant"): 3, ("left", "nondominant"): 4}
_HANDED_RE = re.compile(r"\b(?:(right|left|r|l)[- ]?handed|(ambidextrous))\b", re.IGNORECASE)
# Weight of a name of each side kind (0: not sided, then _SIDES' order) by the note's handedness.
_HANDED_SIDES = {
    "right": np.asarray([1, 1, 0, 0, 1], np.float32),  # also the default (no handedness stated)
    "left": np.asarray([1, 0, 1, 1, 0], np.float32),
    "ambidextrous": np.asarray([1, 1, 0, 1, 0], np.float32),
}


_SUBSEQUENT_RE = re.compile(r",\s*subsequent encounter(?:\s+for(?:\s+closed)?\s+fracture)?(?:\s+with routine healing)?",
                            re.IGNORECASE)
_SEQUELA_RE = re.compile(r",\s*sequela\s*$", re.IGNORECASE)
_NOTE_SEQUELA_RE = re.compile(r"\b(?:sequelae?|late effects?)\b", re.IGNORECASE)
_NOTE_SUBSEQUENT_RE = re.compile(
    r"\b(?:subsequent encounter|healing|healed|aftercare|nonunion|malunion|cast (?:removed|off|change)"
    r"|\d+\s*(?:wk|wks|weeks?|mo|months?) (?:after|post|s/p)|fracture clinic)\b", re.IGNORECASE)
# Weight of a name by the encounter it leaves to the note (0: none, 1: subsequent, 2: sequela, 3: initial),
# for a note of each encounter.
_ENCOUNTER_WEIGHTS = {"initial": np.asarray([1, 0, 0, 1], np.float32),
                      "subsequent": np.asarray([1, 1, 0, _GIVE_WAY], np.float32),
                      "sequela": np.asarray([1, 0, 1, _GIVE_WAY], np.float32)}


def _note_encounter(text: str) -> str:
    """The encounter a note's words make it for its injuries: sequela, subsequent, else initial."""
    return "sequela" if _NOTE_SEQUELA_RE.search(text) else "subsequent" if _NOTE_SUBSEQUENT_RE.search(text) \
        else "initial"


# `sex`: "female breast" and "male breast" also without the sex, kept where the note's patient has it. A
# note that does not say is taken as a woman's, as about 99 % of breast cancers are.
_SEXED_RE = re.compile(r"\b(female|male) (?=breast)", re.IGNORECASE)
_SEX_KIND = {"female": 1, "male": 2}
_SEX_WEIGHTS = {"female": np.asarray([1, 1, 0], np.float32), "male": np.asarray([1, 0, 1], np.float32),
                "": np.asarray([1, 1, _GIVE_WAY], np.float32)}
# An age and a sex ("58F", "9yo F", "62-year-old man"), not a temperature ("101.2 F") or a catheter ("14F Foley").
_PATIENT_SEX_RE = re.compile(
    r"(?<![\d.°])\b\d{1,3}\s*(?:-?\s*(?:yo|y/o|y\.o\.|year[- ]old|years? old)\s*)?(?-i:([FM]))\b"
    r"(?!\s*(?:foley|fr\b|french|catheter|sheath))|\b(woman|female|girl|lady|man|male|boy|gentleman)\b", re.IGNORECASE)
_DEMOGRAPHICS_CHARS = 200  # where a note says who the patient is


def _patient_sex(text: str) -> str:
    """The patient's sex as the note's opening demographics say it ("58F", "a 62-year-old man"), or ""."""
    match = _PATIENT_SEX_RE.search(text[:_DEMOGRAPHICS_CHARS])
    if match is None:
        return ""
    said = (match.group(1) or match.group(2)).lower()
    return "female" if said in ("f", "woman", "female", "girl", "lady") else "male"


def _note_trimester(text: str) -> int:
    """The trimester of the gestational age a note gives, 0 where it gives none."""
    return trimester(text) or 0


def _handedness(text: str) -> str:
    """The hand a note says the patient uses: right (also when it says nothing), left or ambidextrous."""
    match = _HANDED_RE.search(text)
    if match is None:
        return "right"
    if match.group(2):
        return "ambidextrous"
    return "left" if match.group(1).lower() in ("left", "l") else "right"


def _negate_before_closing_cue(tokens: list[str]) -> list[str]:
    """The clause's tokens, with "no" put before the content words a closing absence cue reaches."""
    end = len(tokens)
    while end and _POST_TRAILER_RE.fullmatch(tokens[end - 1]):
        end -= 1
    if not end or tokens[end - 1] not in _POST_ABSENCE:
        return tokens
    reach, start = 0, end - 1
    while start and reach < NEGATION_SCOPE and tokens[start - 1] not in _ABSENCE:
        start -= 1
        reach += tokens[start] not in _STOP
    return [*tokens[:start], "no", *tokens[start:]]


def _keep_unspecified_site(name: str) -> str:
    """The name with a closing ", unspecified <site>" as ", <site>" (`unspecified_site`): the site stays."""
    name = _UNSPECIFIED_PART_RE.sub("", name)
    match = _UNSPECIFIED_TAIL_RE.search(name)
    if not match or set(match.group(1).lower().split()) <= _UNSTATED_DETAIL:
        return name
    return name[:match.start()] + "," + match.group(1)


def _name_variants(description: str, system: str, encounter_optional: bool = False,
                   nonessential: bool = False, without_optional: bool = False,
                   unspecified_site: bool = False) -> list[str]:
    """The description and its forms without the parts a note rarely states (with `encounter_optional`,
    also ", initial encounter": the default encounter of an injury; with `nonessential`, ", uncomplicated";
    with `unspecified_site`, a closing ", unspecified <site>" keeps its site)."""
    variants = [description]
    core = _PARENS_RE.sub(" ", description)
    if encounter_optional:
        core = _INITIAL_ENCOUNTER_RE.sub("", core)
    if nonessential:
        core = _UNCOMPLICATED_RE.sub("", core)
    if without_optional and system == "ICD-10-CM":
        core = _WITHOUT_TAIL_RE.sub("", _WITHOUT_BEFORE_SITE_RE.sub("", core))
    if unspecified_site and system == "ICD-10-CM":
        core = _keep_unspecified_site(core)
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


def calibrate_match_scores(calibrator: IsotonicCalibrator, raw: np.ndarray) -> np.ndarray:
    """Match scores as probabilities, in the scores' order. A code no sentence names stays at 0 (it is no
    candidate, whatever the calibration's floor); ties within a calibration step are broken by the raw
    score, strongly enough to survive float32."""
    return np.where(raw > 0, calibrate_keeping_order(calibrator, raw, squash=False, tie_break=1e-3), 0.0)


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
        history: bool = False,
        nonessential: bool = False,
        lexicon: int = 1,
        status_codes: int = 0,
        complete_pcs: bool = False,
        combinations: int = 0,
        inspection_inherent: bool = False,
        integral_symptoms: float = 1.0,
        without_optional: bool = False,
        negation: int = 1,
        index_defaults: int = 0,
        unspecified_site: bool = False,
        excluded_within: bool = False,
        external_causes: float = 1.0,
        dominance: bool = False,
        pregnancy: bool = False,
        sex: bool = False,
        encounter: bool = False,
        uncomplicated: bool = False,
        calibration: dict[str, dict[str, list[float]]] | None = None,
    ) -> None:
        if lexicon not in _LEXICONS:
            raise ValueError(f"unknown matcher lexicon {lexicon} (known: {sorted(_LEXICONS)})")
        if int(status_codes) not in (0, 1, 2, 3):
            raise ValueError(f"unknown matcher status_codes {status_codes} (known: [0, 1, 2, 3])")
        if int(index_defaults) not in (0, 1, 2, 3):
            raise ValueError(f"unknown matcher index_defaults {index_defaults} (known: [0, 1, 2, 3])")
        unknown = set(calibration or {}) - set(systems)
        if unknown:
            raise ArtifactError(f"matcher calibration for code systems it does not score: {sorted(unknown)}")
        self.min_coverage = min_coverage
        self.mass_scale = mass_scale
        self.sibling_decay = sibling_decay
        self.other_specified = other_specified
        self.later_encounter = later_encounter
        other_codes: list[bool] = []
        name_stage: list[int] = []  # per name: the trimester it leaves to the note (`pregnancy`), or 0
        name_encounter: list[int] = []  # per name: the encounter it leaves to the note (`encounter`), or 0
        name_sex: list[int] = []  # per name: the sex of the breast it leaves to the note's patient (1 female, 2 male)
        name_side: list[int] = []  # per name: the side and dominance it leaves to the note's handedness, or 0
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
                # Inclusion terms keep their nonessential modifiers in parentheses ("hypertension
                # (arterial) (benign) (essential)"); with `nonessential`, also a name without them, and
                # descriptions without ", uncomplicated".
                if nonessential:
                    inclusion = [v for t in inclusion for v in dict.fromkeys([t, _PARENS_RE.sub(" ", t)])]
                variants = _name_variants(description, system, later_encounter < 1.0, nonessential, without_optional,
                                          unspecified_site)
                if index_defaults and system == "ICD-10-CM":
                    variants += [form for v in variants
                                 for form in _index_defaults(v, without_optional, int(index_defaults))]
                stage = 0  # the trimester an obstetric name leaves to the note (4: it says "unspecified trimester")
                if pregnancy and system == "ICD-10-CM" and code.startswith("O"):
                    obstetric = _OBSTETRIC_RE.sub("", description)
                    stated = _TRIMESTER_RE.search(obstetric)
                    if stated:
                        stage = _TRIMESTERS[stated.group(1).lower()]
                        obstetric = _TRIMESTER_RE.sub("", obstetric)
                    if obstetric != description:
                        variants.append(obstetric)
                initial = encounter and system == "ICD-10-CM" and bool(_INITIAL_ENCOUNTER_RE.search(description))
                later, later_forms = 0, []  # the encounter some names leave to the note's words (`encounter`)
                if encounter and system == "ICD-10-CM":
                    later = 1 if _SUBSEQUENT_RE.search(description) else 2 if _SEQUELA_RE.search(description) else 0
                    if later:
                        # Its names say no encounter: the note's words weigh them (they replace the names
                        # that say it, which no note does, so that the words' weights stay as they were).
                        later_forms = _name_variants(_SEQUELA_RE.sub("", _SUBSEQUENT_RE.sub("", description)), system,
                                                     False, nonessential, without_optional, unspecified_site)
                        variants = later_forms
                sexed = _SEXED_RE.search(description) if sex and system == "ICD-10-CM" else None
                if sexed:  # also without the sex, which the note's patient gives
                    variants.append(_SEXED_RE.sub("", description))
                sided = _DOMINANCE_RE.search(description) if dominance and system == "ICD-10-CM" else None
                if sided:  # also the side alone, which the note's handedness makes dominant or not
                    variants.append(_DOMINANCE_RE.sub(lambda m: m.group(1), description))
                for name in dict.fromkeys([*variants, *inclusion]):
                    terms = tuple(dict.fromkeys(_terms(name, lexicon=lexicon)))
                    if terms and terms not in seen:
                        seen.add(terms)
                        names.append(list(terms))
                        name_code.append(code_idx)
                        name_stage.append(stage if stage and name not in (description, *inclusion) else 0)
                        name_encounter.append(later if name in later_forms
                                              else 3 if initial and not _INITIAL_ENCOUNTER_RE.search(name) else 0)
                        name_sex.append(_SEX_KIND[sexed.group(1).lower()] if sexed and not _SEXED_RE.search(name) else 0)
                        name_side.append(_SIDES[sided.group(1).lower(), sided.group(2).lower()]
                                         if sided and not _DOMINANCE_RE.search(name) else 0)
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
        # Parts of some names that the note says elsewhere, each read from the whole note: per name the kind
        # of part it leaves to the note (0: none), and the weight of each kind for what the note says.
        # Guideline I.C.6.a: hemiplegia of the right side is of the dominant side, of the left side of the
        # nondominant side, unless the note says which hand the patient uses (ambidextrous: dominant).
        # Guideline I.C.19.a: the 7th character is the encounter's, which the note says anywhere ("Fracture
        # clinic. 4 wk after closed reduction of R Colles' fx. XR: healing." is S52.531D): subsequent-encounter
        # and sequela names are read without those words and hold where the note's words say so, and an
        # injury's initial encounter then gives way.
        # A breast's sex is the patient's ("58F w/ R breast cancer" is C50.911, of the right female breast).
        # Chapter 15: an obstetric name holds without "maternal care for", which a note does not say, without
        # the single fetus of its 7th character 0, and without its trimester where the gestational age the
        # note gives falls in it (guideline I.C.15.a.3); a name of another trimester does not.
        self.dominance, self.encounter, self.sex, self.pregnancy = dominance, encounter, sex, pregnancy
        self._readings = [
            (np.asarray(kinds, dtype=np.int64), read, weights)
            for on, kinds, read, weights in (
                (dominance, name_side, _handedness, _HANDED_SIDES),
                (encounter, name_encounter, _note_encounter, _ENCOUNTER_WEIGHTS),
                (sex, name_sex, _patient_sex, _SEX_WEIGHTS),
                (pregnancy, name_stage, _note_trimester, _STAGE_WEIGHTS),
            ) if on
        ]
        self._presence = presence  # each name's words, to tell a name inside another apart (`excluded_within`)
        self._catalog = catalog
        # Guideline: a note that names a condition without more detail is coded to the documented,
        # unspecified code, not to "other specified"; such codes' names weigh `other_specified` (1: as any).
        self._name_prior = np.where(np.asarray(other_codes, bool)[self._name_code], np.float32(other_specified),
                                    np.float32(1.0)).astype(np.float32)
        # Guideline: an injury is coded for the initial encounter (7th character A) unless the note says
        # the encounter is a later one; subsequent-encounter and sequela names weigh `later_encounter` in a
        # sentence without such words.
        self._name_later = (np.asarray(later_codes, bool)[self._name_code]
                            if later_encounter < 1.0 and not encounter else None)  # `encounter` weighs them instead
        self.code_to_idx = {c: i for i, c in enumerate(self.codes)}
        self.nonessential = nonessential
        self.without_optional = without_optional
        if negation not in (1, 2):
            raise ValueError(f"unknown matcher negation {negation} (known: [1, 2])")
        self.negation = negation
        self.index_defaults = int(index_defaults)
        self.unspecified_site = unspecified_site
        # Code to the highest specificity the note supports: a code whose name the same sentence matched only
        # through words of a fuller name it matched in full, of a sibling or of a code the tabular list's
        # Excludes1 notes keep apart from it, gives way to that code ("acute cholecystitis" inside "calculus
        # of gallbladder with acute cholecystitis"; "iron deficiency" inside "iron deficiency anemia").
        self.excluded_within = excluded_within
        # A note that names a condition's complication does not also code it "without complications": with
        # `uncomplicated`, such a code (E11.9, K51.90) gives way where another code of its category is named.
        self.uncomplicated = uncomplicated
        self._without_complications = np.asarray(
            [s == "ICD-10-CM" and catalog.cm.description(c).lower().endswith("without complications")
             for c, s in zip(self.codes, self.code_systems)], dtype=bool)
        self.lexicon = lexicon
        # Guideline: a condition named in a personal history ("history of stroke") or of a relative
        # ("father had colon cancer") is coded with its history code (Z86.73, Z80.0); models.history.
        self.history = history
        self._history_code: list[np.ndarray] = []  # (personal, family): each code's history code, or -1
        if history:
            cm = [i for i, s in enumerate(self.code_systems) if s == "ICD-10-CM"]
            for ranges in history_ranges(catalog):
                target = np.full(len(self.codes), -1, dtype=np.int64)
                for i, code in zip(cm, assign([self.codes[i] for i in cm], ranges)):
                    if code is not None:
                        target[i] = self.code_to_idx[code]
                self._history_code.append(target)
        # Long-term drug therapy (Z79), weeks of gestation (Z3A) and a delivery's outcome (Z37) from the
        # drugs, gestational age and birth a note names (models.status), not from names; with 2, also the
        # status after a past procedure (Z90, Z94-Z96) and a dependence on dialysis (Z99.2).
        self.status_codes = int(status_codes)
        # Hypertension with heart failure or CKD, diabetes with its complications and coronary
        # atherosclerosis with angina are coded as their combination (models.combinations).
        # 2: also the other pairs the index lists under "with" (PAIRS); 3: also a pregnant patient's conditions
        # as complicating the pregnancy (IN_PREGNANCY).
        self.combinations = int(combinations)
        code_array = np.asarray(self.codes)
        self._condition_idx = {  # prefix, or tuple of prefixes -> the codes under it
            p: np.flatnonzero(np.logical_or.reduce([np.char.startswith(code_array, q) for q in np.atleast_1d(p)]))
            for p in (*CONDITIONS, COMBINED, *DIABETES, *DIABETES_WITH, CORONARY,
                      *(q for first, second, _, _ in PAIRS for q in (first, second)),
                      *(prefixes for prefixes, _, _ in IN_PREGNANCY))} if combinations else {}
        # Diabetes "without complications" (and "in remission"), which every combination excludes; the angina
        # codes a coronary combination is made of.
        self._diabetes_without = np.asarray([self.code_to_idx[c] for p in DIABETES for c in (p + ".9", p + ".A")
                                             if c in self.code_to_idx], dtype=np.int64)
        self._angina_idx = {c: self.code_to_idx[c] for c in CORONARY_WITH if c in self.code_to_idx}
        # A 4-character PCS table row is not billable: with `complete_pcs` its score goes to the complete
        # code the note supports (models.pcs_completion) and the row itself is not returned.
        self.complete_pcs = complete_pcs
        self._rows = {i: catalog.pcs.codes_under(c) for i, (c, s) in enumerate(zip(self.codes, self.code_systems))
                      if s == "ICD-10-PCS" and len(c) == 4} if complete_pcs else {}
        # PCS guideline B3.4b: an inspection done to perform another procedure on the same body system is
        # not coded separately ("colonoscopy with polypectomy" is the excision alone).
        self.inspection_inherent = inspection_inherent
        surgical: dict[str, tuple[list[int], list[int]]] = {}  # body system -> (inspections, other procedures)
        for i, (c, s) in enumerate(zip(self.codes, self.code_systems)):
            if inspection_inherent and s == "ICD-10-PCS" and c[0] == "0":
                surgical.setdefault(c[1], ([], []))[c[2] != "J"].append(i)
        self._surgical = [(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)) for a, b in surgical.values()]
        # Guideline I.B.5: signs and symptoms routinely associated with a disease are not coded beside its
        # definitive diagnosis; with `integral_symptoms` < 1 a symptom code (chapter R) weighs that much in a
        # note that names a definitive diagnosis, unless a diagnosis statement ("Dx:", "Impression:") says it.
        self.integral_symptoms = integral_symptoms
        systems = np.asarray(self.code_systems)
        cm = systems == "ICD-10-CM"
        chapter = np.asarray([c[0] for c in self.codes])
        self._symptom = cm & (chapter == "R")
        # Guideline I.C.20: an external cause code (V00-Y99) tells how an injury or other health condition
        # came about; with `external_causes` < 1 one weighs that much in a note that names no injury, poisoning
        # or other consequence of an external cause (S00-T88): "ECG" is no activity (Y93.9).
        self.external_causes = external_causes
        self._external = cm & np.isin(chapter, ["V", "W", "X", "Y"])
        self._injury = cm & np.isin(chapter, ["S", "T"])
        self._definitive = cm & ~np.isin(chapter, ["R", "Z", "V", "W", "X", "Y"])
        # Codes of one category (CM) or one root operation and body part (PCS) are siblings: a
        # sentence names one concept, so its second-best sibling is worth less than its best.
        groups = [c[:3] if s == "ICD-10-CM" else c[:4] for c, s in zip(self.codes, self.code_systems)]
        group_ids = {g: i for i, g in enumerate(dict.fromkeys(groups))}
        self._code_group = np.asarray([group_ids[g] for g in groups], dtype=np.int64)
        # Match scores measure how much of a name a sentence covers, not how often such a code is right:
        # `calibration` (code system -> isotonic breakpoints fitted on coded notes) turns them into
        # probabilities, keeping each system's order.
        self.calibration = calibration
        self._calibrators = [
            (systems == system, IsotonicCalibrator.from_dict(points, f"{system} calibration"))
            for system, points in (calibration or {}).items()
        ]

    def _sentence_matrices(self, segments: list[Segment]) -> list[sp.csr_matrix]:
        """The note's terms per sentence; with `history`, also those of its personal-history and of its
        relatives' contexts (the plain matrix holds the personal-history words as plain words)."""
        views: list[tuple[list[int], list[int]]] = [([], []) for _ in range(3 if self.history else 1)]
        for i, seg in enumerate(segments):
            text = self.abbreviations.expand(seg.text) if self.abbreviations else seg.text
            placed: set[tuple[int, str]] = set()  # a word counts once per view, however often it comes
            for t in _terms(text, self.history, self.lexicon, self.negation):
                if t.startswith("hx_"):  # a personal-history word is also a plain one
                    placed |= {(1, t[3:]), (0, t[3:])}
                elif self.history and t.startswith("fam_"):
                    placed.add((2, t[4:]))
                else:
                    placed.add((0, t))
            for view, word in placed:
                j = self.vocab.get(word)
                if j is not None:
                    views[view][0].append(i)
                    views[view][1].append(j)
        shape = (len(segments), len(self.vocab))
        return [sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=shape) for r, c in views]

    def _name_matches(self, sentences: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sentence, name, score) of every name that a sentence covers enough."""
        matched = (sentences @ self._name_weights).tocoo()  # (sentences, names)
        coverage = matched.data / self._name_mass[matched.col]
        keep = coverage >= self.min_coverage
        mass = matched.data[keep]
        name_idx = matched.col[keep]
        name_scores = coverage[keep] ** 3 * (1.0 - np.exp(-mass / self.mass_scale)) * self._name_prior[name_idx]
        return matched.row[keep], name_idx, name_scores

    def _history_matches(self, personal: sp.csr_matrix, family: sp.csr_matrix, sent_idx: np.ndarray,
                         code_idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The plain matches with the history codes of the conditions in history contexts added; a
        condition of the patient's past weighs `_GIVE_WAY` in the sentence that says so."""
        sents, codes, values = [sent_idx], [code_idx], [scores]
        for view, target in zip((personal, family), self._history_code):
            s, name, value = self._name_matches(view)
            condition = self._name_code[name]
            has = target[condition] >= 0
            sents.append(s[has])
            codes.append(target[condition][has])
            values.append(value[has])
            if view is personal:
                n = len(self.codes)
                past = np.isin(sent_idx * n + code_idx, s[has] * n + condition[has])
                values[0] = np.where(past, scores * _GIVE_WAY, scores)
        return np.concatenate(sents), np.concatenate(codes), np.concatenate(values).astype(np.float32)

    def match(self, text: str) -> MatchResult:
        """Score every code against one note."""
        segments = split_sentences(text)
        scores = np.zeros(len(self.codes), dtype=np.float32)
        best_segment = np.full(len(self.codes), -1, dtype=np.int64)
        if not segments:
            return MatchResult(segments, best_segment, scores)
        views = self._sentence_matrices(segments)
        sent_idx, name_idx, name_scores = self._name_matches(views[0])
        if self._name_later is not None:
            plain = np.asarray([not _LATER_CUE_RE.search(s.text) for s in segments])
            name_scores *= np.where(self._name_later[name_idx] & plain[sent_idx], np.float32(self.later_encounter), 1.0)
        for kinds, read, weights in self._readings:
            name_scores *= weights[read(text)][kinds[name_idx]]
        code_idx = self._name_code[name_idx]
        if self.history:
            sent_idx, code_idx, name_scores = self._history_matches(*views[1:], sent_idx, code_idx, name_scores)
        order = np.argsort(-name_scores, kind="stable")
        # The first occurrence of a code in descending score order is its best (sentence, name).
        codes_sorted = code_idx[order]
        _, first = np.unique(codes_sorted, return_index=True)
        best = order[first]
        if self.excluded_within:
            plain = best[best < len(name_idx)]  # history codes come from no name of their own
            name_scores[plain] *= self._excluded_within(views[0], sent_idx[plain], code_idx[plain], name_idx[plain])
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
        if self.status_codes:
            self._add_status_codes(text, segments, scores, best_segment)
        if self.combinations:
            self._add_combination(scores, best_segment)
        if self.combinations >= 3 and delivery_outcome(text) is None:
            self._combine_pregnancy(trimester(text), scores, best_segment)
        rows = [i for i in self._rows if scores[i] > 0]
        in_note = stated_approaches(text) if rows else []
        duration = stated_duration(text) if rows else None
        for i in rows:
            j = self.code_to_idx[complete(self.codes[i], self._rows[i], segments[best_segment[i]].text, in_note,
                                          duration)]
            if scores[i] > scores[j]:
                scores[j], best_segment[j] = scores[i], best_segment[i]
            scores[i], best_segment[i] = 0.0, -1
        if self.inspection_inherent:
            self._inspection_inherent(scores)
        if self.uncomplicated:
            self._complications_named(scores)
        if self.external_causes < 1.0 and scores[self._injury].max(initial=0.0) < _DEFINITIVE:
            scores[self._external] *= np.float32(self.external_causes)
        if self.integral_symptoms < 1.0 and scores[self._definitive].max(initial=0.0) >= _DEFINITIVE:
            # A symptom a diagnosis statement names is the note's diagnosis, whichever sentence matched it best.
            stated = np.asarray([bool(_DIAGNOSIS_STATEMENT_RE.search(seg.text)) for seg in segments])
            in_statement = np.zeros(len(self.codes), dtype=bool)
            in_statement[code_idx[stated[sent_idx]]] = True
            integral = self._symptom & (scores > 0) & ~in_statement
            scores[integral] *= np.float32(self.integral_symptoms)
        return MatchResult(segments, best_segment, scores)

    def _excluded_within(self, words: sp.csr_matrix, sentences: np.ndarray, codes: np.ndarray,
                         names: np.ndarray) -> np.ndarray:
        """The weight of each (sentence, code, name): `_GIVE_WAY` for an ICD-10-CM code whose name's words lie
        inside the name of a sibling (same category) or an Excludes1 partner that the same sentence matched
        in full, else 1."""
        cm_catalog, indptr, indices = self._catalog.cm, self._presence.indptr, self._presence.indices
        by_sentence: dict[int, list[tuple[int, int, frozenset[int], bool]]] = {}
        said_in: dict[int, frozenset[int]] = {}  # each sentence's words
        for k, (sentence, code, name) in enumerate(zip(sentences.tolist(), codes.tolist(), names.tolist())):
            if self.code_systems[code] == "ICD-10-CM":
                if sentence not in said_in:
                    said_in[sentence] = frozenset(words.indices[words.indptr[sentence]:words.indptr[sentence + 1]].tolist())
                said = said_in[sentence]
                terms = frozenset(indices[indptr[name]:indptr[name + 1]].tolist())
                by_sentence.setdefault(sentence, []).append((k, code, terms & said, terms <= said))
        weights = np.ones(len(codes), dtype=np.float32)
        for found in by_sentence.values():
            for k, a, terms_a, _ in found:
                if any(full and terms_a < terms_b and (self._code_group[a] == self._code_group[b]
                                                       or cm_catalog.are_excludes1(self.codes[a], self.codes[b]))
                       for _, b, terms_b, full in found):
                    weights[k] = _GIVE_WAY
        return weights

    def _complications_named(self, scores: np.ndarray) -> None:
        """Each "without complications" code at `_GIVE_WAY` where another code of its category is named."""
        named = np.flatnonzero((scores >= _DEFINITIVE) & ~self._without_complications)
        plain = np.flatnonzero(self._without_complications & (scores > 0))
        if named.size and plain.size:
            scores[plain[np.isin(self._code_group[plain], self._code_group[named])]] *= _GIVE_WAY

    def _inspection_inherent(self, scores: np.ndarray) -> None:
        """Each inspection below half the best other procedure on its body system, where one is named."""
        for inspections, others in self._surgical:
            best = scores[others].max(initial=0.0)
            if best >= _PROCEDURE_NAMED and scores[inspections].max(initial=0.0) > 0:
                scores[inspections] = np.minimum(scores[inspections], _GIVE_WAY * best)

    def _add_combination(self, scores: np.ndarray, best_segment: np.ndarray) -> None:
        """The combination codes into `scores` (in place): hypertension's with the hypertension's sentence,
        diabetes' with the complication's, coronary atherosclerosis' with the angina's."""
        h = self.code_to_idx[HYPERTENSION]
        found = hypertension_combination(float(scores[h]), tuple(float(scores[self._condition_idx[p]].max())
                                                                 for p in CONDITIONS))
        if found is not None:
            self._combine_hypertension(scores, best_segment, h, *found)
        self._combine_diabetes(scores, best_segment)
        self._combine_coronary(scores, best_segment)
        if self.combinations >= 2:
            self._combine_pairs(scores, best_segment)

    def _combine_diabetes(self, scores: np.ndarray, best_segment: np.ndarray) -> None:
        """Diabetes with each complication named: the combination code, with the complication's sentence."""
        diabetes = {p: float(scores[self._condition_idx[p]].max()) for p in DIABETES}
        conditions = {p: float(scores[self._condition_idx[p]].max()) for p in DIABETES_WITH}
        combined = [(self.code_to_idx.get(code), score, p)
                    for code, score, p in diabetes_combinations(diabetes, conditions)]
        if combined:
            scores[self._diabetes_without] *= _GIVE_WAY
        for j, score, p in combined:
            if j is None:
                continue
            condition = self._condition_idx[p][np.argmax(scores[self._condition_idx[p]])]
            if score > scores[j]:
                scores[j], best_segment[j] = score, best_segment[condition]
            if DIABETES_WITH[p][1]:
                scores[condition] *= _GIVE_WAY

    def _combine_pairs(self, scores: np.ndarray, best_segment: np.ndarray) -> None:
        """The other combinations (models.combinations.PAIRS), each with its second condition's sentence and
        the lower of the two scores; the conditions it includes give way."""
        found = pair_combinations([float(scores[self._condition_idx[first]].max()) for first, _, _, _ in PAIRS],
                                  [float(scores[self._condition_idx[second]].max()) for _, second, _, _ in PAIRS])
        for i in found:
            first, second, code, second_gives_way = PAIRS[i]
            j = self.code_to_idx.get(code)
            if j is None:
                continue
            a, b = self._condition_idx[first], self._condition_idx[second]
            score, sentence = min(scores[a].max(), scores[b].max()), best_segment[b[np.argmax(scores[b])]]
            scores[a] *= _GIVE_WAY
            if second_gives_way:
                scores[b] *= _GIVE_WAY  # the combination itself may be among them ("F10.22")
            if score > scores[j]:
                scores[j], best_segment[j] = score, sentence

    def _combine_pregnancy(self, stated: int | None, scores: np.ndarray, best_segment: np.ndarray) -> None:
        """A pregnant patient's conditions as complicating the pregnancy in the trimester `stated`
        (models.combinations.IN_PREGNANCY), each with its condition's sentence and score."""
        best = [self._condition_idx[prefixes] for prefixes, _, _ in IN_PREGNANCY]
        for i, code in pregnancy_combinations([float(scores[b].max(initial=0.0)) for b in best], stated):
            j, b = self.code_to_idx.get(code), best[i]
            if j is None:
                continue
            condition = b[np.argmax(scores[b])]
            if scores[condition] > scores[j]:
                scores[j], best_segment[j] = scores[condition], best_segment[condition]
            if IN_PREGNANCY[i][2]:
                scores[b] *= _GIVE_WAY

    def _combine_coronary(self, scores: np.ndarray, best_segment: np.ndarray) -> None:
        """Coronary atherosclerosis with the best angina named: I25.11x, with the angina's sentence."""
        angina = {c: float(scores[i]) for c, i in self._angina_idx.items()}
        found = coronary_combination(float(scores[self._condition_idx[CORONARY]].max()), angina)
        if found is not None:
            code, score, angina_code = found
            j, a = self.code_to_idx[code], self._angina_idx[angina_code]
            # The combination includes the angina (I20 excludes it) and says more than its siblings.
            others = self._condition_idx[CORONARY][self._condition_idx[CORONARY] != j]
            scores[others] *= _GIVE_WAY
            if score > scores[j]:
                scores[j], best_segment[j] = score, best_segment[a]
            scores[a] *= _GIVE_WAY

    def _combine_hypertension(self, scores: np.ndarray, best_segment: np.ndarray, h: int, code: str,
                              score: float) -> None:
        """Hypertension's combination `code` at `score`, with the hypertension's sentence."""
        # I10 excludes hypertensive heart and kidney disease; the other combinations matched in part
        # ("without heart failure" in a note with heart failure) give way too.
        scores[self._condition_idx[COMBINED]] *= _GIVE_WAY
        scores[h] *= _GIVE_WAY
        j = self.code_to_idx[code]
        if score > scores[j]:
            scores[j], best_segment[j] = score, best_segment[h]

    def _add_status_codes(self, text: str, segments: list[Segment], scores: np.ndarray,
                          best_segment: np.ndarray) -> None:
        """Z79, Z3A and Z37 codes (with `status_codes` 2 also Z90, Z94-Z96 and Z99.2, with 3 also the body mass
        index, Z68) into `scores` (in place), each with its sentence; several drugs of one sentence are all
        taken, not siblings of one another."""
        found = [(i, code, score) for i, seg in enumerate(segments) for code, score in drug_therapy(seg.text).items()]
        if self.status_codes >= 2:
            found += [(i, code, score) for i, seg in enumerate(segments)
                      for code, score in procedure_status(seg.text).items()]
        stated_in_note = [(gestation(text), GESTATION), (delivery_outcome(text), OUTCOME)]
        if self.status_codes >= 3:
            stated_in_note.append((body_mass_index(text), BMI))
        for stated, score in stated_in_note:
            if stated is not None:
                found.append((next(i for i, seg in enumerate(segments) if seg.end > stated[1]), stated[0], score))
        for i, code, score in found:
            j = self.code_to_idx.get(code)
            if j is not None and score > scores[j]:
                scores[j], best_segment[j] = score, i

    # -- the scorer interface shared with the other coders -------------------------------
    def score(self, texts: list[str]) -> Scored:
        """Match scores in [0, 1] for each note, (docs, codes), probabilities only with `calibration`; each note's
        match result is its evidence (the sentence that matched each code best)."""
        results = [self.match(t) for t in texts]
        if not results:
            return np.zeros((0, len(self.codes))), []
        scores = np.stack([r.scores for r in results])
        for columns, calibrator in self._calibrators:
            scores[:, columns] = calibrate_match_scores(calibrator, scores[:, columns])
        return scores, list(results)

    def probs(self, texts: list[str]) -> np.ndarray:
        """The scores of `score` alone."""
        return self.score(texts)[0]

    # -- storage -------------------------------------------------------------------------
    def to_state(self) -> ScorerState:
        """Its settings and code systems only: it is rebuilt from the catalogue."""
        settings = {"min_coverage": self.min_coverage, "mass_scale": self.mass_scale,
                    "sibling_decay": self.sibling_decay, "abbreviations": self.abbreviations is not None,
                    "other_specified": self.other_specified, "later_encounter": self.later_encounter,
                    "nonessential": self.nonessential, "lexicon": self.lexicon, "history": self.history,
                    "status_codes": self.status_codes, "combinations": self.combinations,
                    "complete_pcs": self.complete_pcs, "inspection_inherent": self.inspection_inherent,
                    "integral_symptoms": self.integral_symptoms, "without_optional": self.without_optional,
                    "negation": self.negation, "index_defaults": self.index_defaults,
                    "unspecified_site": self.unspecified_site, "excluded_within": self.excluded_within,
                    "external_causes": self.external_causes, "dominance": self.dominance,
                    "pregnancy": self.pregnancy, "sex": self.sex, "encounter": self.encounter,
                    "uncomplicated": self.uncomplicated, "calibration": self.calibration}
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

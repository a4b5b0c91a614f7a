"""Status codes a note states in passing: long-term drug therapy (Z79), the weeks of gestation (Z3A), the
outcome of a delivery (Z37), and an organ removed, a graft or device in place or a dependence on dialysis
(Z90, Z94-Z96, Z99.2).

None has a name a note would use: "on apixaban" is Z79.01 (long-term use of anticoagulants), "G2P1 at
28w3d" is Z3A.28, "delivered a viable male infant" Z37.0 (single live birth). They come from a curated
table of the commonest drugs of each Z79 class (generic and US brand names) and patterns for the
gestational age and the delivery.
"""

from __future__ import annotations

import re

from models.text import tokenize

# Z79 code -> drugs of its class, as notes write them.
_DRUGS = {
    "Z79.01": "warfarin coumadin apixaban eliquis rivaroxaban xarelto dabigatran pradaxa edoxaban savaysa "
              "enoxaparin lovenox anticoagulant anticoagulants anticoagulation doac",
    "Z79.02": "clopidogrel plavix prasugrel effient ticagrelor brilinta cilostazol dipyridamole antiplatelet",
    "Z79.82": "aspirin asa",
    "Z79.4": "insulin glargine lantus basaglar lispro humalog aspart novolog detemir levemir degludec tresiba nph",
    "Z79.84": "metformin glucophage glipizide glyburide glimepiride sitagliptin januvia linagliptin tradjenta "
              "saxagliptin pioglitazone empagliflozin jardiance dapagliflozin farxiga canagliflozin invokana "
              "rybelsus",
    "Z79.85": "semaglutide ozempic wegovy liraglutide victoza dulaglutide trulicity exenatide byetta "
              "tirzepatide mounjaro",
    "Z79.1": "naproxen ibuprofen meloxicam celecoxib diclofenac indomethacin nsaid nsaids",
    "Z79.52": "prednisone prednisolone methylprednisolone dexamethasone hydrocortisone",
    "Z79.51": "fluticasone budesonide beclomethasone mometasone advair symbicort",
    "Z79.631": "methotrexate",
    "Z79.624": "mycophenolate cellcept",
    "Z79.621": "tacrolimus cyclosporine",
    "Z79.622": "tofacitinib baricitinib upadacitinib",
    "Z79.623": "sirolimus everolimus",
    "Z79.620": "adalimumab humira infliximab remicade etanercept enbrel rituximab",
    "Z79.810": "tamoxifen raloxifene",
    "Z79.811": "anastrozole letrozole exemestane",
    "Z79.83": "alendronate fosamax risedronate ibandronate",
    "Z79.891": "oxycodone hydrocodone morphine hydromorphone tramadol",
    "Z79.3": "ocp ocps contraceptive contraceptives",
    "Z79.890": "estradiol",
}
_DRUG_CODE = {drug: code for code, drugs in _DRUGS.items() for drug in drugs.split()}
# Words that say a drug is taken over time, or only now; within a few words of the drug.
_ONGOING = frozenset("on taking takes take continue continues continued meds medications home chronic "
                     "chronically daily qd bid tid qhs weekly regimen maintained prescribed long term".split())
_NEW = frozenset("start started starting initiated given load loading bolus gtt drip once".split())
_NOT = frozenset("no not denies denied off never without hold held discontinued allergic allergy".split())
_BEFORE, _AFTER = 4, 6
ONGOING, MENTIONED, NEW = 0.8, 0.4, 0.2  # scores of a drug by its context

# A gestational age: "28w3d", "34 weeks gestation" first; else "at 39 wk", "GA 37w".
_PREGNANCY_RE = re.compile(r"\b(?:G\d+\s*P\d+|pregnan\w*|gestation\w*|prenatal|IUP|EGA|L&D|OB)\b", re.IGNORECASE)
_WEEKS_RES = (
    re.compile(r"\b(\d{1,2})\s*w\s*\d\s*d\b|\b(\d{1,2})\s*(?:wks?|weeks?)(?:\s*\d\s*d(?:ays?)?)?\s*"
               r"(?:gestation|GA\b|EGA\b|pregnant|IUP\b)", re.IGNORECASE),
    re.compile(r"\b(?:at|GA|EGA)\s*(\d{1,2})\s*(?:w|wks?|weeks?)\b", re.IGNORECASE),
)
GESTATION = 0.9


def drug_therapy(sentence: str) -> dict[str, float]:
    """Z79 codes of the drugs a sentence names, each with a score by its context (ongoing, new, neither)."""
    words = tokenize(sentence)
    found: dict[str, float] = {}
    for i, word in enumerate(words):
        code = _DRUG_CODE.get(word)
        if code is None:
            continue
        if code == "Z79.85" and {"oral", "po"} & set(words[i - 1:i + 3]):
            code = "Z79.84"  # oral semaglutide
        if _NOT & set(words[max(i - _BEFORE, 0):i]):
            continue
        around = set(words[max(i - _BEFORE, 0):i + _AFTER + 1])
        score = NEW if around & _NEW else ONGOING if around & _ONGOING else MENTIONED
        found[code] = max(found.get(code, 0.0), score)
    return found


def gestation(text: str) -> tuple[str, int] | None:
    """The Z3A code of the weeks of gestation a note about a pregnancy gives, with where it says so; None
    when it gives none ("2 weeks" of anything else is not a gestational age)."""
    if not _PREGNANCY_RE.search(text):
        return None
    for pattern in _WEEKS_RES:
        match = pattern.search(text)
        if match:
            weeks = int(next(g for g in match.groups() if g))
            code = "Z3A.01" if weeks < 8 else "Z3A.49" if weeks > 42 else f"Z3A.{weeks:02d}"
            return code, match.start()
    return None


def trimester(text: str) -> int | None:
    """The trimester (1-3) of the gestational age a pregnancy note gives (guideline I.C.15.a.3: the first
    ends before 14 weeks 0 days, the second before 28 weeks 0 days), or None."""
    stated = gestation(text)
    if stated is None:
        return None
    weeks = int(stated[0][4:])  # Z3A.01 is "less than 8 weeks", Z3A.49 "greater than 42 weeks"
    return 1 if weeks < 14 else 2 if weeks < 28 else 3


# Guideline I.C.15.b.5: every maternal record of a delivery carries its outcome (Z37). A delivery and a
# liveborn or stillborn infant, in a note about a pregnancy.
_DELIVERY_RE = re.compile(r"\b(?:deliver(?:y|ed)|cesarean|c-section|SVD|NSVD|VBAC)\b", re.IGNORECASE)
_INFANT = r"(?:\s+(?:single|singleton|term|preterm|healthy|vigorous))*\s+(?:male|female|infant|baby|neonate|newborn)"
_LIVEBORN_RE = re.compile(
    rf"\b(?:(?:live|living|viable){_INFANT}|both (?:live|viable)|liveborn|live-born|live birth|apgars?)\b",
    re.IGNORECASE)
_STILLBORN_RE = re.compile(r"\b(?:stillborn|stillbirth|IUFD|fetal demise)\b", re.IGNORECASE)
_TWINS_RE = re.compile(r"\btwins?\b|\bdi-?di\b|\bmo-?di\b", re.IGNORECASE)
OUTCOME = 0.8


def delivery_outcome(text: str) -> tuple[str, int] | None:
    """The Z37 code of the outcome of a delivery a pregnancy note documents, with where it says so; None
    when it documents no delivery."""
    if not (_PREGNANCY_RE.search(text) and _DELIVERY_RE.search(text)):
        return None
    live, still = _LIVEBORN_RE.search(text), _STILLBORN_RE.search(text)
    if live is None and still is None:
        return None
    twins = _TWINS_RE.search(text) is not None
    if live is not None:
        return ("Z37.2" if twins else "Z37.0"), live.start()
    return ("Z37.4" if twins else "Z37.1"), still.start()


# Guidelines I.C.21.c.3 (status) and I.C.21.c.4 (history): an organ removed, a graft or device in place, a
# dependence on dialysis are coded from a note that says so in passing ("s/p CABG", "on HD"). A curated table
# of the commonest, each with its side where the code has one (right, left, bilateral, unstated).
_PAST = r"(?:s\s*/\s*p|status\s+post|h\s*/\s*o|hx|history|prior|previous|remote)\b(?:\s+of\b)?"
_SIDED = r"(?:\s+(?P<side>r|l|right|left|b/?l|bilat(?:eral)?))?"
_STATUS = (
    (r"cabg|coronary\s+artery\s+bypass", ("Z95.1",)),
    (r"(?:pci|ptca|coronary\s+stents?|des)", ("Z95.5",)),
    (r"(?:permanent\s+)?pacemaker|ppm", ("Z95.0",)),
    (r"mastectomy", ("Z90.11", "Z90.12", "Z90.13", "Z90.10")),
    (r"(?:total\s+)?knee\s+(?:arthroplasty|replacement)|tka|tkr", ("Z96.651", "Z96.652", "Z96.653", "Z96.659")),
    (r"(?:total\s+)?hip\s+(?:arthroplasty|replacement)|tha|thr", ("Z96.641", "Z96.642", "Z96.643", "Z96.649")),
    (r"(?:total\s+)?hysterectomy", ("Z90.710",)),
    (r"nephrectomy", ("Z90.5",)),
    (r"splenectomy", ("Z90.81",)),
    (r"(?:kidney|renal)\s+transplant", ("Z94.0",)),
)
_STATUS_RES = tuple((re.compile(rf"\b{_PAST}\s*{_SIDED}\s*(?:{what})\b", re.IGNORECASE), codes)
                    for what, codes in _STATUS)
_DIALYSIS_RE = re.compile(r"\b(?:on|via|receiving|dependent\s+on)\s+(?:hemodialysis|(?-i:HD|PD)|peritoneal\s+dialysis|"
                          r"dialysis)\b|\bdialysis[- ]dependent\b", re.IGNORECASE)
STATUS = 0.8


def _side(word: str | None) -> int:
    """The index of a sided code: right, left, bilateral, unstated."""
    word = (word or "").lower().replace("/", "")
    return 0 if word in ("r", "right") else 1 if word in ("l", "left") else 2 if word.startswith("b") else 3


def procedure_status(sentence: str) -> dict[str, float]:
    """The status codes of a sentence: an organ removed, a graft or device in place after a past procedure,
    or a dependence on dialysis, each at `STATUS`."""
    found = {}
    for pattern, codes in _STATUS_RES:
        for match in pattern.finditer(sentence):
            found[codes[_side(match.group("side")) if len(codes) > 1 else 0]] = STATUS
    if _DIALYSIS_RE.search(sentence):
        found["Z99.2"] = STATUS
    return found


# Guideline I.C.21.c.3: a body mass index is coded (Z68) only beside a weight diagnosis the provider states
# (obesity, overweight, underweight, malnutrition), from the value a note gives; an adult's by its range,
# a child's (2-19 years) by its percentile for age. A child's bare value says no percentile: not coded.
_BMI_RE = re.compile(r"\bBMI\b(?:\s+(?:of|is|was|=|now))?\s*[:=~]?\s*(\d{2}(?:\.\d+)?)(?!\s*(?:st|nd|rd|th|%))",
                     re.IGNORECASE)
_BMI_PERCENTILE_RE = re.compile(
    r"\bBMI\b[^.\n]{0,30}?(?:(>|>=|≥|<)\s*)?(\d{1,2})(?:st|nd|rd|th)?\s*(?:%ile|percentile|pctl|%\s*for\s+age)",
    re.IGNORECASE)
_WEIGHT_DIAGNOSIS_RE = re.compile(r"\b(?:obes\w*|overweight|underweight|malnutrition|malnourished|cachexi?a\w*)\b",
                                  re.IGNORECASE)
_AGE_RE = re.compile(r"(?<![\d.°])\b(\d{1,3})\s*(?:-?\s*(?:yo|y/o|y\.o\.|year[- ]old|years? old|yr[- ]old)\b|"
                     r"(?-i:[FM])\b(?!\s*(?:foley|fr\b|french|catheter|sheath)))", re.IGNORECASE)
_ADULT_BMI = ((40, "Z68.41"), (45, "Z68.42"), (50, "Z68.43"), (60, "Z68.44"), (70, "Z68.45"))
BMI = 0.8


def patient_age(text: str) -> int | None:
    """The patient's age in years as the note's opening demographics say it ("58F", "9yo"), or None."""
    match = _AGE_RE.search(text[:200])
    return int(match.group(1)) if match else None


def body_mass_index(text: str) -> tuple[str, int] | None:
    """The Z68 code of the body mass index a note states beside a weight diagnosis, with where it is said."""
    if not _WEIGHT_DIAGNOSIS_RE.search(text):
        return None
    age = patient_age(text)
    child = age is not None and age < 20
    percentile = _BMI_PERCENTILE_RE.search(text)
    if percentile is not None and (child or age is None):
        value = int(percentile.group(2)) + (1 if percentile.group(1) == ">" else 0)
        code = "Z68.51" if value < 5 else "Z68.52" if value < 85 else "Z68.53" if value < 95 else "Z68.54"
        return code, percentile.start()
    stated = _BMI_RE.search(text)
    if stated is None or child:
        return None
    value = float(stated.group(1))
    if not 10 <= value <= 100:
        return None
    if value < 20:
        code = "Z68.1"
    elif value < 40:
        code = f"Z68.{int(value)}"
    else:
        code = next(c for bound, c in reversed(_ADULT_BMI) if value >= bound)
    return code, stated.start()

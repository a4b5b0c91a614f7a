"""Combination codes the guidelines presume: hypertension with heart failure or chronic kidney disease,
diabetes with its complications, coronary atherosclerosis with angina.

ICD-10-CM presumes a causal link between hypertension and heart failure or chronic kidney disease
(guideline I.C.9.a): a note that names both is coded I11.0, I12.- or I13.- (with the heart failure and
the CKD stage coded as well), and I10 is excluded. A note rarely writes "hypertensive chronic kidney
disease"; it writes "HTN, CKD 3b".

Likewise the conditions listed under "with" in the index's Diabetes entry are presumed linked to the
diabetes (I.A.15): "T2DM ... diabetic polyneuropathy" is E11.42, "T2DM, CKD 3" E11.22 with N18.3; and
coronary atherosclerosis with angina (I.C.9.b): "CAD ... unstable angina" is I25.110, not I25.10 and I20.0.
"""

from __future__ import annotations

HYPERTENSION = "I10"
_HEART_FAILURE = ("I50",)
_CKD = ("N18.1", "N18.2", "N18.3", "N18.4", "N18.9")  # stages 1-4 and unspecified
_CKD_LATE = ("N18.5", "N18.6")  # stage 5, end stage renal disease
# (heart failure, CKD: None / "ckd" / "late") -> combination code
_COMBINED = {
    (True, None): "I11.0", (False, "ckd"): "I12.9", (False, "late"): "I12.0",
    (True, "ckd"): "I13.0", (True, "late"): "I13.2",
}
PRESENT = 0.5  # a condition matched in part ("kidney disease" for N18.9 in a sentence on something else) is not named
COMBINED = ("I11", "I12", "I13")
CONDITIONS = (_HEART_FAILURE, _CKD, _CKD_LATE)  # the code prefixes that `hypertension_combination` asks about


def hypertension_combination(hypertension: float, conditions: tuple[float, float, float]) -> tuple[str, float] | None:
    """The combination code for a note whose hypertension scores `hypertension` and whose best codes of
    each of CONDITIONS score `conditions`, with its score (the lower of the other conditions':
    hypertension's one-word name never scores high); None without heart failure or CKD."""
    if hypertension < PRESENT:
        return None
    failure, ckd, late = (s if s >= PRESENT else 0.0 for s in conditions)
    stage = "late" if late > 0 and late >= ckd else "ckd" if ckd > 0 else None
    combined = _COMBINED.get((failure > 0, stage))
    if combined is None:
        return None
    return combined, min(s for s in (failure, max(ckd, late)) if s > 0)


# Diabetes categories, the commonest first (a tie goes to type 2).
DIABETES = ("E11", "E10", "E13", "E08", "E09")
# Condition code prefix -> (the diabetes code's subcategory, whether the condition's own code gives way:
# the combination includes it; CKD, ulcers and gastroparesis keep theirs, "use additional code").
DIABETES_WITH = {
    "G62": (".42", True),  # polyneuropathy
    "K31.84": (".43", False),  # gastroparesis
    "N18": (".22", False),  # chronic kidney disease
    "L97.4": (".621", False), "L97.5": (".621", False),  # heel, other part of foot
    "L97.1": (".622", False), "L97.2": (".622", False), "L97.3": (".622", False),
    "L97.8": (".622", False), "L97.9": (".622", False),
    "I73.9": (".51", True),  # peripheral angiopathy
    "R73.9": (".65", True),  # hyperglycemia
    "E16.2": (".649", True),  # hypoglycemia
}


def diabetes_combinations(diabetes: dict[str, float], conditions: dict[str, float]) -> list[tuple[str, float, str]]:
    """(combination code, score, condition prefix) for a note whose diabetes categories score `diabetes`
    (DIABETES -> the best code's score) and whose conditions score `conditions` (DIABETES_WITH keys); the
    score is the condition's. Codes the catalogue lacks are left to the caller."""
    category, score = max(diabetes.items(), key=lambda kv: (kv[1], -DIABETES.index(kv[0])))
    if score < PRESENT:
        return []
    return [(category + DIABETES_WITH[p][0], s, p) for p, s in conditions.items() if s >= PRESENT]


CORONARY = "I25.1"  # atherosclerotic heart disease of native coronary artery, with or without angina
# Angina code -> the coronary atherosclerosis code with that angina.
CORONARY_WITH = {"I20.0": "I25.110", "I20.1": "I25.111", "I20.2": "I25.112", "I20.89": "I25.118",
                 "I20.9": "I25.119"}


def coronary_combination(coronary: float, angina: dict[str, float]) -> tuple[str, float, str] | None:
    """(combination code, score, angina code) for a note whose coronary atherosclerosis scores `coronary`
    and whose angina codes (CORONARY_WITH keys) score `angina`: the best angina's, with its score."""
    if coronary < PRESENT or not angina:
        return None
    code, score = max(angina.items(), key=lambda kv: kv[1])
    return (CORONARY_WITH[code], score, code) if score >= PRESENT else None


# Other conditions the index lists under "with" of another (I.A.15), as one code: (the first condition's code
# prefixes, the second's, the combination code, whether the second's own codes give way). The first's give
# way always. Hydronephrosis with a kidney or ureter stone is N13.2 (N20 excludes it); an alcohol or other
# substance dependence or abuse with intoxication is its "with intoxication" code; COPD with pneumonia is
# J44.0, the pneumonia coded as well ("use additional code to identify the infection").
_SUBSTANCES = ("F10", "F11", "F12", "F13", "F14", "F15", "F16", "F18", "F19")
PAIRS: tuple[tuple[tuple[str, ...], tuple[str, ...], str, bool], ...] = (
    (("N13.30", "N13.39", "N13.9"), ("N20",), "N13.2", True),
    *(((f + ".20",), (f + ".12", f + ".22", f + ".92"), f + ".220", True) for f in _SUBSTANCES),
    *(((f + ".10",), (f + ".12", f + ".92"), f + ".120", True) for f in _SUBSTANCES),
    (("J44.9",), ("J12", "J13", "J14", "J15", "J16", "J18"), "J44.0", False),
)


def pair_combinations(first: list[float], second: list[float]) -> list[int]:
    """Indices into PAIRS of the combinations a note names, whose first conditions score `first` and
    second conditions `second` (each the best of its prefixes, in PAIRS' order)."""
    return [i for i, (a, b) in enumerate(zip(first, second)) if a >= PRESENT and b >= PRESENT]


# Guideline I.C.15.a.1: a condition of a pregnant patient is presumed to complicate the pregnancy unless the
# provider says it does not, and is coded from chapter 15 with the trimester (I.C.15.a.3): a bladder
# infection at 22 weeks is O23.12, hypothyroidism O99.282 beside E03.9. (The condition's code prefixes, the
# chapter 15 code before its trimester character, whether the condition's own code gives way: O23 and O10
# include the condition; O99 and O24 say "use additional code to identify the condition".) Antepartum only:
# a delivery has codes "complicating childbirth" of its own.
IN_PREGNANCY: tuple[tuple[tuple[str, ...], str, bool], ...] = (
    (("N10", "N12"), "O23.0", True),  # infections of kidney
    (("N30",), "O23.1", True),  # infections of bladder
    (("N34",), "O23.2", True),  # infections of urethra
    (("N39.0",), "O23.4", True),  # unspecified infection of urinary tract
    (("I10",), "O10.01", True),  # pre-existing essential hypertension
    (("E10",), "O24.01", False),  # pre-existing type 1 diabetes
    (("E11",), "O24.11", False),  # pre-existing type 2 diabetes
    (("D50", "D51", "D52", "D53", "D55", "D56", "D57", "D58", "D59", "D60", "D61", "D62", "D63", "D64"),
     "O99.01", False),  # anemia
    (("E66",), "O99.21", False),  # obesity
    (("E00", "E01", "E02", "E03", "E04", "E05", "E06", "E07"), "O99.28", False),  # thyroid disorders
    (("F32", "F33", "F41"), "O99.34", False),  # depressive and anxiety disorders
    (("J45",), "O99.51", False),  # asthma
)


def pregnancy_combinations(conditions: list[float], trimester: int | None) -> list[tuple[int, str]]:
    """(index into IN_PREGNANCY, chapter 15 code) of the conditions a pregnancy note names, whose best codes
    score `conditions` (in IN_PREGNANCY's order); none without the trimester."""
    if trimester is None:
        return []
    return [(i, IN_PREGNANCY[i][1] + str(trimester)) for i, s in enumerate(conditions) if s >= PRESENT]

"""Personal and family history codes for the conditions a note names in a history or a relative's context.

ICD-10-CM codes a condition the patient *had* and no longer has, or one a relative has, with Z codes
(Z80-Z87) and a few history codes elsewhere (I25.2 old myocardial infarction): "history of stroke" is
Z86.73, not I63.9; "father had colon cancer" is Z80.0. The family codes carry their own map in the
tabular list ("Conditions classifiable to C15-C26"); it is read from the catalogue. The personal codes'
notes name whole chapters ("Z86.7: conditions classifiable to I00-I99"), but a chronic condition named
in a history ("history of hypertension") is still the patient's and coded as such, so only the history
codes of neoplasms (guideline I.C.2.d) and of episodes that end are used, listed below.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from models.catalog import Catalog, note_code_ranges

_CLASSIFIABLE_RE = re.compile(r"classifiable (?:to|elsewhere in) (.*)$", re.IGNORECASE)

# Personal history codes of conditions that end (an episode, a treated neoplasm), with the conditions
# they stand for; the neoplasm history codes (Z85, Z86.00-) come from the tabular list.
_PERSONAL = {
    "Z86.73": ("I63", "G45"),  # TIA, cerebral infarction without residual deficits
    "Z86.711": ("I26",),  # pulmonary embolism
    "Z86.718": ("I80", "I82"),  # other venous thrombosis and embolism
    "Z86.74": ("I46",),  # sudden cardiac arrest
    "I25.2": ("I21", "I22"),  # old myocardial infarction
    "Z87.01": ("J12-J18",),  # pneumonia (recurrent)
    "Z87.11": ("K25-K28",),  # peptic ulcer disease
    "Z87.440": ("N39.0",),  # urinary (tract) infections
    "Z87.442": ("N20-N23",),  # urinary calculi
    "Z86.0100": ("K63.5", "K62.1"),  # colon polyps
    "Z86.0101": ("D12",),  # adenomatous and serrated colon polyps
    "Z87.891": ("F17",),  # nicotine dependence
    "Z86.32": ("O24.4",),  # gestational diabetes
    "Z86.11": ("A15",),  # tuberculosis
    "Z86.16": ("U07.1",),  # COVID-19
}
_NEOPLASM_HISTORY = ("Z85", "Z86.00")
# Neoplasm history codes whose parent carries the map: the specific children, by the organ.
_PERSONAL_NEOPLASM = {
    "Z85.41": ("C53",), "Z85.42": ("C54-C55",), "Z85.43": ("C56",), "Z85.44": ("C51-C52", "C57"),
    "Z85.4A": ("C57.0",), "Z85.46": ("C61",), "Z85.47": ("C62",), "Z85.48": ("C63.0",),
    "Z85.51": ("C67",), "Z85.53": ("C65",), "Z85.54": ("C66",), "Z85.810": ("C01-C02",),
    "Z85.830": ("C40-C41",), "Z85.831": ("C45-C49",), "Z85.840": ("C69",), "Z85.841": ("C71",),
    "Z85.850": ("C73",),
}

# Family history codes whose parent carries the map: the specific children, by the organ or disease.
_FAMILY = {
    "Z80.41": ("C56",), "Z80.42": ("C61",), "Z80.43": ("C62",),
    "Z80.51": ("C64",), "Z80.52": ("C67",),
    "Z82.41": ("I46",),  # sudden cardiac death
    "Z82.61": ("M05-M19",), "Z82.62": ("M80-M81",), "Z82.71": ("Q61.2", "Q61.3"),
    "Z83.42": ("E78.01",), "Z83.438": ("E78",), "Z83.511": ("H40",),
    "Z83.711": ("K63.5",),  # hyperplastic colon polyps
}


@dataclass(frozen=True)
class HistoryRange:
    """Condition codes from `low` to `high` (prefixes, both included) have the history code `code`."""

    code: str
    low: str
    high: str


def parse_ranges(code: str, note: str) -> list[HistoryRange]:
    """The ranges of one 'Conditions classifiable to C15-C26, C7A.01-' note ([] when it has none)."""
    found = _CLASSIFIABLE_RE.search(note)
    return [HistoryRange(code, low, high) for low, high in note_code_ranges(found.group(1))] if found else []


def _listed(table: dict[str, tuple[str, ...]]) -> list[HistoryRange]:
    return [r for code, parts in table.items() for r in parse_ranges(code, "classifiable to " + ", ".join(parts))]


def _tabular(catalog: Catalog, prefixes: tuple[str, ...]) -> list[HistoryRange]:
    """Ranges of the tabular notes under `prefixes`. A note on a header applies to its residual child (the
    last that says "other": Z80.4 -> Z80.49); the specific children come from the tables above."""
    cm = catalog.cm
    ranges = []
    for code in cm.all_codes:
        if not code.startswith(prefixes):
            continue
        notes = [r for note in cm.inclusion_terms(code) for r in parse_ranges(code, note)]
        if notes and not cm.is_billable(code):
            children = cm.billable_descendants(code)
            target = ([c for c in children if "other" in cm.description(c).lower()] or children)[-1]
            notes = [HistoryRange(target, r.low, r.high) for r in notes]
        ranges.extend(notes)
    return ranges


def history_ranges(catalog: Catalog) -> tuple[list[HistoryRange], list[HistoryRange]]:
    """(personal, family) ranges of the catalogue, only those whose history code it bills."""
    personal = _tabular(catalog, _NEOPLASM_HISTORY) + _listed(_PERSONAL_NEOPLASM) + _listed(_PERSONAL)
    family = _tabular(catalog, ("Z80", "Z81", "Z82", "Z83", "Z84")) + _listed(_FAMILY)
    keep = catalog.cm.is_billable
    return [r for r in personal if keep(r.code)], [r for r in family if keep(r.code)]


def assign(codes: list[str], ranges: list[HistoryRange]) -> list[str | None]:
    """The history code of each of `codes` (None where no range holds it); where ranges overlap, the
    narrowest (fewest of `codes`) wins: C61 prostate is Z80.42, not the residual Z80.49."""
    order = sorted(range(len(codes)), key=codes.__getitem__)
    ordered = [codes[i] for i in order]
    spans = []
    for r in ranges:
        # "\x7f" sorts after every character of a code: C26 up to C26\x7f holds C26.9.
        lo, hi = bisect.bisect_left(ordered, r.low), bisect.bisect_left(ordered, r.high + "\x7f")
        if hi > lo:
            spans.append((hi - lo, lo, hi, r.code))
    target: list[str | None] = [None] * len(codes)
    for _, lo, hi, code in sorted(spans, reverse=True):  # widest first: narrower ranges overwrite
        for pos in range(lo, hi):
            target[order[pos]] = code
    return target

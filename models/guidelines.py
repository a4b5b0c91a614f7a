"""Coding-guideline checks on a set of returned codes: validity, billability (with the billable codes a
category stands for), a missing 7th character, and Excludes1 pairs. They flag; `decide()` ranks."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.catalog import Catalog


@dataclass(frozen=True)
class CodeCheck:
    """What the catalogue says about one returned code in the company of the others."""

    valid: bool
    warnings: list[str] = field(default_factory=list)
    billable_alternatives: list[str] = field(default_factory=list)


def check_codes(
    catalog: Catalog,
    codes: list[tuple[str, str]],
    accepted: list[bool],
    score_of: dict[tuple[str, str], float] | None = None,
    alternatives: int = 3,
) -> list[CodeCheck]:
    """Check (system, code) pairs returned for one note.

    Args:
        catalog: the ICD-10 catalogue.
        codes: the returned codes, best first.
        accepted: which of them are final (Excludes1 is checked among these).
        score_of: the model's score of other codes, to rank a category's billable descendants.
        alternatives: how many billable descendants to name for a non-billable code.
    """
    score_of = score_of or {}
    final_cm = [c for (s, c), ok in zip(codes, accepted) if ok and s == "ICD-10-CM" and catalog.cm.is_valid(c)]
    conflicts: dict[str, list[str]] = {}
    for a, b in catalog.cm.excludes1_pairs(final_cm):
        conflicts.setdefault(a, []).append(b)
        conflicts.setdefault(b, []).append(a)
    checks = []
    for system, code in codes:
        part = catalog.cm if system == "ICD-10-CM" else catalog.pcs
        if not part.is_valid(code):
            checks.append(CodeCheck(valid=False, warnings=["not_in_catalogue"]))
            continue
        warnings: list[str] = []
        options: list[str] = []
        if not part.is_billable(code):
            warnings.append("not_billable")
            if system == "ICD-10-CM":
                if catalog.cm.needs_seventh_character(code):
                    warnings.append("missing_7th_character")
                below = catalog.cm.billable_descendants(code)
            else:
                below = catalog.pcs.codes_under(code)
            options = sorted(below, key=lambda c: (-score_of.get((system, c), 0.0), c))[:alternatives]
        norm = catalog.cm.normalize(code) if system == "ICD-10-CM" else code
        warnings += [f"excludes1:{other}" for other in conflicts.get(norm, [])]
        checks.append(CodeCheck(valid=True, warnings=warnings, billable_alternatives=options))
    return checks

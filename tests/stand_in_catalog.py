"""A stand-in ICD-10-CM catalogue of three codes with their names, for the scorers that embed or match
catalogue names (`models.matcher.catalog_entries` reads only these attributes): keeps such tests to a
handful of names instead of the 185,000 of the real catalogue."""

from __future__ import annotations

from typing import ClassVar


class StandInCm:
    billable_codes: ClassVar[list[str]] = ["I10", "I21.9", "S72.90XA"]
    _names: ClassVar[dict[str, tuple[str, list[str]]]] = {
        "I10": ("Essential (primary) hypertension", ["High blood pressure"]),
        "I21.9": ("Acute myocardial infarction, unspecified", ["Heart attack"]),
        "S72.90XA": ("Unspecified fracture of unspecified femur, initial encounter", []),
    }

    def description(self, code: str) -> str:
        return self._names[code][0]

    def inclusion_terms(self, code: str) -> list[str]:
        return self._names[code][1]


class StandInCatalog:
    cm = StandInCm()

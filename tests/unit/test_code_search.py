"""Code search over the real catalogue: code prefixes, description words, PCS index terms, filters."""

from __future__ import annotations

import pytest

from models.catalog import Catalog
from models.code_search import CodeSearch


@pytest.fixture(scope="module")
def search(catalog: Catalog) -> CodeSearch:
    return CodeSearch(catalog)


def test_a_code_prefix_lists_the_category_then_its_codes(search: CodeSearch) -> None:
    hits = search.search("e11.9", limit=3)
    assert [h.code for h in hits] == ["E11.9"]
    hits = search.search("K35.8", limit=3)
    assert [h.code for h in hits] == ["K35.8", "K35.80", "K35.89"]
    assert not hits[0].billable and hits[1].billable
    assert [h.code for h in search.search("0dtj4", limit=2)] == ["0DTJ4ZG", "0DTJ4ZZ"]


def test_words_match_word_prefixes_billable_and_broad_first(search: CodeSearch) -> None:
    assert search.search("hypertension", limit=1)[0].code == "I10"
    first = search.search("diab mell type 2 without compl", limit=3)
    assert first[0].code == "E11.9" and all("Type 2 diabetes" in h.description for h in first)


def test_pcs_index_terms_find_codes_the_tables_do_not_name(search: CodeSearch) -> None:
    hits = search.search("appendectomy", limit=50)
    assert hits and {h.code[:4] for h in hits} == {"0DBJ", "0DTJ"}
    assert all(h.system == "ICD-10-PCS" for h in hits)


def test_system_filter_limit_and_no_match(search: CodeSearch) -> None:
    assert all(h.system == "ICD-10-CM" for h in search.search("appendix", system="ICD-10-CM", limit=20))
    assert all(h.system == "ICD-10-PCS" for h in search.search("appendix", system="ICD-10-PCS", limit=20))
    assert len(search.search("fracture", limit=7)) == 7
    assert search.search("qqqzzz") == [] and search.search("   ") == []

"""Shared fixtures: the real ICD-10 catalogue and the zero-shot matcher, each built once per session."""

import pytest

from models.catalog import Catalog, get_catalog
from models.matcher import CatalogMatcher


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The process-wide ICD-10-CM + ICD-10-PCS catalogue (a few seconds to load)."""
    return get_catalog()


@pytest.fixture(scope="session")
def matcher(catalog: Catalog) -> CatalogMatcher:
    """A CatalogMatcher over every billable CM code and every PCS code (a few seconds to build)."""
    return CatalogMatcher(catalog)

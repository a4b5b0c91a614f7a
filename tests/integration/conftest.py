"""Service fixtures for the integration tests (see tests/service_fixtures.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.catalog import Catalog
from models.predictor import Predictor
from tests.service_fixtures import Service, database_url, keyword_predictor, make_service, postgres_template

__all__ = ["database_url", "postgres_template"]


@pytest.fixture(scope="session")
def predictor(catalog: Catalog) -> Predictor:
    return keyword_predictor(catalog)


@pytest.fixture
def service(database_url: str, predictor: Predictor, tmp_path: Path) -> Iterator[Service]:
    """The app on a fresh database (SQLite, then PostgreSQL), serving the keyword predictor."""
    svc = make_service(database_url, predictor, tmp_path)
    with svc.client:
        yield svc

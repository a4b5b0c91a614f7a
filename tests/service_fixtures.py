"""Test seams for the service: a keyword scorer behind a real Predictor, real databases, keyed clients."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from models.catalog import Catalog
from models.decision import Thresholds
from models.predictor import Predictor
from models.text import Segment
from service import db
from service.app import create_app
from service.auth import KeyStore
from service.settings import Settings

MINI = Path(__file__).resolve().parent / "fixtures" / "codiesp_mini"
# A linear model trained on the mini CodiEsp fixture in seconds; `%s` is the data source.
TINY_RECIPE = """
name: tiny-linear
model: {kind: linear, min_df: 1, ngram_max: 1, C: 10.0, keep_per_code: 50}
data: {source: %s, train_split: train+dev, eval_split: dev}
thresholds: {accept: 0.5, suggest: 0.0, review_band: 0.2}
"""

POSTGRES_URL = os.environ.get("CODER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


class KeywordScorer:
    """Scores a code 0.95 when its keyword is in the note, 0.6 when the note says "possible <keyword>",
    else 0.01: predictable suggestions, and `needs_review` exactly when a "possible" finding is there."""

    KEYWORDS: ClassVar[dict[str, tuple[str, str]]] = {"diabetes": ("E11.9", "ICD-10-CM"), "hypertension": ("I10", "ICD-10-CM"),
                "pneumonia": ("J18.9", "ICD-10-CM"), "appendectomy": ("0DTJ4ZZ", "ICD-10-PCS")}

    def __init__(self) -> None:
        self.codes = [code for code, _ in self.KEYWORDS.values()]
        self.code_systems = [system for _, system in self.KEYWORDS.values()]

    def probs(self, texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), len(self.codes)), 0.01)
        for row, note in enumerate(texts):
            lower = note.lower()
            for col, word in enumerate(self.KEYWORDS):
                if f"possible {word}" in lower:
                    out[row, col] = 0.6
                elif word in lower:
                    out[row, col] = 0.95
        return out

    def score(self, texts: list[str]) -> tuple[np.ndarray, list[KeywordEvidence]]:
        return self.probs(texts), [KeywordEvidence(text, list(self.KEYWORDS)) for text in texts]


class KeywordEvidence:
    """Where a code's keyword first occurs in the note."""

    def __init__(self, text: str, words: list[str]) -> None:
        self.text, self.words = text, words

    def evidence(self, code_indices: list[int]) -> dict[int, Segment | None]:
        found: dict[int, Segment | None] = {}
        for idx in code_indices:
            match = re.search(self.words[idx], self.text, flags=re.IGNORECASE)
            found[idx] = Segment(match.start(), match.end(), match.group(0)) if match else None
        return found


def keyword_predictor(catalog: Catalog, version: str = "keyword-1") -> Predictor:
    return Predictor(KeywordScorer(), catalog, Thresholds(accept=0.9, suggest=0.05, review_band=0.2),
                     model_version=version, valid_only=True)


def _admin_engine():
    return create_engine(db.normalize_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test copies (CREATE DATABASE … TEMPLATE is fast)."""
    name = f"coder_template_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = db.make_engine(_with_database(POSTGRES_URL, name))
    db.upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def empty_postgres() -> tuple[str, callable]:
    """A new empty PostgreSQL database: (url, drop)."""
    name = f"coder_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return _with_database(POSTGRES_URL, name), drop


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite in a temporary folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'coder.db'}"
        db.upgrade(db.make_engine(url))
        yield url
        return
    template = request.getfixturevalue("postgres_template")
    name = f"coder_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _with_database(POSTGRES_URL, name)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class Service:
    """A running app (TestClient) and one API key per role."""

    client: TestClient
    keys: dict[str, str]
    settings: Settings

    def headers(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}

    def call(self, method: str, url: str, role: str, **kwargs):
        return self.client.request(method, url, headers=self.headers(role), **kwargs)


def make_service(database_url: str, predictor: Predictor | None, tmp_path: Path, **settings_kw) -> Service:
    settings = Settings(database_url=database_url, models_dir=str(tmp_path / "models"), **settings_kw)
    app = create_app(settings, predictor=predictor)
    store = KeyStore(app.state.queue.sessions)
    keys = {role: store.create(f"{role}-1", role).key for role in ("ehr", "coder", "admin")}
    keys["coder2"] = store.create("coder-2", "coder").key
    return Service(TestClient(app), keys, settings)


def wait_ready(client: TestClient, timeout: float = 120.0) -> dict:
    """Poll /readyz until the model (loading in the background) is ready; its body."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == 200:
            return response.json()
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout} s: {response.text}")
        time.sleep(0.2)

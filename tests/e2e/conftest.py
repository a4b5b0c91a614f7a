"""Fixtures shared by the browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import chromium_page


@pytest.fixture
def page() -> Iterator[Page]:
    """A fresh headless Chromium page (Debian's), closed after the test."""
    with chromium_page() as opened:
        yield opened

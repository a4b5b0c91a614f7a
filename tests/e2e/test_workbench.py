"""The coder workbench in a real headless Chromium (Debian's) against a real server process.

Sign in with a coder key, claim with one key press, see the evidence highlighted, remove one code, add one
found by search, resolve; then find the decision through the API. A screenshot of the page with a real
CodiEsp note is saved in CODER_E2E_ARTIFACTS (default reports/e2e).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.e2e.server import ROOT, Server, running_server

# A CodiEsp dev case (English translation), CC BY 4.0: Miranda-Escalada et al., CLEF eHealth 2020.
NOTE = (ROOT / "tests" / "fixtures" / "codiesp_case_S1130-01082009000500015-1.txt").read_text(encoding="utf-8")
KEYS = {"ehr-1": "ehr", "coder-ann": "coder", "admin-1": "admin"}
ARTIFACTS = Path(os.environ.get("CODER_E2E_ARTIFACTS", ROOT / "reports" / "e2e"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("workbench")
    with running_server(tmp, f"sqlite:///{tmp / 'coder.db'}", 1, KEYS) as running:
        yield running


def _post_note(server: Server) -> dict:
    response = httpx.post(f"{server.base_url}/v1/codes:suggest", headers=server.headers("ehr-1"),
                          json={"text": NOTE, "note_id": "codiesp-S1130-01082009000500015-1", "top_k": 8},
                          timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_coder_reviews_a_note_in_the_browser(server: Server, page: Page) -> None:
    suggested = _post_note(server)
    assert suggested["needs_review"] and suggested["review_id"], suggested
    review_id = suggested["review_id"]

    page.goto(f"{server.base_url}/ui")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Your coder API key").fill(server.keys["coder-ann"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text("Signed in as coder-ann")
    expect(page.locator(f'#queue-table tr[data-id="{review_id}"]')).to_be_visible()
    expect(page.locator("#counts")).to_contain_text("Waiting: 1")

    page.keyboard.press("n")  # claim the next item
    expect(page.locator("#item-title")).to_have_text("Note codiesp-S1130-01082009000500015-1")
    expect(page.locator("#item-meta")).to_contain_text("held by coder-ann")
    marks = page.locator("#note mark")
    expect(marks.first).to_be_visible()
    assert marks.count() >= 1

    # The suggestion with evidence: clicking it marks its span and shows its catalogue entry.
    with_evidence = next(c for c in suggested["codes"] if c["evidence"])
    page.locator(f'#suggestions li[data-code="{with_evidence["code"]}"] button.link').click()
    selected = page.locator("#note mark.selected")
    expect(selected.first).to_be_visible()
    span = with_evidence["evidence"][0]
    assert NOTE[span["start"]:span["end"]].startswith(selected.first.inner_text()[:20])
    expect(page.locator("#entry")).to_contain_text(with_evidence["code"])
    expect(page.locator("#entry")).to_contain_text("billable")

    # Remove one kept code with the keyboard (j moves to it, x removes it).
    kept = [c["code"] for c in suggested["codes"] if c["accepted"]] or [suggested["codes"][0]["code"]]
    removed = kept[0]
    box = page.locator(f'#suggestions li[data-code="{removed}"] input[type=checkbox]')
    if not box.is_checked():
        box.check()
    rows = [c["code"] for c in suggested["codes"]]
    page.locator("#note").focus()
    for _ in range(rows.index(removed) + 1):
        page.keyboard.press("j")
    page.keyboard.press("x")
    expect(box).not_to_be_checked()
    expect(page.locator(f'#suggestions li[data-code="{removed}"]')).to_have_class(re.compile(r"\bremoved\b"))

    # Add a code found by words of its description.
    page.locator("#note").focus()
    page.keyboard.press("/")
    expect(page.locator("#code-search")).to_be_focused()
    page.keyboard.type("gastric ulcer")
    expect(page.locator("#search-results li").first).to_be_visible()
    added = page.locator("#search-results li .code").first.inner_text()
    page.keyboard.press("Enter")
    expect(page.locator(f'#added li[data-code="{added}"]')).to_be_visible()
    expect(page.locator("#status")).to_contain_text(f"Added {added}")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "workbench.png"), full_page=True)

    page.locator("#comment").fill("ulcer documented by endoscopy")
    page.get_by_role("button", name="Resolve").click()
    if page.locator("#warnings li").count():  # a rule-breaking set asks for a second press
        expect(page.locator("#status")).to_contain_text("Press Resolve again")
        page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#status")).to_contain_text("Resolved:")
    expect(page.locator("#queue")).to_be_visible()

    item = httpx.get(f"{server.base_url}/v1/reviews/{review_id}", headers=server.headers("coder-ann")).json()
    finals = {c["code"] for c in item["final_codes"]}
    assert item["status"] == "resolved" and item["resolved_by"] == "coder-ann"
    assert added in finals and removed not in finals
    assert item["comment"] == "ulcer documented by endoscopy"
    events = httpx.get(f"{server.base_url}/v1/audit", headers=server.headers("admin-1"),
                       params={"review_id": review_id, "action": "resolve"}).json()["events"]
    assert len(events) == 1 and events[0]["actor"] == "coder-ann"
    assert removed in events[0]["details"]["removed"] and added in events[0]["details"]["added"]


def test_a_wrong_key_is_refused_and_an_ehr_key_is_not_enough(server: Server, page: Page) -> None:
    page.goto(f"{server.base_url}/ui/")
    page.get_by_label("Your coder API key").fill("icd_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#status")).to_have_text("That key was not accepted.")
    page.get_by_label("Your coder API key").fill(server.keys["ehr-1"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#status")).to_contain_text("needs a coder key")
    expect(page.locator("#queue")).to_be_hidden()


def _accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations (labels, contrast, roles, focus) on the page as it is."""
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"] if v["impact"] in ("serious", "critical")
    ]


def test_every_view_passes_axe_accessibility_checks(server: Server, page: Page) -> None:
    response = httpx.post(f"{server.base_url}/v1/codes:suggest", headers=server.headers("ehr-1"),
                          json={"text": NOTE, "note_id": "axe-check", "top_k": 8}, timeout=60)
    assert response.json()["needs_review"]
    page.goto(f"{server.base_url}/ui/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert _accessibility_problems(page) == []
    page.get_by_label("Your coder API key").fill(server.keys["coder-ann"])
    page.keyboard.press("Enter")
    expect(page.locator("#queue-table tbody tr").first).to_be_visible()
    assert _accessibility_problems(page) == []
    page.get_by_role("button", name="Claim next").click()
    expect(page.locator("#note mark").first).to_be_visible()
    page.locator("#suggestions button.link").first.click()
    expect(page.locator("#entry dl")).to_be_visible()
    assert _accessibility_problems(page) == []
    # Tab order starts at the skip link, then the page's own controls, in reading order.
    page.keyboard.press("Escape")
    expect(page.locator("#queue")).to_be_visible()
    page.locator("body").focus()
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()

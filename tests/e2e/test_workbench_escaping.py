"""The coder workbench shows hostile strings as text: markup in a note's text, its note id, its encounter id, a
key's name and a coder's comment is displayed literally and never runs, in a real Chromium (Debian's) against a
real server, as in test_workbench.py. An emoji before the evidence must not shift its highlight either."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.server import ROOT, Server, running_server

IMG = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "<script>window.__pwned=1</script>"
# Characters beyond the BMP (two UTF-16 units each) before all the evidence.
EMOJI = "\U0001fa7a\U0001fac0\U0001fa7b"
# A CodiEsp dev case (English translation), CC BY 4.0: Miranda-Escalada et al., CLEF eHealth 2020.
CASE = (ROOT / "tests" / "fixtures" / "codiesp_case_S1130-01082009000500015-1.txt").read_text(encoding="utf-8")
NOTE = f"{EMOJI} {IMG} {SCRIPT}\n{CASE}\n{SCRIPT} {IMG}"
NOTE_ID = f"{SCRIPT}{IMG}"
CODER = f"coder {IMG}"  # a key name: shown as who is signed in, and as the actor in the history
KEYS = {"ehr-1": "ehr", CODER: "coder"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("escaping")
    with running_server(tmp, f"sqlite:///{tmp / 'coder.db'}", 1, KEYS) as running:
        yield running


def _assert_not_pwned(page: Page) -> None:
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#main img, #main script").count() == 0


def test_markup_everywhere_is_shown_as_text_and_never_runs(server: Server, page: Page) -> None:
    response = httpx.post(f"{server.base_url}/v1/codes:suggest", headers=server.headers("ehr-1"), timeout=60,
                          json={"text": NOTE, "note_id": NOTE_ID, "encounter_id": IMG, "top_k": 8})
    assert response.status_code == 200, response.text
    suggested = response.json()
    assert suggested["needs_review"] and suggested["review_id"], suggested
    review_id = suggested["review_id"]

    page.goto(f"{server.base_url}/ui/")
    page.get_by_label("Your coder API key").fill(server.keys[CODER])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(f"Signed in as {CODER}")
    row = page.locator(f'#queue-table tr[data-id="{review_id}"]')
    expect(row).to_contain_text(NOTE_ID)
    expect(row).to_contain_text(IMG)  # the encounter id
    _assert_not_pwned(page)

    row.get_by_role("button").click()
    page.locator("#claim").click()
    expect(page.locator("#item-meta")).to_contain_text(f"held by {CODER}")
    expect(page.locator("#item-title")).to_have_text(f"Note {NOTE_ID}")
    shown = page.locator("#note").inner_text()
    assert shown.count(SCRIPT) == 2 and shown.count(IMG) == 2 and shown.startswith(EMOJI)
    _assert_not_pwned(page)

    # The highlight and the quoted evidence are the characters the API's offsets name, emoji or not.
    with_evidence = next(c for c in suggested["codes"] if c["evidence"])
    span = with_evidence["evidence"][0]
    page.locator(f'#suggestions li[data-code="{with_evidence["code"]}"] button.link').click()
    expect(page.locator("#entry")).to_contain_text(f"“{NOTE[span['start']:span['end']]}”")
    assert NOTE[span["start"]:span["end"]].startswith(page.locator("#note mark.selected").first.inner_text()[:20])

    comment = f"{SCRIPT} checked {IMG}"
    page.locator("#comment").fill(comment)
    page.get_by_role("button", name="Resolve").click()
    if page.locator("#warnings li").count():  # a rule-breaking set asks for a second press
        expect(page.locator("#status")).to_contain_text("Press Resolve again")
        page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#status")).to_contain_text("Resolved:")
    _assert_not_pwned(page)

    # Open the resolved item again: the comment and the history, whose actor is the coder's key name.
    page.locator("#filter-status").select_option("resolved")
    page.get_by_role("button", name="Apply").click()
    page.locator(f'#queue-table tr[data-id="{review_id}"]').get_by_role("button").click()
    expect(page.locator("#history")).to_contain_text(f"{CODER} · resolve")
    expect(page.locator("#history")).to_contain_text(f"{CODER} · claim")
    expect(page.locator("#comment")).to_have_value(comment)
    assert page.locator("#note").inner_text().count(SCRIPT) == 2
    _assert_not_pwned(page)

    item = httpx.get(f"{server.base_url}/v1/reviews/{review_id}", headers=server.headers(CODER)).json()
    assert (item["text"], item["note_id"], item["comment"], item["resolved_by"]) == (NOTE, NOTE_ID, comment, CODER)

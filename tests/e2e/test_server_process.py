"""A real `python -m service` process: several uvicorn workers on one PostgreSQL database, EHRs and coders
calling it at once, and nothing lost, duplicated or leaked into the logs.

The server serves the embedded default's catalogue matcher, which each worker loads in the background, with
the thresholds of its raw scores (the default itself calibrates them and sends every note to review; this
test needs notes that skip it too); the keys come from the CLI, run against the same database while the
workers load.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from eval.load import complete_lines, json_or_none
from models.artifact import DEFAULT_THRESHOLDS, save_artifact
from models.matcher import CatalogMatcher
from tests.e2e.server import Server, running_server
from tests.service_fixtures import empty_postgres

WORKERS = 2
KEYS = {"ehr-1": "ehr", "admin-1": "admin", "coder-1": "coder", "coder-2": "coder"}
CLAIM_THREADS = ["coder-1", "coder-2"] * 5  # two threads of one coder may race each other too

# (finding, top_k). With the default's matcher and the thresholds of its raw scores (DEFAULT_THRESHOLDS: a
# full match of a specific name is accepted) the first five and "Atrial fibrillation" are confident; the
# others have a code in the review band, or none accepted, so they go to the queue.
FINDINGS = [
    ("Essential hypertension.", 1), ("Acute appendicitis.", 1),
    ("Type 2 diabetes mellitus without complications.", 1), ("Laparoscopic appendectomy.", 1),
    ("Iron deficiency anemia.", 1), ("Asthma.", 5), ("Gout.", 5), ("Hypothyroidism.", 5), ("Chest pain.", 5),
    ("Possible pneumonia on the chest film.", 5), ("Headache, possibly migraine.", 5),
    ("Type 2 diabetes mellitus. Essential hypertension.", 5), ("Community acquired pneumonia.", 5),
    ("Acute appendicitis; laparoscopic appendectomy performed.", 5), ("Follow-up visit, feels well.", 5),
    ("Low back pain after lifting.", 5), ("Urinary tract infection.", 5), ("Atrial fibrillation.", 5),
    ("Chronic kidney disease stage 3.", 5), ("Major depressive disorder.", 5),
]
MARKER = "zqvmark"  # every note carries a word starting with it, so a leak of any note into a log shows
NOTES = [
    {"note_id": f"e2e-note-{n:02d}", "text": f"{finding} {MARKER.title()}{n:02d}x noted.", "top_k": top_k}
    for n, (finding, top_k) in enumerate(FINDINGS)
]


@pytest.fixture
def server(tmp_path: Path, matcher: CatalogMatcher) -> Iterator[Server]:
    """The service with WORKERS workers on a fresh PostgreSQL database, ready, with the keys of KEYS."""
    artifact = save_artifact(tmp_path / "matcher-raw", matcher, DEFAULT_THRESHOLDS, model_version="matcher-raw")
    database_url, drop = empty_postgres()
    try:
        with running_server(tmp_path, database_url, WORKERS, KEYS, {"CODER_ARTIFACT": str(artifact)}) as running:
            yield running
    finally:
        drop()


def _pages(client: httpx.Client, url: str, headers: dict, field: str, limit: int, **params) -> list[dict]:
    """Every row of a paged list endpoint, fetched `limit` at a time."""
    rows: list[dict] = []
    while True:
        response = client.get(url, params={**params, "limit": limit, "offset": len(rows)}, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()[field]
        rows.extend(page)
        if len(page) < limit:
            return rows


def _samples(exposition: str, name: str) -> list:
    families = text_string_to_metric_families(exposition)
    return [sample for family in families for sample in family.samples if sample.name == name]


def _served_per_process(tmp: Path) -> dict[str, float]:
    """coder_notes_served_total per worker pid, read from each worker's own multiprocess file."""
    folders = list(tmp.glob("coder-metrics-*"))
    assert len(folders) == 1, f"expected one Prometheus multiprocess folder under {tmp}, found {folders}"
    served = {}
    for file in folders[0].glob("counter_*.db"):
        alone = tmp / f"alone-{file.stem}"
        alone.mkdir()
        shutil.copy(file, alone / file.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        samples = [s for family in registry.collect() for s in family.samples]
        served[file.stem.removeprefix("counter_")] = sum(
            s.value for s in samples if s.name == "coder_notes_served_total")
    return served


def _claim_until_empty(server: Server, key_name: str, start: threading.Barrier) -> list[httpx.Response]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        start.wait()
        responses = []
        while True:
            responses.append(client.post("/v1/reviews:claimNext", headers=server.headers(key_name)))
            if responses[-1].status_code != 200:
                return responses


def test_workers_share_one_database_without_losing_or_duplicating(server: Server) -> None:
    # --- EHRs: every note posted twice, both copies in flight together, each on a new connection -----------
    posts = [note for note in NOTES for _ in range(2)]
    no_keepalive = httpx.Limits(max_keepalive_connections=0)  # so requests spread over the workers
    with httpx.Client(base_url=server.base_url, timeout=60, limits=no_keepalive) as client:
        def suggest(note: dict) -> httpx.Response:
            return client.post("/v1/codes:suggest", json=note, headers=server.headers("ehr-1"))

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(suggest, posts))

    assert [r.status_code for r in responses if r.status_code != 200] == [], [r.text for r in responses]
    by_note: dict[str, list[dict]] = defaultdict(list)
    for response in responses:
        by_note[response.json()["note_id"]].append(response.json())
    assert sorted(by_note) == [n["note_id"] for n in NOTES]
    for note_id, (first, second) in by_note.items():
        assert first["needs_review"] == second["needs_review"], note_id
        assert first["review_id"] == second["review_id"], f"{note_id} was queued twice"
        assert (first["review_id"] is not None) == first["needs_review"], note_id
    review_ids = {note_id: bodies[0]["review_id"] for note_id, bodies in by_note.items()
                  if bodies[0]["needs_review"]}
    assert 0 < len(review_ids) < len(NOTES), "expected both confident notes and notes that need review"

    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        coder, admin = server.headers("coder-1"), server.headers("admin-1")
        # The queue: one item per note that needed review, under the id both its responses gave.
        items = _pages(client, "/v1/reviews", coder, "items", limit=6, order="oldest")
        assert sorted(i["note_id"] for i in items) == sorted(review_ids)
        assert {i["note_id"]: i["id"] for i in items} == review_ids
        total = client.get("/v1/reviews", params={"limit": 1}, headers=coder).json()["total"]
        assert total == len(review_ids)

        # The audit log: one suggest event per request, one enqueue event per queued note.
        suggests = _pages(client, "/v1/audit", admin, "events", limit=15, action="suggest")
        assert len({e["id"] for e in suggests}) == len(suggests) == len(posts)
        assert Counter(e["note_id"] for e in suggests) == Counter(n["note_id"] for n in posts)
        assert all(e["review_id"] == review_ids.get(e["note_id"]) for e in suggests)
        enqueues = _pages(client, "/v1/audit", admin, "events", limit=100, action="enqueue")
        assert sorted(e["review_id"] for e in enqueues) == sorted(review_ids.values())

    # --- coders: 10 threads on two keys claim until the queue is empty; every item exactly once ------------
    start = threading.Barrier(len(CLAIM_THREADS))
    with ThreadPoolExecutor(max_workers=len(CLAIM_THREADS)) as pool:
        per_thread = list(pool.map(lambda name: _claim_until_empty(server, name, start), CLAIM_THREADS))
    claimed = []
    for key_name, got in zip(CLAIM_THREADS, per_thread):
        assert [r.status_code for r in got] == [200] * (len(got) - 1) + [204], [r.text for r in got]
        for response in got[:-1]:
            item = response.json()
            assert (item["status"], item["claimed_by"]) == ("claimed", key_name)
            claimed.append(item["id"])
    assert sorted(claimed) == sorted(review_ids.values()), "an item was claimed twice, or never"

    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        coder, admin = server.headers("coder-1"), server.headers("admin-1")
        assert client.get("/v1/reviews", params={"status": "open"}, headers=coder).json()["total"] == 0
        claims = _pages(client, "/v1/audit", admin, "events", limit=100, action="claim")
        assert sorted(e["review_id"] for e in claims) == sorted(review_ids.values())
        exposition = client.get("/metrics", headers=admin).text

    # --- metrics: aggregated over the workers, and each worker served some of the notes --------------------
    served = _samples(exposition, "coder_notes_served_total")
    assert sum(s.value for s in served) == len(posts), served
    assert sum(s.value for s in served if s.labels["needs_review"] == "true") == 2 * len(review_ids)
    serving = [s.labels for s in _samples(exposition, "coder_model_info") if s.value == 1]
    assert len({labels["pid"] for labels in serving}) == len(serving) == WORKERS, serving
    assert [s.value for s in _samples(exposition, "coder_review_queue_depth")] == [0]
    per_process = _served_per_process(server.tmp)
    assert sum(per_process.values()) == len(posts), per_process
    assert sum(count > 0 for count in per_process.values()) > 1, f"one worker served all: {per_process}"

    # --- logs, after a clean shutdown: every stderr line is JSON, and no output carries note text ----------
    assert server.stop() == 0, server.log_tail()
    lines = complete_lines(server.stderr)
    assert [line for line in lines if json_or_none(line) is None] == [], "stderr lines that are not JSON"
    suggest_lines = [line for line in lines if json_or_none(line).get("route") == "/v1/codes:suggest"]
    assert len(suggest_lines) == len(posts), "a request line is missing, so the next check would prove little"
    for path in (server.stderr, server.stdout):
        logged = path.read_text(encoding="utf-8").lower()
        assert MARKER not in logged, f"note text in {path.name}"
        assert [n["note_id"] for n in NOTES if n["text"].lower() in logged] == []

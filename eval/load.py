"""`python -m eval.load`: drive a real server with mixed traffic from many concurrent clients for a set time,
then report requests, errors and latency percentiles per kind of request, and check against the database
that nothing was lost or duplicated.

    python -m eval.load --start --database-url postgresql://postgres@127.0.0.1:5432/test --duration 60
    python -m eval.load --url http://127.0.0.1:8000 --database-url postgresql://... [--admin-key KEY]

`--start` runs `python -m service` itself (its own process group, `--workers` workers, a free port, a
temporary models folder), waits until every worker has loaded its model, and stops it at the end. Against
a running server (`--url`), the first admin key comes from `python -m service keys create` on the same
database unless `--admin-key` gives one; the other keys (`ehr`, one `coder` per client) are made through
the API. Every name and note_id carries this run's id, so runs can share a database.

Each virtual client loops until the time is up, choosing: one note (`codes:suggest`; a tenth of them post an
earlier note_id again), a batch of 2-8 notes, a page of the queue with random filters and paging, a coder's
turn (claim the next item, or race the others for one of the first open items by id; then resolve it with a
code set built from its suggestions, sometimes with a code added, or release it), or an admin read (a
note's audit trail, the accuracy report). A connection error, a timeout, a body that contradicts the
request, or any status but the one expected is an error; 409 on a claim by id is a lost race, counted apart.

Then, directly on the database (plain SQL, no service code): one review item per note answered
needs_review under the review id the server gave, and none for the others; every resolve answered 200 is
resolved with exactly its final codes and one `resolve` event; one `suggest` event per note answered; and
in the audit trail of every item claimed, no claim while another coder held the lease, and at most one
resolve, by the holder. Exits 1 on any error or failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import bindparam, create_engine, text
from tqdm.auto import tqdm

from models.codes import normalize_cm, normalize_pcs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NOTES = ROOT.parent / "shared" / "datasets" / "codiesp" / "dev" / "text_files_en"
FALLBACK_NOTES = ROOT / "tests" / "fixtures" / "codiesp_mini" / "dev" / "text_files_en"

# What a virtual client does next, by weight (percent).
MIX = {"suggest": 50, "batch": 10, "queue": 15, "coder": 20, "admin": 5}
REPOST_SHARE = 0.10  # of single suggests: post an earlier note_id again (same text)
CLAIM_BY_ID_SHARE = 0.25  # of coder turns: race the other coders for one of the first open items
RELEASE_SHARE = 0.15  # of claimed items: give it back instead of resolving
ADD_CODE_SHARE = 0.30  # of resolves: add a code the model did not suggest
EXTRA_CODES = [("I10", "ICD-10-CM"), ("E11.9", "ICD-10-CM"), ("R53.83", "ICD-10-CM"), ("Z79.4", "ICD-10-CM"),
               ("J18.9", "ICD-10-CM"), ("0DTJ4ZZ", "ICD-10-PCS"), ("BW03ZZZ", "ICD-10-PCS")]
# Table order of the request kinds.
KINDS = ["suggest", "suggest re-post", "suggestBatch", "reviews list", "claimNext", "claim", "resolve",
         "release", "audit", "accuracy"]
READY_TIMEOUT_S = 300.0


# --- options and the report ------------------------------------------------------------------------------
@dataclass
class LoadOptions:
    """What to drive and how hard."""

    database_url: str
    url: str | None = None
    start: bool = False
    workers: int = 3
    admin_key: str | None = None
    duration: float = 600.0
    clients: int = 32
    notes: list[str] = field(default_factory=list)
    seed: int = 0
    timeout: float = 30.0
    ready_timeout: float = READY_TIMEOUT_S
    progress: bool = True


@dataclass
class KindStats:
    """One kind of request: every attempt, its latency when answered, and how it ended."""

    latencies_ms: list[float] = field(default_factory=list)
    count: int = 0
    errors: int = 0
    races: int = 0  # 409 on a claim by id: another coder held it first
    empty: int = 0  # 204 on claimNext: nothing waiting


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class LoadReport:
    """What a run did and found; `passed` when there was no error and every check passed."""

    url: str
    run_id: str
    duration_s: float
    clients: int
    workers: int | None
    elapsed_s: float
    kinds: dict[str, dict[str, Any]]
    totals: dict[str, Any]
    requests_per_s: float
    ledger: dict[str, int]
    checks: list[Check]
    error_samples: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.totals["errors"]

    @property
    def passed(self) -> bool:
        return self.errors == 0 and all(c.passed for c in self.checks)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _summary(stats: KindStats) -> dict[str, Any]:
    return {"count": stats.count, "errors": stats.errors, "races": stats.races, "empty": stats.empty,
            "p50_ms": percentile(stats.latencies_ms, 50), "p95_ms": percentile(stats.latencies_ms, 95),
            "p99_ms": percentile(stats.latencies_ms, 99)}


# --- a server of our own ---------------------------------------------------------------------------------
@dataclass
class ServerProcess:
    """A `python -m service` process group started by this tool."""

    process: subprocess.Popen
    base_url: str
    stderr: Path
    admin_key: str

    def log_lines(self) -> list[str]:
        return complete_lines(self.stderr)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_lines()[-lines:])

    def stop(self) -> int:
        return stop_process_group(self.process)


def complete_lines(path: Path) -> list[str]:
    """The complete, non-blank lines of a log written so far (a line still being written is left)."""
    text_ = path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text_[: text_.rfind("\n") + 1].splitlines() if line.strip()]


def stop_process_group(process: subprocess.Popen) -> int:
    """SIGTERM to the process group, SIGKILL if it lingers; the parent's exit status."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # a worker its parent left behind
    except ProcessLookupError:
        pass
    return process.returncode


class StartError(RuntimeError):
    """The server, or its first key, could not be brought up."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _service_env(database_url: str, tmp: Path | None = None, **settings: str) -> dict[str, str]:
    # The caller's CODER_* settings must not leak in (a CODER_ARTIFACT would change the model served).
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODER_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
               PYTHONUNBUFFERED="1", CODER_DATABASE_URL=database_url)
    if tmp is not None:
        env["TMPDIR"] = str(tmp)  # the Prometheus multiprocess folder goes there, and goes with it
    env.update({f"CODER_{name.upper()}": value for name, value in settings.items()})
    return env


def _cli_key(name: str, role: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "service", "keys", "create", "--name", name, "--role", role],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _key_from(command: subprocess.Popen, name: str) -> str:
    try:
        out, err = command.communicate(timeout=300)
    except subprocess.TimeoutExpired as exc:
        command.kill()
        raise StartError(f"`python -m service keys create --name {name}` took over 300 s") from exc
    if command.returncode != 0:
        last = "\n".join(err.strip().splitlines()[-2:])
        raise StartError(f"`python -m service keys create --name {name}` failed:\n{last}")
    return out.strip()


def create_admin_key(database_url: str, name: str) -> str:
    """A new admin key from `python -m service keys create`, on the database directly."""
    with tempfile.TemporaryDirectory(prefix="coder-load-") as tmp:
        return _key_from(_cli_key(name, "admin", _service_env(database_url), Path(tmp)), name)


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _models_loaded(lines: list[str]) -> int:
    return sum((json_or_none(line) or {}).get("message") == "model loaded" for line in lines)


@contextmanager
def running_server(database_url: str, workers: int, admin_name: str,
                   ready_timeout: float = READY_TIMEOUT_S, **settings: str) -> Iterator[ServerProcess]:
    """`python -m service` with `workers` workers on `database_url`, every worker's model loaded, and a new
    admin key; stopped on exit. `settings` are more CODER_* settings (artifact="...", runtime="onnx").

    Raises:
        StartError: the server exited while starting, was not ready in time, or the key was refused.
    """
    with tempfile.TemporaryDirectory(prefix="coder-load-") as folder:
        tmp = Path(folder)
        port = free_port()
        env = _service_env(database_url, tmp, workers=str(workers), host="127.0.0.1", port=str(port),
                           **{"models_dir": str(tmp / "models"), "log_level": "INFO", **settings})
        stderr = tmp / "server.err"
        with (tmp / "server.out").open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen([sys.executable, "-m", "service"], cwd=tmp, env=env, stdout=out,
                                       stderr=err, start_new_session=True)
        server = ServerProcess(process, f"http://127.0.0.1:{port}", stderr, admin_key="")
        try:
            # While the workers load; the CLI migrates too, racing the server's migration (which is locked).
            server.admin_key = _key_from(_cli_key(admin_name, "admin", env, tmp), admin_name)
            deadline = time.monotonic() + ready_timeout
            while True:
                ready, loaded = _ready(server.base_url), _models_loaded(server.log_lines())
                if ready and loaded >= workers:
                    break
                if process.poll() is not None:
                    raise StartError(f"the server exited ({process.returncode}) while starting:\n"
                                     f"{server.log_tail()}")
                if time.monotonic() > deadline:
                    raise StartError(f"not ready after {ready_timeout:.0f} s (/readyz {'200' if ready else 'not 200'}"
                                     f", {loaded} of {workers} workers logged 'model loaded'):\n"
                                     f"{server.log_tail()}")
                time.sleep(0.5)
            yield server
        finally:
            server.stop()


def json_or_none(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def server_log_check(server: ServerProcess, exit_status: int) -> Check:
    """The server stopped with status 0, and its stderr is JSON lines with no ERROR or CRITICAL one."""
    lines = server.log_lines()
    records = [json_or_none(line) for line in lines]
    not_json = sum(r is None for r in records)
    bad = Counter(r.get("message", "?")[:80] for r in records if r and r.get("level") in ("ERROR", "CRITICAL"))
    detail = f"exit status {exit_status}; {len(lines)} log lines, {sum(bad.values())} ERROR/CRITICAL"
    if bad:
        detail += " (" + "; ".join(f"{n} x {m!r}" for m, n in bad.most_common(3)) + ")"
    if not_json:
        detail += f", {not_json} not JSON"
    return Check("server stopped cleanly, no errors logged", exit_status == 0 and not bad and not not_json,
                 detail)


# --- what the clients saw --------------------------------------------------------------------------------
@dataclass
class Identity:
    name: str
    key: str


@dataclass
class NoteRecord:
    """A note the server answered 200 for: its first answer, and how many answers in all."""

    text_idx: int
    top_k: int
    needs_review: bool
    review_id: str | None
    answers: int = 1


@dataclass
class Ledger:
    """Client-side bookkeeping, checked against the database at the end."""

    notes: dict[str, NoteRecord] = field(default_factory=dict)
    note_ids: list[str] = field(default_factory=list)  # the keys of `notes`, to pick from cheaply
    uncertain_notes: set[str] = field(default_factory=set)  # asked, no clear answer: the server may have it
    repost_mismatches: list[str] = field(default_factory=list)
    reposts: int = 0
    claims: list[tuple[str, str]] = field(default_factory=list)  # (review_id, coder) answered 200
    resolves: dict[str, tuple[str, list[dict[str, str]]]] = field(default_factory=dict)  # id: (coder, codes)
    releases: list[tuple[str, str]] = field(default_factory=list)
    uncertain_items: set[str] = field(default_factory=set)  # a claim, release or resolve without a clear answer
    foreign_claims: list[str] = field(default_factory=list)  # claim answered 200 naming another holder

    def answered(self, note_id: str, body: dict, text_idx: int, top_k: int) -> None:
        record = self.notes.get(note_id)
        if record is None:
            self.notes[note_id] = NoteRecord(text_idx, top_k, body["needs_review"], body["review_id"])
            self.note_ids.append(note_id)
            return
        record.answers += 1
        self.reposts += 1
        if (body["needs_review"], body["review_id"]) != (record.needs_review, record.review_id):
            self.repost_mismatches.append(
                f"{note_id}: first ({record.needs_review}, {record.review_id}), "
                f"again ({body['needs_review']}, {body['review_id']})")

    def counts(self) -> dict[str, int]:
        return {
            "notes": len(self.notes), "answers": sum(r.answers for r in self.notes.values()),
            "reposts": self.reposts,
            "queued": sum(r.needs_review for r in self.notes.values()), "claims": len(self.claims),
            "resolves": len(self.resolves), "releases": len(self.releases),
            "uncertain_notes": len(self.uncertain_notes), "uncertain_items": len(self.uncertain_items),
        }


class BadBody(Exception):
    """A 2xx answer whose body contradicts the request."""


class Traffic:
    """The virtual clients, their shared HTTP client, and what they saw."""

    def __init__(self, client: httpx.AsyncClient, options: LoadOptions, run_id: str, ehr: Identity,
                 admin: Identity, coders: list[Identity]) -> None:
        self.client, self.options, self.run_id = client, options, run_id
        self.ehr, self.admin, self.coders = ehr, admin, coders
        self.stats: dict[str, KindStats] = {kind: KindStats() for kind in KINDS}
        self.ledger = Ledger()
        self.error_kinds: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()  # odd answers that are not errors
        self._next_note = 0

    # --- one request ---------------------------------------------------------------------------------
    async def call(self, kind: str, method: str, url: str, who: Identity, expect: tuple[int, ...] = (200,),
                   race_ok: bool = False, **kwargs: Any) -> httpx.Response | None:
        """The response when its status is expected (or a 409 race where allowed); None after an error."""
        stats = self.stats[kind]
        stats.count += 1
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, headers={"X-API-Key": who.key}, **kwargs)
        except httpx.HTTPError as exc:  # connection refused or reset, timeouts, protocol errors
            self.error(kind, type(exc).__name__)
            await asyncio.sleep(0.1)  # a server that is down is not hammered in a tight loop
            return None
        stats.latencies_ms.append(1000 * (time.perf_counter() - started))
        if response.status_code in expect:
            if response.status_code == 204:
                stats.empty += 1
            return response
        if race_ok and response.status_code == 409:
            stats.races += 1
            return response
        try:
            code = response.json()["error"]["code"]  # stable codes; the message is left out on purpose
        except (ValueError, KeyError, TypeError):
            code = "?"
        self.error(kind, f"HTTP {response.status_code} {code}")
        return None

    def error(self, kind: str, what: str) -> None:
        self.stats[kind].errors += 1
        self.error_kinds[f"{kind}: {what}"] += 1

    def _body(self, kind: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            self.error(kind, "body is not JSON")
            return None

    # --- the actions ---------------------------------------------------------------------------------
    def _new_note(self, rng: random.Random) -> tuple[str, int, int]:
        self._next_note += 1
        return (f"load-{self.run_id}-n{self._next_note:07d}", rng.randrange(len(self.options.notes)),
                rng.choice([5, 10, 20]))

    async def suggest(self, rng: random.Random) -> None:
        repost = bool(self.ledger.notes) and rng.random() < REPOST_SHARE
        if repost:
            note_id = rng.choice(self.ledger.note_ids)
            text_idx, top_k = self.ledger.notes[note_id].text_idx, self.ledger.notes[note_id].top_k
        else:
            note_id, text_idx, top_k = self._new_note(rng)
        kind = "suggest re-post" if repost else "suggest"
        payload = {"text": self.options.notes[text_idx], "note_id": note_id, "top_k": top_k}
        response = await self.call(kind, "POST", "/v1/codes:suggest", self.ehr, json=payload)
        if response is None:
            self.ledger.uncertain_notes.add(note_id)
            return
        body = self._body(kind, response)
        try:
            self._check_suggestion(body, note_id, top_k)
        except BadBody as exc:
            self.error(kind, str(exc))
            self.ledger.uncertain_notes.add(note_id)
            return
        self.ledger.answered(note_id, body, text_idx, top_k)

    @staticmethod
    def _check_suggestion(body: Any, note_id: str, top_k: int) -> None:
        if not isinstance(body, dict) or body.get("note_id") != note_id:
            raise BadBody("answer for another note_id")
        if (body.get("review_id") is not None) != bool(body.get("needs_review")):
            raise BadBody("review_id given without needs_review, or missing with it")
        if len(body.get("codes", [])) > top_k:
            raise BadBody("more codes than top_k")

    async def batch(self, rng: random.Random) -> None:
        notes = [self._new_note(rng) for _ in range(rng.randint(2, 8))]
        payload = {"notes": [{"text": self.options.notes[i], "note_id": n, "top_k": k} for n, i, k in notes]}
        response = await self.call("suggestBatch", "POST", "/v1/codes:suggestBatch", self.ehr, json=payload)
        body = self._body("suggestBatch", response) if response is not None else None
        results = body.get("results") if isinstance(body, dict) else None
        try:
            if results is None:
                raise BadBody("no results")
            if len(results) != len(notes):
                raise BadBody(f"{len(results)} results for {len(notes)} notes")
            for (note_id, _, top_k), result in zip(notes, results):
                self._check_suggestion(result, note_id, top_k)
        except BadBody as exc:
            if response is not None and body is not None:
                self.error("suggestBatch", str(exc))
            self.ledger.uncertain_notes.update(n for n, _, _ in notes)
            return
        for (note_id, text_idx, top_k), result in zip(notes, results):
            self.ledger.answered(note_id, result, text_idx, top_k)

    async def queue_page(self, rng: random.Random, coder: Identity) -> None:
        params: dict[str, Any] = {"limit": rng.choice([1, 10, 50, 100]), "offset": rng.choice([0, 0, 0, 10, 50])}
        if (status := rng.choice([None, "open", "claimed", "resolved"])) is not None:
            params["status"] = status
        if (order := rng.choice([None, "priority", "oldest", "newest"])) is not None:
            params["order"] = order
        if rng.random() < 0.2:
            params["max_confidence"] = round(rng.random(), 2)
        if rng.random() < 0.1 and self.ledger.notes:
            params["note_id"] = rng.choice(self.ledger.note_ids)
        if rng.random() < 0.1:
            params["claimed_by"] = rng.choice(self.coders).name
        response = await self.call("reviews list", "GET", "/v1/reviews", coder, params=params)
        if response is None or (page := self._body("reviews list", response)) is None:
            return
        items = page.get("items", [])
        contradicted = sorted({name for i in items for name, bad in (
            ("status", "status" in params and i["status"] != params["status"]),
            ("note_id", "note_id" in params and i["note_id"] != params["note_id"]),
            ("claimed_by", "claimed_by" in params and i["claimed_by"] != params["claimed_by"]),
            ("max_confidence", "max_confidence" in params and i["confidence"] > params["max_confidence"]),
        ) if bad})
        if len(items) > params["limit"]:
            contradicted.append("limit")
        if items and page.get("total", -1) < params["offset"] + len(items):
            # Not an error: the service counts and reads the page in two statements (see the report's note).
            self.warnings[f"reviews list: total below offset + items (status={params.get('status', 'any')})"] += 1
        if contradicted:
            self.error("reviews list", f"page contradicts its {', '.join(contradicted)}")

    async def coder_turn(self, rng: random.Random, coder: Identity) -> None:
        if rng.random() < CLAIM_BY_ID_SHARE:
            response = await self.call("reviews list", "GET", "/v1/reviews", coder,
                                       params={"status": "open", "limit": 5})
            page = self._body("reviews list", response) if response is not None else None
            if not page or not page.get("items"):
                return
            review_id = rng.choice(page["items"])["id"]
            response = await self.call("claim", "POST", f"/v1/reviews/{review_id}:claim", coder, race_ok=True)
            if response is None:
                self.ledger.uncertain_items.add(review_id)
                return
            if response.status_code == 409:
                return
            kind = "claim"
        else:
            response = await self.call("claimNext", "POST", "/v1/reviews:claimNext", coder, expect=(200, 204))
            if response is None or response.status_code == 204:
                return  # an error here leaves nothing to trace: no id came back
            kind = "claimNext"
        item = self._body(kind, response)
        if not isinstance(item, dict) or "id" not in item:
            self.error(kind, "no item in the answer")
            return
        if item.get("status") != "claimed" or item.get("claimed_by") != coder.name:
            self.ledger.foreign_claims.append(item["id"])
            self.error(kind, "answered 200 but the item is not held by the caller")
            return
        self.ledger.claims.append((item["id"], coder.name))
        if rng.random() < RELEASE_SHARE:
            response = await self.call("release", "POST", f"/v1/reviews/{item['id']}:release", coder)
            if response is None:
                self.ledger.uncertain_items.add(item["id"])
            else:
                self.ledger.releases.append((item["id"], coder.name))
            return
        codes = final_codes(item.get("suggestions", []), rng)
        payload: dict[str, Any] = {"codes": [{"code": c, "system": s} for c, s in codes]}
        if not codes or rng.random() < 0.3:
            payload["comment"] = "load test: no code applies" if not codes else "load test"
        response = await self.call("resolve", "POST", f"/v1/reviews/{item['id']}:resolve", coder, json=payload)
        if response is None:
            self.ledger.uncertain_items.add(item["id"])
            return
        self.ledger.resolves[item["id"]] = (coder.name, [{"code": _normalize(c, s), "system": s} for c, s in codes])

    async def admin_read(self, rng: random.Random) -> None:
        if self.ledger.notes and rng.random() < 0.7:
            note_id = rng.choice(self.ledger.note_ids)
            response = await self.call("audit", "GET", "/v1/audit", self.admin, params={"note_id": note_id})
            if response is not None and (page := self._body("audit", response)) is not None:
                events = page.get("events", [])
                if not events or any(e.get("note_id") != note_id for e in events):
                    self.error("audit", "no events, or events of another note")
        else:
            response = await self.call("accuracy", "GET", "/v1/audit/accuracy", self.admin)
            if response is not None:
                self._body("accuracy", response)

    async def client_loop(self, index: int, deadline: float) -> None:
        """One virtual client: actions one after another, no pause, until the deadline (the last one ends)."""
        rng = random.Random(self.options.seed * 100_003 + index)
        coder = self.coders[index % len(self.coders)]  # one client per coder key: a claim is its own
        actions, weights = list(MIX), list(MIX.values())
        while time.monotonic() < deadline:
            action = rng.choices(actions, weights)[0]
            if action == "suggest":
                await self.suggest(rng)
            elif action == "batch":
                await self.batch(rng)
            elif action == "queue":
                await self.queue_page(rng, coder)
            elif action == "coder":
                await self.coder_turn(rng, coder)
            else:
                await self.admin_read(rng)

    @property
    def requests(self) -> int:
        return sum(s.count for s in self.stats.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.stats.values())


def final_codes(suggestions: list[dict], rng: random.Random) -> list[tuple[str, str]]:
    """A coder's code set: the accepted suggestions (else the 1-3 most confident), sometimes one code more."""
    usable = [s for s in suggestions if s.get("valid", True) is not False]
    chosen = [s for s in usable if s.get("accepted")]
    if not chosen:
        chosen = sorted(usable, key=lambda s: -s["confidence"])[: rng.randint(1, 3)]
    codes = [(s["code"], s["system"]) for s in chosen]
    if rng.random() < ADD_CODE_SHARE:
        codes.append(rng.choice(EXTRA_CODES))
    return list(dict.fromkeys(codes))


def _normalize(code: str, system: str) -> str:
    return normalize_cm(code) if system == "ICD-10-CM" else normalize_pcs(code)


# --- the database checks ---------------------------------------------------------------------------------
def _engine_url(url: str) -> str:
    """`postgresql://` means psycopg 3, as the service reads it (SQLAlchemy's default would be psycopg2)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value  # SQLite hands JSON columns back as text


def _when(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _few(values: list | set, n: int = 3) -> str:
    shown = ", ".join(str(v) for v in list(values)[:n])
    return shown + (", ..." if len(values) > n else "")


def database_checks(database_url: str, run_id: str, ehr_name: str, ledger: Ledger) -> list[Check]:
    """Compare what the clients were told with what the database holds (plain SQL, this run's rows only)."""
    engine = create_engine(_engine_url(database_url))
    note_pattern = f"load-{run_id}-n%"
    checks: list[Check] = []
    try:
        with engine.connect() as connection:
            def rows(sql: str, **params: Any) -> list:
                statement = text(sql)
                for name, value in params.items():
                    if isinstance(value, list):
                        statement = statement.bindparams(bindparam(name, expanding=True))
                        if not value:
                            return []
                return list(connection.execute(statement, params))

            # (a) one item per note answered needs_review, under the id the server gave; none for the others.
            expected = {n: r.review_id for n, r in ledger.notes.items() if r.needs_review}
            items = rows("SELECT note_id, id FROM review_items WHERE note_id LIKE :p", p=note_pattern)
            found: dict[str, list[str]] = defaultdict(list)
            for note_id, review_id in items:
                found[note_id].append(review_id)
            missing = [n for n in expected if n not in found]
            duplicated = [n for n, ids in found.items() if len(ids) > 1]
            other_id = [n for n, ids in found.items() if n in expected and ids[0] != expected[n]]
            unexpected = [n for n in found if n not in expected and n not in ledger.uncertain_notes]
            enqueues = Counter(r for (r,) in rows(
                "SELECT review_id FROM audit_events WHERE action = 'enqueue' AND note_id LIKE :p", p=note_pattern))
            bad_enqueues = [r for r in expected.values() if enqueues[r] != 1]
            problems = [(missing, "missing"), (duplicated, "duplicated"), (other_id, "with another id"),
                        (unexpected, "for notes not needing review"), (bad_enqueues, "without exactly one enqueue")]
            checks.append(Check(
                "(a) one review item per note answered needs_review, with the review_id returned",
                not any(p for p, _ in problems),
                f"{len(expected)} expected, {len(items)} in the database" + "".join(
                    f"; {len(p)} {what} ({_few(p)})" for p, what in problems if p)))
            checks.append(Check(
                "(a') re-posted note_ids answered with their first review_id", not ledger.repost_mismatches,
                f"{ledger.reposts} re-posts" + (f"; {len(ledger.repost_mismatches)} differ "
                                               f"({_few(ledger.repost_mismatches, 2)})"
                                               if ledger.repost_mismatches else "")))

            # (b) every resolve answered 200 is resolved with exactly its codes, and has one resolve event.
            resolved_ids = list(ledger.resolves)
            state = {r.id: r for r in rows(
                "SELECT id, status, resolved_by, final_codes FROM review_items WHERE id IN :ids", ids=resolved_ids)}
            resolve_events = Counter(r for (r,) in rows(
                "SELECT review_id FROM audit_events WHERE action = 'resolve' AND review_id IN :ids",
                ids=resolved_ids))
            wrong = []
            for review_id, (coder, codes) in ledger.resolves.items():
                row = state.get(review_id)
                if row is None or row.status != "resolved" or row.resolved_by != coder:
                    wrong.append(f"{review_id}: {row.status if row else 'absent'}")
                elif _json(row.final_codes) != codes:
                    wrong.append(f"{review_id}: other final codes")
                elif resolve_events[review_id] != 1:
                    wrong.append(f"{review_id}: {resolve_events[review_id]} resolve events")
            checks.append(Check("(b) each resolve answered 200 is resolved with its final codes, one resolve event",
                                not wrong, f"{len(resolved_ids)} resolves" + (
                                    f"; {len(wrong)} wrong ({_few(wrong, 2)})" if wrong else "")))

            # (c) one suggest event per note answered (single, batch, re-posts).
            events = dict(rows("SELECT note_id, COUNT(*) FROM audit_events WHERE action = 'suggest' AND actor = :a "
                               "GROUP BY note_id", a=ehr_name))
            answered = {n: r.answers for n, r in ledger.notes.items()}
            off = [n for n in set(events) | set(answered) if events.get(n, 0) != answered.get(n, 0)
                   # a request without a clear answer may or may not have been served
                   and not (n in ledger.uncertain_notes and events.get(n, 0) > answered.get(n, 0))]
            checks.append(Check("(c) suggest audit events = notes answered 200", not off,
                                f"{sum(events.values())} events, {sum(answered.values())} notes answered"
                                + (f"; {len(off)} note_ids differ ({_few(off)})" if off else "")))

            # (d) in each claimed item's trail: no claim while another coder holds the lease; at most one
            # resolve, by the holder; and a claim event for every claim answered 200.
            claimed_ids = sorted({r for r, _ in ledger.claims})
            trail = rows("SELECT review_id, actor, action, at, details FROM audit_events WHERE review_id IN :ids "
                         "AND action IN ('claim', 'release', 'resolve') ORDER BY id", ids=claimed_ids)
            violations = trail_violations(trail)
            claim_events = Counter((r.review_id, r.actor) for r in trail if r.action == "claim")
            ours = Counter(c for c in ledger.claims if c[0] not in ledger.uncertain_items)
            unrecorded = [f"{r} by {c}" for (r, c), n in ours.items() if claim_events[(r, c)] < n]
            violations += [f"claim of {u} has no claim event" for u in unrecorded]
            violations += [f"{r}: answered a claim held by someone else" for r in ledger.foreign_claims]
            checks.append(Check("(d) no item held by two coders; one resolve at most, by its claimer",
                                not violations, f"{len(ledger.claims)} claims of {len(claimed_ids)} items, "
                                f"{len(trail)} claim/release/resolve events" + (
                                    f"; {len(violations)} violations ({_few(violations, 2)})" if violations else "")))
    finally:
        engine.dispose()
    return checks


def trail_violations(trail: list) -> list[str]:
    """Breaches of one-holder-at-a-time in claim/release/resolve events (ordered by id, per review item)."""
    violations = []
    by_item: dict[str, list] = defaultdict(list)
    for event in trail:
        by_item[event.review_id].append(event)
    for review_id, events in by_item.items():
        holder, held_until, resolved = None, None, False
        for event in events:
            at = _when(event.at)
            if resolved:
                violations.append(f"{review_id}: {event.action} by {event.actor} after its resolve")
            elif event.action == "claim":
                if holder is not None and holder != event.actor and at < held_until:
                    violations.append(f"{review_id}: claimed by {event.actor} while {holder} held it")
                lease = float((_json(event.details) or {}).get("lease_seconds", 900))
                holder, held_until = event.actor, at + timedelta(seconds=lease)
            elif event.action == "release":
                holder = None
            elif event.action == "resolve":
                if event.actor != holder:
                    violations.append(f"{review_id}: resolved by {event.actor}, held by {holder}")
                resolved, holder = True, None
    return violations


# --- the run ---------------------------------------------------------------------------------------------
async def _make_key(client: httpx.AsyncClient, admin: Identity, name: str, role: str) -> Identity:
    try:
        response = await client.post("/v1/keys", json={"name": name, "role": role},
                                     headers={"X-API-Key": admin.key})
    except httpx.HTTPError as exc:
        raise StartError(f"POST /v1/keys for {name}: {type(exc).__name__}") from exc
    if response.status_code != 201:
        raise StartError(f"POST /v1/keys for {name}: HTTP {response.status_code} {response.text[:200]}")
    return Identity(name, response.json()["key"])


async def _progress(traffic: Traffic, started: float, duration: float, enabled: bool) -> None:
    with tqdm(total=round(duration), unit="s", desc="load", disable=not enabled,
              bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} s{postfix}") as bar:
        while True:
            bar.n = min(time.monotonic() - started, duration)
            bar.set_postfix(requests=traffic.requests, errors=traffic.errors, refresh=False)
            bar.refresh()
            if bar.n >= duration:
                return
            await asyncio.sleep(0.5)


async def run_load(options: LoadOptions, base_url: str, admin_key: str, run_id: str) -> LoadReport:
    """Make this run's keys, drive `options.clients` virtual clients for `options.duration` seconds, then
    check the database. The server must be ready."""
    limits = httpx.Limits(max_connections=options.clients + 4, max_keepalive_connections=options.clients + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=options.timeout, limits=limits) as client:
        admin = Identity(f"load-{run_id}-admin", admin_key)
        ehr = await _make_key(client, admin, f"load-{run_id}-ehr", "ehr")
        coders = list(await asyncio.gather(*(_make_key(client, admin, f"load-{run_id}-coder-{i}", "coder")
                                             for i in range(1, options.clients + 1))))
        traffic = Traffic(client, options, run_id, ehr, admin, coders)
        started = time.monotonic()
        deadline = started + options.duration
        progress = asyncio.create_task(_progress(traffic, started, options.duration, options.progress))
        await asyncio.gather(*(traffic.client_loop(i, deadline) for i in range(options.clients)))
        elapsed = time.monotonic() - started
        await progress
    checks = database_checks(options.database_url, run_id, ehr.name, traffic.ledger)
    everything = KindStats(latencies_ms=[ms for s in traffic.stats.values() for ms in s.latencies_ms],
                           count=traffic.requests, errors=traffic.errors,
                           races=sum(s.races for s in traffic.stats.values()),
                           empty=sum(s.empty for s in traffic.stats.values()))
    samples = [f"{n} x {what}" for what, n in traffic.error_kinds.most_common(10)]
    return LoadReport(
        url=base_url, run_id=run_id, duration_s=options.duration, clients=options.clients,
        workers=options.workers if options.start else None, elapsed_s=elapsed,
        kinds={kind: _summary(stats) for kind, stats in traffic.stats.items()}, totals=_summary(everything),
        requests_per_s=traffic.requests / elapsed if elapsed else 0.0, ledger=traffic.ledger.counts(),
        checks=checks, error_samples=samples,
        warnings=[f"{n} x {what}" for what, n in traffic.warnings.most_common()],
    )


def format_report(report: LoadReport) -> str:
    """The report as Markdown: requests per kind with latency percentiles, then the checks."""
    def ms(value: float | None) -> str:
        return "" if value is None else f"{value:.0f}"

    workers = f", {report.workers} workers" if report.workers else ""
    lines = [(f"\n{report.clients} clients for {report.duration_s:.0f} s{workers}, run {report.run_id}: "
              f"{report.totals['count']} requests in {report.elapsed_s:.1f} s, "
              f"{report.requests_per_s:.1f} requests/s\n"),
             "| request | count | errors | 409 races | 204 empty | p50 (ms) | p95 (ms) | p99 (ms) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind, row in [*report.kinds.items(), ("all", report.totals)]:
        name = f"**{kind}**" if kind == "all" else kind
        lines.append(f"| {name} | {row['count']} | {row['errors']} | {row['races'] or ''} | {row['empty'] or ''} "
                     f"| {ms(row['p50_ms'])} | {ms(row['p95_ms'])} | {ms(row['p99_ms'])} |")
    ledger = report.ledger
    lines.append(f"\n{ledger['notes']} notes posted ({ledger['answers']} answers, {ledger['reposts']} re-posts), "
                 f"{ledger['queued']} queued for review; {ledger['claims']} claims, {ledger['resolves']} resolves, "
                 f"{ledger['releases']} releases.\n")
    lines += ["| check | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.detail} |" for c in report.checks]
    if report.error_samples:
        lines.append("\nErrors (most frequent first):\n" + "\n".join(f"- {s}" for s in report.error_samples))
    if report.warnings:
        lines.append("\nWarnings (not errors):\n" + "\n".join(f"- {s}" for s in report.warnings))
    return "\n".join(lines)


def read_notes(folder: str | None) -> list[str]:
    """The texts of the folder's .txt files; by default CodiEsp dev (English), else the test fixture."""
    if folder is None:
        path = DEFAULT_NOTES if DEFAULT_NOTES.is_dir() else FALLBACK_NOTES
    else:
        path = Path(folder)
    return [p.read_text(encoding="utf-8") for p in sorted(path.glob("*.txt"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000")
    target.add_argument("--start", action="store_true", help="start `python -m service` for the run, then stop it")
    parser.add_argument("--database-url", required=True,
                        help="the server's database (CODER_DATABASE_URL), for --start and for the checks")
    parser.add_argument("--workers", type=int, default=3, help="server workers, with --start")
    parser.add_argument("--admin-key", default=os.environ.get("CODER_LOAD_ADMIN_KEY"),
                        help="with --url: an admin key (default: a new one from `python -m service keys create`)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--clients", type=int, default=32, help="concurrent virtual clients")
    parser.add_argument("--notes", default=None, help=f"folder of .txt notes (default {DEFAULT_NOTES}, "
                        "or the test fixture when that is absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request is an error")
    parser.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT_S,
                        help="with --start: seconds to wait for every worker to load its model")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    notes = read_notes(args.notes)
    if not notes:
        print(f"error: no .txt notes in {args.notes or DEFAULT_NOTES}", file=sys.stderr)
        return 2
    if args.clients < 1 or args.duration <= 0:
        print("error: --clients and --duration must be positive", file=sys.stderr)
        return 2
    options = LoadOptions(database_url=args.database_url, url=args.url, start=args.start, workers=args.workers,
                          admin_key=args.admin_key, duration=args.duration, clients=args.clients, notes=notes,
                          seed=args.seed, timeout=args.timeout, ready_timeout=args.ready_timeout,
                          progress=not args.no_progress)
    run_id = uuid.uuid4().hex[:8]
    admin_name = f"load-{run_id}-admin"
    try:
        if options.start:
            print(f"starting `python -m service` with {options.workers} workers ...", file=sys.stderr)
            started = time.monotonic()
            with running_server(options.database_url, options.workers, admin_name,
                                options.ready_timeout) as server:
                print(f"ready after {time.monotonic() - started:.0f} s", file=sys.stderr)
                report = asyncio.run(run_load(options, server.base_url, server.admin_key, run_id))
                report.checks.append(server_log_check(server, server.stop()))
        else:
            if not _ready(options.url.rstrip("/")):
                raise StartError(f"{options.url}/readyz does not answer 200: is the server up and its model loaded?")
            admin_key = options.admin_key or create_admin_key(options.database_url, admin_name)
            report = asyncio.run(run_load(options, options.url.rstrip("/"), admin_key, run_id))
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        payload = {**asdict(report), "errors": report.errors, "passed": report.passed}
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())

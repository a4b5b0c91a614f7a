"""Faults against a real `python -m service` process: PostgreSQL stopped under traffic, a worker killed in the
middle of resolves, corrupt model artifacts, and a full or read-only disk under SQLite.

Each test makes its own fault for real (a throwaway PostgreSQL cluster it stops, a SIGKILL, damaged files,
a small loop-mounted file system it fills and makes immutable) and cleans it up in `finally` blocks. The
servers serve a tiny linear model trained once for the module: it loads faster than the embedded default
(which builds its matcher at start-up), and it is unsure of every note below, so each is queued for review.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from eval.load import complete_lines, free_port, json_or_none
from service import db
from tests.e2e.server import Server, run_to_exit, running_server
from tests.phi_scan import PHI
from tests.service_fixtures import MINI, TINY_RECIPE, empty_postgres
from training.config import load_config
from training.train import train

REVIEW_FINDINGS = [
    "Asthma.", "Gout.", "Hypothyroidism.", "Chest pain.", "Possible pneumonia on the chest film.",
    "Headache, possibly migraine.", "Community acquired pneumonia.", "Follow-up visit, feels well.",
    "Low back pain after lifting.", "Urinary tract infection.", "Major depressive disorder.",
]
FINAL_CODES = ["E11.9", "I10", "J18.9", "K35.80", "N39.0", "J45.909"]
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)  # a new connection per request: spread over workers
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _note(note_id: str, n: int) -> dict:
    # PHI marks the note text, so that a fault path that logs it fails the suite's log scan.
    finding = REVIEW_FINDINGS[n % len(REVIEW_FINDINGS)]
    return {"note_id": note_id, "text": f"{finding} Seen {PHI}.", "top_k": 5}


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny linear artifact trained on the mini CodiEsp fixture (seconds)."""
    root = tmp_path_factory.mktemp("tiny")
    recipe = root / "tiny-a.yaml"
    recipe.write_text(TINY_RECIPE.replace("tiny-linear", "tiny-a") % MINI, encoding="utf-8")
    train(load_config(recipe), root / "tiny-a", progress=False)
    return root / "tiny-a"


def _assert_unavailable(response: httpx.Response, code: str) -> None:
    """A 503 a client can act on: Retry-After, a stable code, and no internals (SQL, driver, traceback)."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == code, response.text
    for internal in ("SQL", "sqlite3", "psycopg", "Traceback", "SELECT", "INSERT", "UPDATE"):
        assert internal not in response.text, response.text


def _worker_pids(server: Server) -> list[int]:
    """The uvicorn workers: the server's children that run multiprocessing's spawn_main (another child is
    multiprocessing's resource tracker)."""
    pids = set()
    for children in Path(f"/proc/{server.process.pid}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.add(int(pid))
            except OSError:
                continue  # exited meanwhile
    return sorted(pids)


def _logged(server: Server, message: str) -> int:
    """How many of the server's JSON log lines carry this message."""
    return sum((json_or_none(line) or {}).get("message") == message for line in complete_lines(server.stderr))


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.2)


# --- 1. PostgreSQL stopped while clients post and coders work -------------------------------------------

@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster of our own, so stopping it disturbs no other test."""

    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), *args]
        subprocess.run(_as_postgres(command), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-l", str(self.root / "postgres.log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop")


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries in {PG_BIN}")
    root = Path(tempfile.mkdtemp(prefix="coder-pg-"))  # not under pytest's root-only tmp_path
    cluster = Cluster(root, free_port())
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U",
                                     "postgres", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Call:
    kind: str
    note_id: str | None
    phase_at_start: str
    phase_at_end: str
    seconds: float
    response: httpx.Response | None
    error: str | None = None


@dataclass
class Traffic:
    """EHR and coder threads calling the server until told to stop; every call recorded with its phase."""

    server: Server
    phase: str = "up"
    calls: list[Call] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def call(self, client: httpx.Client, kind: str, note_id: str | None, method: str, url: str, key: str,
             **kw) -> None:
        start_phase, started = self.phase, time.perf_counter()
        try:
            response, error = client.request(method, url, headers=self.server.headers(key), **kw), None
        except httpx.HTTPError as exc:
            response, error = None, type(exc).__name__
        elapsed = time.perf_counter() - started
        self.calls.append(Call(kind, note_id, start_phase, self.phase, elapsed, response, error))

    def ehr(self, thread: int) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=30, limits=NO_KEEPALIVE) as client:
            n = 0
            while not self.stop.is_set():
                note_id = f"pg-{thread}-{n}"
                self.call(client, "suggest", note_id, "POST", "/v1/codes:suggest", "ehr-1",
                          json=_note(note_id, n))
                n += 1
                time.sleep(0.1)

    def coder(self, key: str) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=30, limits=NO_KEEPALIVE) as client:
            while not self.stop.is_set():
                self.call(client, "list", None, "GET", "/v1/reviews", key, params={"limit": 5})
                self.call(client, "claim", None, "POST", "/v1/reviews:claimNext", key)
                time.sleep(0.1)

    def during(self, phase: str) -> list[Call]:
        return [c for c in self.calls if c.phase_at_start == c.phase_at_end == phase]


def test_postgres_stopped_under_traffic_fails_fast_and_recovers_without_restart(
    tmp_path: Path, tiny_artifact: Path
) -> None:
    keys = {"ehr-1": "ehr", "coder-1": "coder", "coder-2": "coder"}
    env = {"CODER_ARTIFACT": str(tiny_artifact), "CODER_MODEL_SYNC_SECONDS": "1"}
    with throwaway_cluster() as cluster, running_server(tmp_path, cluster.url, 2, keys, env=env) as server:
        traffic = Traffic(server)
        threads = [threading.Thread(target=traffic.ehr, args=(t,)) for t in range(3)]
        threads += [threading.Thread(target=traffic.coder, args=(k,)) for k in ("coder-1", "coder-2")]
        for thread in threads:
            thread.start()
        probes: list[httpx.Response] = []
        try:
            time.sleep(2)
            traffic.phase = "stopping"
            cluster.stop("fast")  # sessions in flight are terminated; new connections are refused
            traffic.phase = "down"
            with httpx.Client(base_url=server.base_url, timeout=30, limits=NO_KEEPALIVE) as client:
                for n in range(4):  # several connections, so both workers answer
                    probes.append(client.post("/v1/codes:suggest", json=_note(f"probe-{n}", n),
                                              headers=server.headers("ehr-1")))
                    probes.append(client.get("/v1/reviews", headers=server.headers("coder-1")))
                    probes.append(client.post("/v1/reviews:claimNext", headers=server.headers("coder-2")))
                    health = [client.get("/healthz"), client.get("/readyz")]
                    assert [r.status_code for r in health] == [200, 200], [r.text for r in health]
            time.sleep(1)
            # A worker that dies during the outage is replaced by uvicorn with one that cannot read which
            # model to serve yet: it must load one once the database is back, not stay unready for good.
            traffic.phase = "replacing"
            os.kill(_worker_pids(server)[0], signal.SIGKILL)
            _wait_for(lambda: _logged(server, "Application startup complete.") == 3, "a replacement worker")
            time.sleep(1)  # its first attempt to load a model, which fails on the database
            traffic.phase = "starting"
            cluster.start()
            _wait_for(lambda: _logged(server, "model loaded") >= 3,
                      "the replacement worker to load its model", timeout=60)
            traffic.phase = "up again"
            time.sleep(2)
        finally:
            traffic.stop.set()
            for thread in threads:
                thread.join()

        for probe in probes:
            # The API key check needs the database too: a valid key during the outage is a 503, never a 401.
            _assert_unavailable(probe, "database_unavailable")
        killed = [c for c in traffic.calls if "replacing" in (c.phase_at_start, c.phase_at_end)]
        assert [c for c in traffic.calls if c.error is not None and c not in killed] == [], \
            "a call failed at the connection level, other than at the killed worker"
        answered = [c for c in traffic.calls if c.error is None]
        statuses = Counter((c.kind, c.response.status_code) for c in answered)
        assert set(statuses) <= {(kind, status) for kind in ("suggest", "list", "claim")
                                 for status in (200, 204, 503)}, statuses
        before, down, after = traffic.during("up"), traffic.during("down"), traffic.during("up again")
        # Suggestions cannot be served without the database in this design: every suggestion served is
        # audited (and a note that needs review is queued) in the same transaction, so while the database
        # is down a suggestion is refused with 503, for the EHR to retry, rather than served unaudited.
        assert {c.kind for c in down} == {"suggest", "list", "claim"}, "the outage saw too little traffic"
        for call in down:
            _assert_unavailable(call.response, "database_unavailable")
        slowest = max(c.seconds for c in down + [c for c in traffic.calls if c.phase_at_start == "stopping"])
        print(f"\ncalls: {statuses}; {len(traffic.calls) - len(answered)} cut by the kill; "
              f"slowest call during the outage {slowest:.2f} s")
        assert slowest < 4, "a request waited on the stopped database instead of failing fast"
        # Recovered without a restart: every call that began after PostgreSQL was back succeeded.
        assert before and after and all(c.response.status_code in (200, 204) for c in before + after), \
            Counter(c.response.status_code for c in after)
        with httpx.Client(base_url=server.base_url, timeout=30, limits=NO_KEEPALIVE) as client:
            assert {client.get("/readyz").status_code for _ in range(6)} == {200}

        # The EHRs retry every note refused during the outage (or cut off by the kill), with the same note_id.
        refused = {c.note_id for c in traffic.calls
                   if c.kind == "suggest" and (c.error or c.response.status_code != 200)}
        refused |= {f"probe-{n}" for n in range(4)}
        with httpx.Client(base_url=server.base_url, timeout=30) as client, ThreadPoolExecutor(4) as pool:
            def retry(note_id: str) -> httpx.Response:
                n = int(note_id.rsplit("-", 1)[1])
                return client.post("/v1/codes:suggest", json=_note(note_id, n),
                                   headers=server.headers("ehr-1"))

            for note_id, retried in zip(sorted(refused), pool.map(retry, sorted(refused))):
                assert retried.status_code == 200, retried.text
                traffic.calls.append(Call("suggest", note_id, "retry", "retry", 0, retried))
        served = {c.note_id: c.response.json()["review_id"] for c in traffic.calls
                  if c.kind == "suggest" and c.error is None and c.response.status_code == 200}
        assert all(served.values()), "every note of REVIEW_FINDINGS should need review"
        assert refused - {f"probe-{n}" for n in range(4)}, "no EHR call was refused, so no retry was tested"
        _check_queue(cluster.url, served)


def _check_queue(url: str, answered: dict[str, str]) -> None:
    """Exactly one queue item, and one enqueue event, per note_id; each under the id its answer gave."""
    engine = create_engine(db.normalize_url(url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT note_id, id FROM review_items")).all()
            enqueued = Counter(connection.execute(
                text("SELECT review_id FROM audit_events WHERE action = 'enqueue'")).scalars())
    finally:
        engine.dispose()
    assert dict(rows) == answered
    assert len(rows) == len(answered)
    assert set(enqueued.values()) == {1} and set(enqueued) == set(answered.values())


# --- 2. A worker killed with SIGKILL in the middle of resolves -----------------------------------------

ITEMS = 40
KILL_AFTER = 8  # resolves answered before the kill
CODERS = ["coder-1", "coder-2", "coder-3"]


def _final_codes(n: int) -> list[dict]:
    return [{"code": FINAL_CODES[n % len(FINAL_CODES)], "system": "ICD-10-CM"},
            {"code": FINAL_CODES[(n + 1) % len(FINAL_CODES)], "system": "ICD-10-CM"}]


def test_a_worker_killed_mid_resolve_leaves_no_half_written_item(tmp_path: Path, tiny_artifact: Path) -> None:
    env = {"CODER_ARTIFACT": str(tiny_artifact)}
    url, drop = empty_postgres()
    try:
        (tmp_path / "first").mkdir()
        with running_server(tmp_path / "first", url, 2, {"ehr-1": "ehr", **dict.fromkeys(CODERS, "coder")},
                            env=env) as server:
            keys = server.keys
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                review_ids = []
                for n in range(ITEMS):
                    queued = client.post("/v1/codes:suggest", json=_note(f"kill-{n}", n),
                                         headers=server.headers("ehr-1"))
                    assert queued.status_code == 200 and queued.json()["review_id"], queued.text
                    review_ids.append(queued.json()["review_id"])
                holder = {}
                for n in range(ITEMS):
                    coder = CODERS[n % len(CODERS)]
                    claimed = client.post("/v1/reviews:claimNext", headers=server.headers(coder))
                    assert claimed.status_code == 200, claimed.text
                    holder[claimed.json()["id"]] = coder
            assert sorted(holder) == sorted(review_ids)
            final = {review_id: _final_codes(n) for n, review_id in enumerate(review_ids)}
            workers = _worker_pids(server)
            assert len(workers) == 2, workers
            victim = workers[0]

            answers: list[tuple[str, int | str, float]] = []  # (review id, status or error, when)
            lock, enough = threading.Lock(), threading.Event()

            def resolve(batch: list[str]) -> None:
                with httpx.Client(base_url=server.base_url, timeout=30, limits=NO_KEEPALIVE) as client:
                    for review_id in batch:
                        try:
                            outcome: int | str = client.post(
                                f"/v1/reviews/{review_id}:resolve", json={"codes": final[review_id]},
                                headers=server.headers(holder[review_id])).status_code
                        except httpx.TransportError as exc:  # the killed worker's connections
                            outcome = type(exc).__name__
                        with lock:
                            answers.append((review_id, outcome, time.monotonic()))
                            if sum(a[1] == 200 for a in answers) >= KILL_AFTER:
                                enough.set()

            # Two threads per coder, each resolving every other of that coder's items.
            batches = [[r for r in review_ids if holder[r] == coder][part::2]
                       for coder in CODERS for part in (0, 1)]
            threads = [threading.Thread(target=resolve, args=(batch,)) for batch in batches]
            for thread in threads:
                thread.start()
            try:
                assert enough.wait(timeout=120), f"fewer than {KILL_AFTER} resolves answered: {answers}"
                os.kill(victim, signal.SIGKILL)
                killed_at = time.monotonic()
            finally:
                for thread in threads:
                    thread.join()

        outcomes = Counter(outcome for _, outcome, _ in answers)
        before_kill = sum(when < killed_at for *_, when in answers)
        print(f"\nresolves: {outcomes}; {before_kill} answered before the kill")
        assert len(answers) == ITEMS and set(outcomes) - {200} <= {"RemoteProtocolError", "ReadError",
                                                                    "ConnectError", "WriteError"}, outcomes
        assert any(outcome == 200 and when > killed_at for _, outcome, when in answers), \
            "no resolve succeeded after the kill: the test did not resolve in the middle"
        answered = {review_id for review_id, outcome, _ in answers if outcome == 200}

        # The whole server stopped (above) and started again on the same database.
        (tmp_path / "again").mkdir()
        with running_server(tmp_path / "again", url, 1, {}, env=env) as again:
            again.keys = keys
            rows, resolves = _resolutions(url)
            assert sorted(rows) == sorted(review_ids)
            for review_id, row in rows.items():
                done = row.status == "resolved"
                # All of a resolution, or none of it: codes, who, when and its one audit event.
                assert [row.final_codes is not None, row.resolved_by is not None, row.resolved_at is not None,
                        resolves[review_id] == 1] == [done] * 4, (review_id, row, resolves[review_id])
                assert resolves[review_id] in (0, 1)
                if done:
                    assert (row.final_codes, row.resolved_by) == (final[review_id], holder[review_id])
                else:
                    assert (row.status, row.claimed_by) == ("claimed", holder[review_id]), row
            assert answered <= {r for r, row in rows.items() if row.status == "resolved"}, "a 200 was lost"

            # What the kill interrupted is not stuck: its coder still holds it, and resolves it now.
            with httpx.Client(base_url=again.base_url, timeout=30) as client:
                for review_id in sorted(r for r, row in rows.items() if row.status != "resolved"):
                    retried = client.post(f"/v1/reviews/{review_id}:resolve",
                                          json={"codes": final[review_id]},
                                          headers=again.headers(holder[review_id]))
                    assert retried.status_code == 200, retried.text
            rows, resolves = _resolutions(url)
            assert {row.status for row in rows.values()} == {"resolved"} and set(resolves.values()) == {1}
            assert all(row.final_codes == final[review_id] for review_id, row in rows.items())
    finally:
        drop()


def _resolutions(url: str) -> tuple[dict, Counter]:
    """Each review item's row, and how many `resolve` audit events each has."""
    engine = create_engine(db.normalize_url(url))
    try:
        with engine.connect() as connection:
            rows = {row.id: row for row in connection.execute(text(
                "SELECT id, status, claimed_by, final_codes, resolved_by, resolved_at FROM review_items"))}
            resolves = Counter(connection.execute(
                text("SELECT review_id FROM audit_events WHERE action = 'resolve'")).scalars())
    finally:
        engine.dispose()
    return rows, resolves


# --- 3. Corrupt, truncated and wrong-format artifacts --------------------------------------------------

@pytest.fixture(scope="module")
def broken_artifacts(
    tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    """Damaged copies of the tiny artifact, and look-alikes: name -> (folder, the file its error names)."""
    root = tmp_path_factory.mktemp("broken")

    def copy(name: str) -> Path:
        return Path(shutil.copytree(tiny_artifact, root / name))

    bad_format = copy("bad-format")
    config = json.loads((bad_format / "config.json").read_text(encoding="utf-8"))
    (bad_format / "config.json").write_text(json.dumps({**config, "format_version": 99}), encoding="utf-8")
    truncated = copy("truncated")
    weights = (truncated / "weights.safetensors").read_bytes()
    (truncated / "weights.safetensors").write_bytes(weights[: len(weights) // 2])
    garbage = copy("garbage")
    (garbage / "weights.safetensors").write_bytes(bytes((i * 131 + 7) % 256 for i in range(len(weights))))
    foreign = root / "foreign-config"  # a Hugging Face model folder, say: a config.json of another kind
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    not_artifact = root / "not-an-artifact"
    not_artifact.mkdir()
    (not_artifact / "notes.json").write_text(json.dumps({"notes": []}))
    return {
        "bad-format": (bad_format, bad_format / "config.json"),
        "truncated": (truncated, truncated / "weights.safetensors"),
        "garbage": (garbage, garbage / "weights.safetensors"),
        "foreign-config": (foreign, foreign / "config.json"),
        "not-an-artifact": (not_artifact, not_artifact / "config.json"),
    }


def test_a_corrupt_artifact_stops_the_service_at_start_up(
    tmp_path: Path, tiny_artifact: Path, broken_artifacts: dict[str, tuple[Path, Path]]
) -> None:
    cases: dict[str, tuple[dict[str, str], Path]] = {
        name: ({"CODER_ARTIFACT": str(folder)}, named) for name, (folder, named) in broken_artifacts.items()}
    # The database's deployment wins over CODER_ARTIFACT, as in ModelRegistry.start: a good start-up
    # artifact does not hide a deployed model that no longer loads.
    deployed = tmp_path / "deployed"
    deployed.mkdir()
    shutil.copytree(broken_artifacts["truncated"][0], deployed / "models" / "tiny-bad")
    engine = db.make_engine(f"sqlite:///{deployed / 'coder.db'}")
    db.upgrade(engine)
    with db.make_sessionmaker(engine).begin() as session:
        session.add(db.ModelDeployment(artifact="tiny-bad", model_version="tiny-bad", activated_by="admin-1",
                                       activated_at=db.utcnow()))
    engine.dispose()
    cases["deployed"] = ({"CODER_ARTIFACT": str(tiny_artifact), "CODER_MODELS_DIR": str(deployed / "models")},
                         deployed / "models" / "tiny-bad" / "weights.safetensors")

    def start(name: str) -> subprocess.CompletedProcess:
        where = tmp_path / name
        where.mkdir(exist_ok=True)
        return run_to_exit(where, f"sqlite:///{where / 'coder.db'}", cases[name][0], timeout=90)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(cases, pool.map(start, cases)))
    for name, result in results.items():
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        assert result.returncode == 2, (name, result.returncode, result.stderr[-3000:])
        assert last.startswith("error: cannot load the model: "), (name, result.stderr[-3000:])
        assert str(cases[name][1]) in last, (name, last)
        assert "Traceback" not in result.stderr, (name, result.stderr[-3000:])


def test_activating_a_corrupt_artifact_is_refused_and_the_old_model_keeps_serving(
    tmp_path: Path, tiny_artifact: Path, broken_artifacts: dict[str, tuple[Path, Path]]
) -> None:
    url = f"sqlite:///{tmp_path / 'coder.db'}"
    _migrate(url)
    models = next(iter(broken_artifacts.values()))[0].parent
    env = {"CODER_ARTIFACT": str(tiny_artifact), "CODER_MODELS_DIR": str(models)}
    with running_server(tmp_path, url, 1, {"admin-1": "admin", "ehr-1": "ehr"}, env=env) as server, \
            httpx.Client(base_url=server.base_url, timeout=60) as client:
        admin = server.headers("admin-1")
        for name, (_, named) in broken_artifacts.items():
            refused = client.post(f"/v1/models/{name}:activate", headers=admin)
            if name == "not-an-artifact":  # no config.json: not in the model folder's list at all
                assert refused.status_code == 404, refused.text
                continue
            assert refused.status_code == 409, (name, refused.text)
            assert refused.json()["error"]["code"] == "artifact_error"
            assert str(named) in refused.json()["error"]["message"], (name, refused.text)
            assert client.get("/v1/model", headers=admin).json()["name"] == "tiny-a"
            served = client.post("/v1/codes:suggest", json=_note(f"after-{name}", 0),
                                 headers=server.headers("ehr-1"))
            assert served.status_code == 200 and served.json()["model_version"] == "tiny-a", served.text
        assert client.get("/v1/models", headers=admin).json()["history"] == []


def _migrate(url: str) -> None:
    """Migrate a SQLite database before the server starts: its start-up and the key CLI would race to."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()


# --- 4. A full or read-only disk under SQLite ----------------------------------------------------------

@contextmanager
def small_filesystem(where: Path, megabytes: int = 32) -> Iterator[Path]:
    """A file system of its own, loop-mounted: one a test can fill, and whose files `chattr +i` makes
    unwritable even to root and even through descriptors already open. (Root ignores chmod, a tmpfs ignores
    +i for open files, and an open file system cannot be remounted read-only: it is busy.)"""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4") or not shutil.which("chattr"):
        pytest.skip("a loop-mounted file system needs root, mkfs.ext4 and chattr")
    image, mount = where / "disk.img", where / "data"
    mount.mkdir()
    with image.open("wb") as disk:
        disk.truncate(megabytes << 20)
    # -m 0: no blocks held back for root, who we are, so the disk is full for us too.
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True,
                   timeout=60)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=False,
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount a file system here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["chattr", "-R", "-i", str(mount)], check=False, capture_output=True)
        if subprocess.run(["umount", str(mount)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full, to the last byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, bytes(size))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


def test_sqlite_on_a_full_or_read_only_disk_refuses_writes_and_loses_nothing(
    tmp_path: Path, tiny_artifact: Path
) -> None:
    with small_filesystem(tmp_path) as data:
        url = f"sqlite:///{data / 'coder.db'}"
        _migrate(url)
        answered: dict[str, str] = {}  # note_id -> review id, for every suggestion answered 200

        with running_server(tmp_path, url, 1, {"ehr-1": "ehr", "coder-1": "coder"},
                            env={"CODER_ARTIFACT": str(tiny_artifact)}) as server, \
                httpx.Client(base_url=server.base_url, timeout=60) as client:
            coder = server.headers("coder-1")

            def suggest(note_id: str, n: int) -> httpx.Response:
                response = client.post("/v1/codes:suggest", json=_note(note_id, n),
                                       headers=server.headers("ehr-1"))
                if response.status_code == 200:
                    answered[note_id] = response.json()["review_id"]
                return response

            for n in range(4):
                assert suggest(f"disk-{n}", n).status_code == 200
            claimed = client.post("/v1/reviews:claimNext", headers=coder)
            assert claimed.status_code == 200, claimed.text
            claimed_id = claimed.json()["id"]
            # Not coder.db-shm: SQLite maps it into memory, and a write to an immutable mapped file is a
            # SIGBUS that kills the worker; a read-only remount cannot happen under open files, so no real
            # fault makes it read-only while the database is open.
            unwritable = [data, data / "coder.db", data / "coder.db-wal"]

            for fault in ("full", "read-only"):
                filler = None
                if fault == "full":
                    filler = _fill(data)
                else:
                    subprocess.run(["chattr", "+i", *map(str, unwritable)], check=True, capture_output=True)
                try:
                    for n in range(3):
                        _assert_unavailable(suggest(f"{fault}-{n}", n), "storage_unavailable")
                    claim = client.post("/v1/reviews:claimNext", headers=coder)
                    _assert_unavailable(claim, "storage_unavailable")
                    # Reads need no space: the API key check, the queue and an item still answer.
                    listed = client.get("/v1/reviews", params={"limit": 100}, headers=coder)
                    assert listed.status_code == 200 and listed.json()["total"] == len(answered), listed.text
                    item = client.get(f"/v1/reviews/{claimed_id}", headers=coder)
                    assert item.status_code == 200 and item.json()["status"] == "claimed", item.text
                    assert client.get("/healthz").status_code == 200
                finally:
                    if filler is not None:
                        filler.unlink()
                    else:
                        subprocess.run(["chattr", "-i", *map(str, unwritable)], check=True,
                                       capture_output=True)
                # Space and writability are back: the refused notes go through, without a restart.
                for n in range(3):
                    retried = suggest(f"{fault}-{n}", n)
                    assert retried.status_code == 200, retried.text
            resolved = client.post(f"/v1/reviews/{claimed_id}:resolve", headers=coder,
                                   json={"codes": _final_codes(0)})
            assert resolved.status_code == 200, resolved.text

        # The server is stopped: the database file, on its own, is intact and holds every answered write.
        connection = sqlite3.connect(data / "coder.db")
        try:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert dict(connection.execute("SELECT note_id, id FROM review_items")) == answered
            actions = Counter(connection.execute("SELECT action FROM audit_events").fetchall())
            status = connection.execute("SELECT status FROM review_items WHERE id = ?",
                                        (claimed_id,)).fetchone()
        finally:
            connection.close()
        # A refused write left nothing behind: one suggest and one enqueue event per answered note.
        assert (actions[("suggest",)], actions[("enqueue",)]) == (len(answered), len(answered)), actions
        assert (actions[("claim",)], actions[("resolve",)], status) == (1, 1, ("resolved",))

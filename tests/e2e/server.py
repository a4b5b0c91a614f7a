"""A real `python -m service` process group for end-to-end tests: start, wait until ready, stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from eval.load import complete_lines, free_port, json_or_none, stop_process_group
from tests.phi_scan import register_log_file

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 180.0


@dataclass
class Server:
    """A `python -m service` process group and what the test needs to talk to it."""

    process: subprocess.Popen
    base_url: str
    keys: dict[str, str]
    stdout: Path
    stderr: Path
    tmp: Path

    def headers(self, key_name: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[key_name]}

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        return stop_process_group(self.process)


def _environment(tmp: Path, database_url: str, port: int, workers: int,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    # The caller's CODER_* settings must not leak in (a CODER_ARTIFACT would change the model served).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CODER_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        PYTHONUNBUFFERED="1",
        TMPDIR=str(tmp),  # the server makes its Prometheus multiprocess folder here, where the test finds it
        CODER_DATABASE_URL=database_url, CODER_WORKERS=str(workers), CODER_HOST="127.0.0.1",
        CODER_PORT=str(port), CODER_MODELS_DIR=str(tmp / "models"), CODER_LOG_LEVEL="INFO",
    )
    env.update(extra or {})
    return env


def _create_keys(tmp: Path, env: dict[str, str], keys: dict[str, str]) -> dict[str, str]:
    """One key per (name, role) of `keys`, each from its own `python -m service keys create`, all at once."""
    commands = {
        name: subprocess.Popen(
            [sys.executable, "-m", "service", "keys", "create", "--name", name, "--role", role],
            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, role in keys.items()
    }
    created = {}
    for name, command in commands.items():
        out, err = command.communicate(timeout=120)
        assert command.returncode == 0, f"keys create --name {name}: {err}"
        created[name] = out.strip()
    return created


def _wait_ready(server: Server, workers: int) -> None:
    """/readyz answers 200 and every worker has logged its model as loaded (/readyz speaks for one worker)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            code = server.process.returncode
            pytest.fail(f"the server exited ({code}) while starting:\n{server.log_tail()}")
        loaded = sum((json_or_none(line) or {}).get("message") == "model loaded"
                     for line in complete_lines(server.stderr))
        try:
            ready = httpx.get(f"{server.base_url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            ready = False
        if ready and loaded >= workers:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not ready after {READY_TIMEOUT_S} s ({loaded} models loaded):\n{server.log_tail()}")
        time.sleep(0.5)


def run_to_exit(tmp_path: Path, database_url: str, env: dict[str, str], timeout: float = READY_TIMEOUT_S,
                ) -> subprocess.CompletedProcess:
    """Run `python -m service` (settings of `env` over the defaults) when it should exit by itself; fails
    the test, after stopping it, when it is still running after `timeout` seconds."""
    tmp = tmp_path / "server"
    tmp.mkdir()
    environment = _environment(tmp, database_url, free_port(), 1, env)
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=tmp, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(process)
        out, err = process.communicate()
        pytest.fail(f"`python -m service` still ran after {timeout} s:\n{err[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@contextmanager
def running_server(tmp_path: Path, database_url: str, workers: int, keys: dict[str, str],
                   env: dict[str, str] | None = None) -> Iterator[Server]:
    """The service with `workers` workers on `database_url`, ready, with a key per (name, role) of `keys`;
    `env` sets more CODER_* settings (CODER_ARTIFACT, say)."""
    process = None
    try:
        tmp = tmp_path / "server"
        tmp.mkdir()
        port = free_port()
        env = _environment(tmp, database_url, port, workers, env)
        stdout, stderr = tmp_path / "server.out", tmp_path / "server.err"
        register_log_file(stdout)
        register_log_file(stderr)
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen([sys.executable, "-m", "service"], cwd=tmp, env=env, stdout=out,
                                       stderr=err, start_new_session=True)
        # While the workers load; the CLI migrates too, racing the server's migration.
        created = _create_keys(tmp, env, keys)
        running = Server(process, f"http://127.0.0.1:{port}", created, stdout, stderr, tmp)
        _wait_ready(running, workers)
        yield running
    finally:
        if process is not None:
            stop_process_group(process)

"""`python -m eval.serve_bench`: the real server over HTTP, fast path and reference path side by side.

For each runtime (by default `onnx`, the fast path, then `torch`, the PyTorch reference) it starts
`python -m service` on the artifact and measures its start-up time (process start to ready: model loaded
and warmed up) and memory. With all the servers up, it then runs rounds (3 by default): in each, every
runtime in turn is driven with 1, 8 and 32 concurrent clients posting real notes (CodiEsp dev English),
so a drift of the machine's speed touches both runtimes alike. It prints, per runtime and concurrency:
p50/p95/p99 latency, notes per second (the median of the rounds, and each round's), the CPU the server
used (cores), the CPU of this load generator (it shares the machine) and the server's peak memory; the
fast path's throughput over the reference's; and the CodiEsp MAP of both on the same notes (from the
first single-client pass), so the cost of the fast path in quality is in the same table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx
from tqdm.auto import tqdm

from eval.load import StartError, percentile, running_server
from eval.metrics import codiesp_map
from models.fast_encoder import HEAD_PRECISIONS

DEFAULT_NOTES = "../shared/datasets/codiesp/dev/text_files_en"
TOP_K = 15


def _tree(pid: int) -> list[int]:
    """The process and all its descendants (uvicorn's workers, the multiprocessing helpers)."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                pids.append(child)
                frontier.append(child)
    return pids


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def _rss_mb(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class _PeakMemory:
    """Samples the server's resident memory every 100 ms while a load level runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            self._stop.wait(0.1)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Level:
    runtime: str
    clients: int
    latencies_ms: list[float]
    seconds: float
    cpu_cores: float
    peak_rss_mb: float
    errors: int
    client_cores: float = 0.0  # the load generator's own CPU: it runs on the same machine
    idle_cores: float = 0.0  # the CPU of the other runtimes' servers meanwhile (idle, but on the machine)

    @property
    def notes_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


@dataclass
class RuntimeResult:
    runtime: str
    startup_s: float
    rss_after_start_mb: float
    levels: list[Level] = field(default_factory=list)
    map_d: float = 0.0
    map_p: float = 0.0


async def _drive(base_url: str, key: str, notes: list[tuple[str, str]], clients: int, progress: bool,
                 label: str) -> tuple[list[float], float, int, dict[str, list[dict]]]:
    """Post every note once, `clients` at a time; (latencies, wall seconds, errors, codes by note id)."""
    queue: asyncio.Queue = asyncio.Queue()
    for note in notes:
        queue.put_nowait(note)
    latencies: list[float] = []
    codes: dict[str, list[dict]] = {}
    errors = 0
    bar = tqdm(total=len(notes), desc=label, unit="note", disable=not progress, leave=False)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": key}, timeout=120, limits=limits) as http:

        async def client() -> None:
            nonlocal errors
            while not queue.empty():
                doc_id, text = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await http.post("/v1/codes:suggest", json={"text": text, "top_k": TOP_K})
                except httpx.HTTPError:
                    errors += 1
                    continue
                finally:
                    bar.update(1)
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                codes[doc_id] = response.json()["codes"]

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    bar.close()
    return latencies, wall, errors, codes


def _gold(notes_dir: Path) -> dict[str, dict[str, list[str]]]:
    """CodiEsp gold codes per system from the split folder's <split>D.tsv and <split>P.tsv."""
    split = notes_dir.parent
    gold: dict[str, dict[str, list[str]]] = {"ICD-10-CM": {}, "ICD-10-PCS": {}}
    for system, suffix in (("ICD-10-CM", "D"), ("ICD-10-PCS", "P")):
        path = split / f"{split.name}{suffix}.tsv"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                gold[system].setdefault(parts[0], []).append(parts[1])
    return gold


def _map(gold: dict[str, dict[str, list[str]]], codes: dict[str, list[dict]], system: str) -> float:
    ranked = {doc: [c["code"] for c in found if c["system"] == system] for doc, found in codes.items()}
    return codiesp_map(gold[system], {doc: r for doc, r in ranked.items() if r})


def bench_runtimes(artifact: str, runtimes: list[str], notes: list[tuple[str, str]], levels: list[int],
                   gold: dict, workers: int, progress: bool, head_precision: str = "auto",
                   passes: dict[str, str] | None = None, rounds: int = 1) -> list[RuntimeResult]:
    """One server per runtime, started one after the other (start-up time and memory of each alone), then
    all running side by side while `rounds` rounds drive them in turn: in each round, every runtime takes
    every concurrency level. Alternating keeps a drift of the machine's speed from favouring one runtime.
    MAP comes from each runtime's first single-client pass.

    `passes` are more CODER_* settings of the servers (`batch_max_notes`, `batch_wait_ms`); the rest keep
    their defaults.
    """
    results: list[RuntimeResult] = []
    with contextlib.ExitStack() as stack:
        servers, keys = [], []
        for runtime in runtimes:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="coder-bench-"))
            started = time.perf_counter()
            server = stack.enter_context(running_server(
                f"sqlite:///{tmp}/bench.db", workers, "bench-admin", ready_timeout=900, artifact=artifact,
                runtime=runtime, valid_codes_only="false", head_precision=head_precision, **(passes or {})))
            results.append(RuntimeResult(runtime, time.perf_counter() - started, _rss_mb(server.process.pid)))
            keys.append(httpx.post(f"{server.base_url}/v1/keys", headers={"X-API-Key": server.admin_key},
                                   json={"name": "bench-ehr", "role": "ehr"}, timeout=30).json()["key"])
            # Warm the HTTP path and the allocator; these notes are not timed.
            asyncio.run(_drive(server.base_url, keys[-1], notes[:4], 1, False, "warm-up"))
            servers.append(server)
        for round_no in range(rounds):
            for result, server, key in zip(results, servers, keys):
                for clients in levels:
                    label = f"{result.runtime} x{clients}" + (f" round {round_no + 1}/{rounds}" if rounds > 1 else "")
                    others = [s.process.pid for s in servers if s is not server]
                    cpu_before, client_before = _cpu_seconds(server.process.pid), time.process_time()
                    idle_before = sum(_cpu_seconds(pid) for pid in others)
                    with _PeakMemory(server.process.pid) as memory:
                        latencies, wall, errors, codes = asyncio.run(
                            _drive(server.base_url, key, notes, clients, progress, label))
                    cpu = (_cpu_seconds(server.process.pid) - cpu_before) / wall
                    client = (time.process_time() - client_before) / wall
                    idle = (sum(_cpu_seconds(pid) for pid in others) - idle_before) / wall
                    result.levels.append(Level(result.runtime, clients, latencies, wall, cpu, memory.peak, errors,
                                               client, idle))
                    if clients == 1 and round_no == 0:
                        result.map_d, result.map_p = _map(gold, codes, "ICD-10-CM"), _map(gold, codes, "ICD-10-PCS")
    return results


def cpu_model() -> str:
    """This machine's CPU, as /proc/cpuinfo names it (benchmark figures depend on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _by_clients(result: RuntimeResult) -> dict[int, list[Level]]:
    """A runtime's levels grouped by concurrency (one Level per round), in the order they were driven."""
    grouped: dict[int, list[Level]] = {}
    for level in result.levels:
        grouped.setdefault(level.clients, []).append(level)
    return grouped


def summary(levels: list[Level]) -> dict[str, float]:
    """One concurrency level over its rounds: latency percentiles of all their requests, and the medians
    of the rounds' throughput and CPU; the highest peak memory."""
    latencies = [ms for level in levels for ms in level.latencies_ms]
    return {"p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99),
            "notes_per_s": statistics.median(level.notes_per_s for level in levels),
            "cpu_cores": statistics.median(level.cpu_cores for level in levels),
            "client_cpu_cores": statistics.median(level.client_cores for level in levels),
            "idle_server_cpu_cores": max(level.idle_cores for level in levels),
            "peak_rss_mb": max(level.peak_rss_mb for level in levels),
            "errors": sum(level.errors for level in levels)}


def format_results(results: list[RuntimeResult], artifact: str, n_notes: int,
                   settings: dict[str, str] | None = None) -> str:
    """The report; `settings` are the CODER_* settings the servers were given beyond their defaults."""
    given = ", ".join(f"CODER_{name.upper()}={value}" for name, value in (settings or {}).items())
    rounds = max((len(group) for r in results for group in _by_clients(r).values()), default=1)
    lines = [(f"\nartifact {artifact}; {cpu_model()}; {n_notes} CodiEsp dev notes per level, top_k {TOP_K}; "
              f"{rounds} round(s), the runtimes taking turns; latency percentiles of all the level's requests, "
              "notes/s and CPU the medians of its rounds; CPU in cores used by the server, and by this load "
              f"generator, which runs on the same machine (it has {os.cpu_count()}); server settings: "
              f"{given or 'defaults'}\n"),
             ("| runtime | clients | p50 ms | p95 ms | p99 ms | notes/s | CPU cores | client CPU cores | peak RSS MB "
              "| errors |" + (" notes/s by round |" if rounds > 1 else "")),
             "| --- " * (10 + (rounds > 1)) + "|"]
    for result in results:
        for clients, levels in _by_clients(result).items():
            row = summary(levels)
            lines.append(f"| {result.runtime} | {clients} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} | {row['notes_per_s']:.1f} | {row['cpu_cores']:.2f} | "
                         f"{row['client_cpu_cores']:.2f} | {row['peak_rss_mb']:.0f} | {row['errors']} |"
                         + (f" {', '.join(f'{lv.notes_per_s:.1f}' for lv in levels)} |" if rounds > 1 else ""))
    if len(results) == 2:
        fast, ref = (_by_clients(r) for r in results)
        lines += ["", f"| clients | {results[0].runtime} / {results[1].runtime} throughput |"
                  + (" by round |" if rounds > 1 else ""), "| --- | --- |" + (" --- |" if rounds > 1 else "")]
        for clients in [c for c in fast if c in ref]:
            ratio = summary(fast[clients])["notes_per_s"] / summary(ref[clients])["notes_per_s"]
            by_round = ", ".join(f"{a.notes_per_s / b.notes_per_s:.2f}x" for a, b in zip(fast[clients], ref[clients]))
            lines.append(f"| {clients} | {ratio:.2f}x |" + (f" {by_round} |" if rounds > 1 else ""))
    lines += ["", "| runtime | start-up to ready (s) | RSS after start (MB) | MAP D | MAP P |",
              "| --- | --- | --- | --- | --- |"]
    for result in results:
        lines.append(f"| {result.runtime} | {result.startup_s:.1f} | {result.rss_after_start_mb:.0f} | "
                     f"{result.map_d:.4f} | {result.map_p:.4f} |")
    if len(results) == 2:
        lines.append(f"\nMAP change of {results[0].runtime} against {results[1].runtime}: "
                     f"D {results[0].map_d - results[1].map_d:+.4f}, P {results[0].map_p - results[1].map_p:+.4f}")
    if len(results) > 1:
        idle = max(lv.idle_cores for r in results for lv in r.levels)
        lines.append(f"The servers not being driven used at most {idle:.2f} cores meanwhile.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.serve_bench", description=__doc__)
    parser.add_argument("--artifact", required=True, help="artifact directory to serve")
    parser.add_argument("--notes", default=DEFAULT_NOTES, help="folder of .txt notes (CodiEsp dev English)")
    parser.add_argument("--limit", type=int, default=200, help="notes per level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--runtimes", nargs="+", default=["onnx", "torch"], choices=["onnx", "torch"])
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the server")
    parser.add_argument("--head-precision", default="auto", choices=HEAD_PRECISIONS,
                        help="the onnx runtime's head (CODER_HEAD_PRECISION of the server)")
    parser.add_argument("--batch-max-notes", type=int,
                        help="most notes sharing one encoder pass (CODER_BATCH_MAX_NOTES; default: the server's)")
    parser.add_argument("--batch-wait-ms", type=float,
                        help="how long a note waits for others (CODER_BATCH_WAIT_MS; default: the server's)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over the levels, the runtimes taking turns; the report gives their medians")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.batch_max_notes is not None and args.batch_max_notes < 1:
        parser.error(f"--batch-max-notes must be at least 1, got {args.batch_max_notes}")
    if args.batch_wait_ms is not None and args.batch_wait_ms < 0:
        parser.error(f"--batch-wait-ms must be 0 or more, got {args.batch_wait_ms}")
    passes = {name: str(value) for name, value in (("batch_max_notes", args.batch_max_notes),
                                                   ("batch_wait_ms", args.batch_wait_ms)) if value is not None}
    notes_dir = Path(args.notes)
    paths = sorted(notes_dir.glob("*.txt"))[: args.limit]
    if not paths:
        print(f"error: no .txt notes in {notes_dir}", file=sys.stderr)
        return 2
    notes = [(p.stem, p.read_text(encoding="utf-8")) for p in paths]
    gold = _gold(notes_dir)
    try:
        results = bench_runtimes(str(Path(args.artifact).resolve()), args.runtimes, notes, args.clients, gold,
                                 args.workers, not args.quiet, args.head_precision, passes, args.rounds)
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    given = {"head_precision": args.head_precision} if args.head_precision != "auto" else {}
    print(format_results(results, args.artifact, len(notes), {**given, **passes}))
    if args.json:
        args.json.write_text(json.dumps([{
            "runtime": r.runtime, "startup_s": r.startup_s, "rss_after_start_mb": r.rss_after_start_mb,
            "map_d": r.map_d, "map_p": r.map_p,
            "levels": [{"clients": clients, **summary(levels),
                        "rounds": [{"notes_per_s": lv.notes_per_s, "cpu_cores": lv.cpu_cores,
                                    "p50_ms": percentile(lv.latencies_ms, 50), "errors": lv.errors}
                                   for lv in levels]}
                       for clients, levels in _by_clients(r).items()],
        } for r in results], indent=2), encoding="utf-8")
    return 0 if all(lv.errors == 0 for r in results for lv in r.levels) else 1


if __name__ == "__main__":
    sys.exit(main())

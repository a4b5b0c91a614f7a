"""`python -m eval.serve_bench`: the real server over HTTP, fast path and reference path side by side.

For each runtime (by default `onnx`, the fast path, then `torch`, the PyTorch reference) it starts
`python -m service` on the artifact, measures its start-up time (process start to ready: model loaded and
warmed up) and memory, then drives it with 1, 8 and 32 concurrent clients posting real notes (CodiEsp
dev English) and prints, per runtime and concurrency: p50/p95/p99 latency, notes per second, the CPU the
server used (cores), the CPU of this load generator (it shares the machine) and the server's peak memory;
the fast path's throughput over the reference's; and the CodiEsp MAP of both on the same notes (from the
single-client pass), so the cost of the fast path in quality is in the same table.
"""

from __future__ import annotations

import argparse
import asyncio
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


def bench_runtime(artifact: str, runtime: str, notes: list[tuple[str, str]], levels: list[int],
                  gold: dict, workers: int, progress: bool, head_precision: str = "auto",
                  passes: dict[str, str] | None = None) -> RuntimeResult:
    """One server on `runtime`: start-up, every concurrency level, and MAP from the single-client pass.

    `passes` are more CODER_* settings of the server (`batch_max_notes`, `batch_wait_ms`); the rest keep its
    defaults.
    """
    with tempfile.TemporaryDirectory(prefix="coder-bench-") as tmp:
        started = time.perf_counter()
        with running_server(f"sqlite:///{tmp}/bench.db", workers, "bench-admin", ready_timeout=900,
                            artifact=artifact, runtime=runtime, valid_codes_only="false",
                            head_precision=head_precision, **(passes or {})) as server:
            result = RuntimeResult(runtime, time.perf_counter() - started, _rss_mb(server.process.pid))
            key = httpx.post(f"{server.base_url}/v1/keys", headers={"X-API-Key": server.admin_key},
                             json={"name": "bench-ehr", "role": "ehr"}, timeout=30).json()["key"]
            # Warm the HTTP path and the allocator; these notes are not timed.
            asyncio.run(_drive(server.base_url, key, notes[:4], 1, False, "warm-up"))
            for clients in levels:
                cpu_before, client_before = _cpu_seconds(server.process.pid), time.process_time()
                with _PeakMemory(server.process.pid) as memory:
                    latencies, wall, errors, codes = asyncio.run(
                        _drive(server.base_url, key, notes, clients, progress, f"{runtime} x{clients}"))
                cpu = (_cpu_seconds(server.process.pid) - cpu_before) / wall
                client = (time.process_time() - client_before) / wall
                result.levels.append(Level(runtime, clients, latencies, wall, cpu, memory.peak, errors, client))
                if clients == 1:
                    result.map_d, result.map_p = _map(gold, codes, "ICD-10-CM"), _map(gold, codes, "ICD-10-PCS")
    return result


def cpu_model() -> str:
    """This machine's CPU, as /proc/cpuinfo names it (benchmark figures depend on it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def format_results(results: list[RuntimeResult], artifact: str, n_notes: int,
                   settings: dict[str, str] | None = None) -> str:
    """The report; `settings` are the CODER_* settings the servers were given beyond their defaults."""
    given = ", ".join(f"CODER_{name.upper()}={value}" for name, value in (settings or {}).items())
    lines = [(f"\nartifact {artifact}; {cpu_model()}; {n_notes} CodiEsp dev notes per level, top_k {TOP_K}; medians of "
             "each level's requests; CPU in cores used by the server, and by this load generator, which runs "
             f"on the same machine (it has {os.cpu_count()}); server settings: {given or 'defaults'}\n"),
             ("| runtime | clients | p50 ms | p95 ms | p99 ms | notes/s | CPU cores | client CPU cores | peak RSS MB "
              "| errors |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        for level in result.levels:
            lat = level.latencies_ms
            lines.append(f"| {result.runtime} | {level.clients} | {percentile(lat, 50):.1f} | "
                         f"{percentile(lat, 95):.1f} | {percentile(lat, 99):.1f} | {level.notes_per_s:.1f} | "
                         f"{level.cpu_cores:.2f} | {level.client_cores:.2f} | {level.peak_rss_mb:.0f} | {level.errors} |")
    if len(results) == 2:
        fast, ref = results
        lines += ["", f"| clients | {fast.runtime} / {ref.runtime} throughput |", "| --- | --- |"]
        for a, b in zip(fast.levels, ref.levels):
            lines.append(f"| {a.clients} | {a.notes_per_s / b.notes_per_s:.2f}x |")
    lines += ["", "| runtime | start-up to ready (s) | RSS after start (MB) | MAP D | MAP P |",
              "| --- | --- | --- | --- | --- |"]
    for result in results:
        lines.append(f"| {result.runtime} | {result.startup_s:.1f} | {result.rss_after_start_mb:.0f} | "
                     f"{result.map_d:.4f} | {result.map_p:.4f} |")
    if len(results) == 2:
        lines.append(f"\nMAP change of {results[0].runtime} against {results[1].runtime}: "
                     f"D {results[0].map_d - results[1].map_d:+.4f}, P {results[0].map_p - results[1].map_p:+.4f}")
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
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
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
    results = []
    try:
        for runtime in args.runtimes:
            results.append(bench_runtime(str(Path(args.artifact).resolve()), runtime, notes, args.clients, gold,
                                         args.workers, not args.quiet, args.head_precision, passes))
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    given = {"head_precision": args.head_precision} if args.head_precision != "auto" else {}
    print(format_results(results, args.artifact, len(notes), {**given, **passes}))
    if args.json:
        args.json.write_text(json.dumps([{
            "runtime": r.runtime, "startup_s": r.startup_s, "rss_after_start_mb": r.rss_after_start_mb,
            "map_d": r.map_d, "map_p": r.map_p,
            "levels": [{"clients": lv.clients, "p50_ms": percentile(lv.latencies_ms, 50),
                        "p95_ms": percentile(lv.latencies_ms, 95), "p99_ms": percentile(lv.latencies_ms, 99),
                        "notes_per_s": lv.notes_per_s, "cpu_cores": lv.cpu_cores, "client_cpu_cores": lv.client_cores,
                        "peak_rss_mb": lv.peak_rss_mb,
                        "errors": lv.errors, "median_ms": statistics.median(lv.latencies_ms)
                        if lv.latencies_ms else None} for lv in r.levels],
        } for r in results], indent=2), encoding="utf-8")
    return 0 if all(lv.errors == 0 for r in results for lv in r.levels) else 1


if __name__ == "__main__":
    sys.exit(main())

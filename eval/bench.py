"""`python -m eval.bench`: start-up and per-note latency figures on this machine (medians over runs).

Prints the cold load time of the catalogue (fresh processes), the build time of the catalogue matcher,
and the scoring latency per note of the matcher and of any artifacts named with --artifact, on real
notes (CodiEsp dev English by default).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from models.artifact import default_predictor, load_artifact
from models.catalog import Catalog
from models.code_search import CodeSearch
from models.predictor import Predictor
from models.scorer import CompositeScorer

_COLD_LOAD = (
    "import time; t = time.perf_counter(); from models.catalog import Catalog; Catalog(); "
    "print(time.perf_counter() - t)"
)


def cold_catalog_load(runs: int) -> list[float]:
    """Seconds to import and load both catalogues in a fresh interpreter, once per run."""
    root = str(Path(__file__).resolve().parents[1])
    out = []
    for _ in tqdm(range(runs), desc="catalogue cold loads", unit="run"):
        result = subprocess.run([sys.executable, "-c", _COLD_LOAD], capture_output=True, text=True, cwd=root,
                                check=True)
        out.append(float(result.stdout.strip().splitlines()[-1]))
    return out


def per_note_ms(predictor, texts: list[str], runs: int) -> list[float]:
    """Median-able per-note latency of `predict()` (decide and evidence included), one note at a time."""
    medians = []
    for _ in range(runs):
        times = []
        for text in texts:
            started = time.perf_counter()
            predictor.predict(text, top_k=10)
            times.append(1000 * (time.perf_counter() - started))
        medians.append(statistics.median(times))
    return medians


# What coders type into the workbench's search box: code prefixes, words, PCS index terms, one letter.
SEARCH_QUERIES = ["E11", "e11.9", "K35.8", "0DTJ", "S72.0", "hypertension", "diab mell type 2",
                  "fract femur", "appendectomy", "resection appendix", "chronic kidney disease stage 3", "a"]


def code_search_ms(catalog: Catalog, runs: int) -> tuple[float, list[float], float]:
    """(index build seconds, per-query milliseconds (median over runs), worst query's median)."""
    started = time.perf_counter()
    search = CodeSearch(catalog)
    build = time.perf_counter() - started
    per_query = []
    for query in SEARCH_QUERIES:
        times = []
        for _ in range(max(runs, 5)):
            started = time.perf_counter()
            search.search(query, limit=15)
            times.append((time.perf_counter() - started) * 1000)
        per_query.append(statistics.median(times))
    return build, per_query, max(per_query)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__)
    parser.add_argument("--notes", default="../shared/datasets/codiesp/dev/text_files_en", help="folder of .txt")
    parser.add_argument("--limit", type=int, default=100, help="notes to time")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--artifact", action="append", default=[], help="artifact directory (repeatable)")
    args = parser.parse_args(argv)
    texts = [p.read_text(encoding="utf-8") for p in sorted(Path(args.notes).glob("*.txt"))[: args.limit]]
    if not texts:
        print(f"error: no .txt notes in {args.notes}", file=sys.stderr)
        return 2
    rows = []
    loads = cold_catalog_load(args.runs)
    rows.append(("catalogue cold load (s)", statistics.median(loads), loads))
    catalog = Catalog()
    builds = []
    for _ in range(args.runs):
        started = time.perf_counter()
        predictor = default_predictor(catalog)
        builds.append(time.perf_counter() - started)
    rows.append(("matcher build (s)", statistics.median(builds), builds))
    rows.append(("matcher predict (ms/note)", statistics.median(per_note_ms(predictor, texts, args.runs)), None))
    search_build, per_query, worst = code_search_ms(catalog, args.runs)
    rows.append(("code search index build (s)", search_build, None))
    rows.append((f"code search, median of {len(SEARCH_QUERIES)} queries (ms/query)", statistics.median(per_query),
                 per_query))
    rows.append(("code search, slowest query (ms/query)", worst, None))
    for name in args.artifact:
        started = time.perf_counter()
        other = load_artifact(name, catalog)
        rows.append((f"{other.model_version} load (s)", time.perf_counter() - started, None))
        parts = other.scorer.proposers() if isinstance(other.scorer, CompositeScorer) else {}
        for part_name, part in parts.items():
            alone = Predictor(part, catalog, other.thresholds, model_version=part_name)
            rows.append((f"  component {part_name} predict (ms/note)",
                         statistics.median(per_note_ms(alone, texts, args.runs)), None))
        rows.append((f"{other.model_version} predict (ms/note)",
                     statistics.median(per_note_ms(other, texts, args.runs)), None))
    print(f"\n{len(texts)} notes, {args.runs} runs, medians; one note at a time, one process:\n")
    print("| measure | median | notes/s | runs |\n| --- | --- | --- | --- |")
    for name, value, samples in rows:
        shown = ", ".join(f"{s:.2f}" for s in samples) if samples else ""
        rate = f"{1000 / value:.1f}" if name.endswith("(ms/note)") and value > 0 else ""
        print(f"| {name} | {value:.2f} | {rate} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

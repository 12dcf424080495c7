"""Benchmark: near-dedup at two corpus sizes, connected components distributed on Ray Data against
scipy on the driver: wall time, peak driver memory and pairs per second.

    python bench/dedup_scale.py                          # 20,000 and 80,000 documents, 2 cores
    python bench/dedup_scale.py --small 5000 --large 20000 --json bench/out/dedup_scale.json

The corpus is generated straight into the dedup pass's input (the clean shards: id, text and the
real MinHash keys of `DedupKeys`, 5,000 documents a shard). 40 % of the documents are unrelated;
the others are planted clusters: chains (each text one word away from the previous, so that the
ends are far below the threshold and only transitivity joins them), 2 to 30 long, and stars (2 to
40 variants, two words each away from one text), and 2 % are exact copies of a planted text. Every text is 150 words drawn from this Python's
documentation vocabulary.

Each run is the whole dedup pass (`find_duplicates`: exact, LSH buckets, verification, components,
survivors, verdict files) in a fresh driver process on a fresh local Ray instance of `--cores`
CPUs, with 2 x cores shuffle partitions at both sizes; once with `driver_components_max_pairs`
above the pair count (scipy on the driver) and once with 0 (Ray Data rounds). Peak driver memory
is what the driver process allocated during the pass, after `ray.init` and a warm-up pass over
the first shard (so that Ray Data's own modules are loaded): the Python heap's peak
(tracemalloc, which also sees numpy) plus the peak of Arrow's memory pool (Arrow allocates outside
the Python heap). The peak resident set of the driver, sampled every 10 ms, is shown beside it.

Prints a table and, last, one JSON line with `driver_memory_ratio` (distributed over scipy at the
larger size; goal <= 0.25), `driver_memory_growth_ratio` (the same for the growth from the smaller
size to the larger, which leaves out the driver state both paths share) and `cost_growth` (distributed wall seconds per document, large over
small; goal <= 1.2).
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py would shadow the standard library's tokenize: run from the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

DOCS_PER_SHARD = 5000
WORDS_PER_DOC = 150
METHODS = ("scipy", "ray")


def vocabulary() -> list[str]:
    from pydoc_data.topics import topics

    return sorted({w for text in topics.values() for w in re.findall(r"[a-z]{3,12}", text.lower())})


def plant(n_docs: int, seed: int, vocab: list[str]) -> list[tuple[str, str]]:
    """(id, text) of `n_docs` documents: 40 % unrelated, the rest chains and stars of near duplicates."""
    rng = random.Random(seed)

    def text() -> list[str]:
        return [rng.choice(vocab) for _ in range(WORDS_PER_DOC)]

    def changed(words: list[str], k: int) -> list[str]:
        out = list(words)
        for _ in range(k):
            out[rng.randrange(len(out))] = rng.choice(vocab)
        return out

    docs: list[list[str]] = []
    planted = int(n_docs * 0.6)
    while len(docs) < planted:
        if rng.random() < 0.5:
            words = text()
            for _ in range(min(rng.randint(2, 30), planted - len(docs))):
                docs.append(words)
                words = changed(words, 1)
        else:
            centre = text()
            docs.append(centre)
            docs += [changed(centre, 2) for _ in range(min(rng.randint(1, 39), planted - len(docs)))]
    docs += [list(docs[rng.randrange(len(docs))]) for _ in range(n_docs // 50)]  # 2 % exact copies
    docs += [text() for _ in range(n_docs - len(docs))]
    order = list(range(n_docs))
    rng.shuffle(order)  # ids in no relation to the clusters
    return [(f"doc-{order[i]:07d}", " ".join(words)) for i, words in enumerate(docs)]


def write_shard(job: tuple[int, list[tuple[str, str]], str]) -> str:
    """One clean shard as the clean pass writes it (the columns the dedup pass reads)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.config.curate import FuzzyDedupConfig
    from pipeline.curate.minhash import DedupKeys
    from pipeline.curate.shards import UID

    index, docs, path = job
    n = len(docs)
    batch = pa.table({"id": [d[0] for d in docs], "text": pa.array([d[1] for d in docs], pa.large_string()),
                      "source": ["web"] * n, "reason": [""] * n, "_loc": [f"web.jsonl:{index}:{i}" for i in range(n)],
                      UID: pa.array((index << 32) + np.arange(n), pa.int64())})
    pq.write_table(DedupKeys(True, FuzzyDedupConfig())(batch), path)
    return path


def build_corpus(folder: Path, n_docs: int, cores: int) -> dict[int, str]:
    docs = plant(n_docs, seed=n_docs, vocab=vocabulary())
    jobs = [(i, docs[start: start + DOCS_PER_SHARD], str(folder / f"shard-{i:05d}.parquet"))
            for i, start in enumerate(range(0, n_docs, DOCS_PER_SHARD))]
    with ProcessPoolExecutor(cores) as pool:
        paths = list(pool.map(write_shard, jobs))
    return dict(enumerate(paths))


def run_one(files: dict[int, str], method: str, cores: int, work: Path) -> dict:
    """One dedup pass in a fresh driver process; returns its measurements."""
    job = {"files": files, "method": method, "cores": cores, "work": str(work)}
    proc = subprocess.run([sys.executable, __file__, "--driver", json.dumps(job)], capture_output=True, text=True,
                          check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"driver failed ({proc.returncode}):\n{proc.stderr[-8000:]}")
    return json.loads(lines[-1])


def driver(job: dict) -> None:
    """The measured process: Ray up first, then the dedup pass under tracemalloc and an RSS sampler."""
    import threading
    import tracemalloc

    import psutil
    import pyarrow as pa
    import ray

    from pipeline.config.curate import DedupConfig
    from pipeline.curate.dedup import find_duplicates
    from pipeline.raysession import tune_ray_data_for_local_files

    tune_ray_data_for_local_files()
    ray.init(num_cpus=job["cores"], log_to_driver=False, configure_logging=False, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    cfg = DedupConfig()
    cfg.fuzzy.driver_components_max_pairs = 10**12 if job["method"] == "scipy" else 0
    files = {int(k): v for k, v in job["files"].items()}
    # Warm-up on the first shard alone: Ray Data's driver-side modules and caches are loaded before
    # measuring, so the peak is what the pass allocates for its data, not import-time state.
    find_duplicates({0: files[0]}, cfg, 2 * job["cores"], Path(job["work"] + "-warmup"))
    me = psutil.Process()
    rss_start = me.memory_info().rss
    rss_peak = [rss_start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            rss_peak[0] = max(rss_peak[0], me.memory_info().rss)

    arrow_start = pa.default_memory_pool().max_memory()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    t = time.perf_counter()
    result = find_duplicates(files, cfg, 2 * job["cores"], Path(job["work"]))
    wall = time.perf_counter() - t
    _, py_peak = tracemalloc.get_traced_memory()
    done.set()
    sampler.join()
    arrow_peak = pa.default_memory_pool().max_memory() - arrow_start
    fuzzy = result.stats["fuzzy"]
    print(json.dumps({"wall_s": wall, "py_peak": py_peak, "arrow_peak": max(arrow_peak, 0),
                      "driver_peak": py_peak + max(arrow_peak, 0), "rss_peak_delta": rss_peak[0] - rss_start,
                      "candidate_pairs": fuzzy["candidate_pairs"], "verified_pairs": fuzzy["verified_pairs"],
                      "near_duplicates": fuzzy["duplicates"], "exact_duplicates": result.stats["exact"]["duplicates"],
                      "components": fuzzy["components"]}), flush=True)
    # Not tracemalloc.stop() nor ray.shutdown(): stopping the tracer while Ray's C++ threads allocate
    # crashed the process (SIGSEGV in traceback_new); the parent only needs the line above.
    os._exit(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=20_000)
    ap.add_argument("--large", type=int, default=80_000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON line to this file")
    ap.add_argument("--driver", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        driver(json.loads(args.driver))
        return
    tmp = Path(tempfile.mkdtemp(prefix="dedup-scale-"))
    results: dict[int, dict[str, dict]] = {}
    try:
        for n in (args.small, args.large):
            corpus = tmp / f"corpus-{n}"
            corpus.mkdir()
            t = time.perf_counter()
            files = build_corpus(corpus, n, args.cores)
            print(f"corpus of {n:,} documents in {len(files)} shards: {time.perf_counter() - t:.0f} s", flush=True)
            results[n] = {}
            for method in METHODS:
                results[n][method] = run_one(files, method, args.cores, tmp / f"work-{n}-{method}")
                print(f"  {method}: {json.dumps(results[n][method])}", flush=True)
            shutil.rmtree(corpus)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)


def report(results: dict[int, dict[str, dict]], args) -> None:
    mib = 1 << 20
    print(f"\n{'docs':>7} {'method':>6} {'wall s':>7} {'comp. s':>7} {'rounds':>6} {'verified':>9} {'pairs/s':>8} "
          f"{'driver MiB':>10} {'(py+arrow)':>12} {'RSS d MiB':>9} {'s/1k docs':>9}")
    for n, by_method in results.items():
        for method, r in by_method.items():
            c = r["components"]
            print(f"{n:>7,} {method:>6} {r['wall_s']:>7.1f} {c['seconds']:>7.1f} {c['rounds']:>6} "
                  f"{r['verified_pairs']:>9,} {r['verified_pairs'] / r['wall_s']:>8,.0f} "
                  f"{r['driver_peak'] / mib:>10.1f} {r['py_peak'] / mib:>5.1f}+{r['arrow_peak'] / mib:<6.1f} "
                  f"{r['rss_peak_delta'] / mib:>9.1f} {1000 * r['wall_s'] / n:>9.3f}")
    small, large = results[args.small], results[args.large]
    same = all(r["scipy"]["near_duplicates"] == r["ray"]["near_duplicates"] for r in results.values())
    line = {
        "bench": "dedup_scale", "cores": args.cores, "small_docs": args.small, "large_docs": args.large,
        "driver_memory_ratio": round(large["ray"]["driver_peak"] / large["scipy"]["driver_peak"], 3),
        # What grows with the corpus: both paths share Ray Data's fixed driver-side state.
        "driver_memory_growth_ratio": round((large["ray"]["driver_peak"] - small["ray"]["driver_peak"])
                                            / (large["scipy"]["driver_peak"] - small["scipy"]["driver_peak"]), 3),
        "cost_growth": round((large["ray"]["wall_s"] / args.large) / (small["ray"]["wall_s"] / args.small), 3),
        "cost_growth_scipy": round((large["scipy"]["wall_s"] / args.large) / (small["scipy"]["wall_s"] / args.small), 3),
        "wall_ratio_ray_over_scipy": round(large["ray"]["wall_s"] / large["scipy"]["wall_s"], 3),
        "same_near_duplicates": same,
        "runs": {str(n): r for n, r in results.items()},
    }
    print(json.dumps(line))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()

"""Benchmark: curation throughput per step at two corpus sizes, fuzzy-dedup recall/precision on planted
near duplicates of known Jaccard similarity, and throughput against DataTrove on the same corpus.

    python bench/curate.py                       # 2,000 and 10,000 documents, 2 cores
    python bench/curate.py --small 1000 --large 4000 --cores 2 --json bench/out/curate.json
    python bench/curate.py --no-datatrove        # skip the DataTrove comparison
    python bench/curate.py --no-two-node         # skip the run on the local 2-node cluster

The corpus is generated: English web-like prose (sentences drawn from the vocabulary of this
Python's own documentation, so the language detector sees English) and Python-like code,
written as JSONL shards of 500 documents. Near duplicates are planted by replacing words of an
original until the word 5-shingle Jaccard similarity (the dedup step's own shingling) falls to
a target in 0.55..0.97; the true similarity of every planted pair is recorded. Exact copies
are planted too.

Our run is the full default curation (`run_curate` with the default config) on a local Ray
instance of `--cores` CPUs. The DataTrove run is its FineWeb-style pipeline on the same files
with the steps both systems have: JSONL reading, ftfy, Gopher repetition and quality, C4
(without the terminal-punctuation rule), FineWeb quality, email/IP redaction and the four
MinHash stages with our bands x rows (LocalPipelineExecutor, `--cores` workers). For that
comparison our run switches off the steps DataTrove lacks (language id, decontamination,
long-document splitting) and keeps the ones it does more (all PII kinds, exact dedup,
candidate verification), so the ratio is conservative. Both wall times exclude starting Ray
or the process pool; a warm-up run of each pipeline goes first.

Last, the large corpus runs again on the local 2-node cluster (cluster/local.py, the same
`--cores` split between the two nodes, token auth on): two_node_ratio is one node's wall time
over two nodes'. On one machine the nodes share its cores, so this is the cost of crossing
nodes (scheduling across raylets, blocks between object stores), not added capacity.

Prints a table and, last, one JSON line.
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
import tempfile
import time
from dataclasses import dataclass, field

STOP = ("the of and to a in that is was for it with as on be at by this had not are but from or have an they which "
        "one you were all we when there can been has more if will would who so what their out no up into than "
        "then its only other new some could these two may first any after most also made over such").split()
THRESHOLD_TARGETS = (0.55, 0.65, 0.72, 0.78, 0.84, 0.9, 0.95, 0.97)
DOCS_PER_FILE = 500


@dataclass
class Corpus:
    folder: Path
    docs: int = 0
    bytes: int = 0
    pairs: list[tuple[str, str, float]] = field(default_factory=list)
    """(original id, variant id, true Jaccard similarity) of every planted near duplicate."""


def vocabulary() -> list[str]:
    """Content words of this Python's documentation (pydoc topics), most frequent first."""
    from collections import Counter

    from pydoc_data.topics import topics

    counts = Counter(w for text in topics.values() for w in re.findall(r"[a-z]{3,12}", text.lower()))
    return [w for w, _ in counts.most_common(6000) if w not in STOP]


def sentence(rng: random.Random, vocab: list[str]) -> str:
    words = []
    for i in range(rng.randint(8, 20)):
        if i % 2 and rng.random() < 0.8:
            words.append(rng.choice(STOP))
        else:  # a Zipf-like draw: frequent words often, rare ones now and then
            words.append(vocab[min(int(rng.paretovariate(0.9)) - 1, len(vocab) - 1)] if rng.random() < 0.5
                         else rng.choice(vocab))
    return " ".join(words).capitalize() + rng.choice(".....?!")


def prose(rng: random.Random, vocab: list[str]) -> str:
    return "\n\n".join(" ".join(sentence(rng, vocab) for _ in range(rng.randint(3, 6)))
                       for _ in range(rng.randint(3, 7)))


def code(rng: random.Random, vocab: list[str]) -> str:
    out = []
    for _ in range(rng.randint(3, 8)):
        name, a, b = (rng.choice(vocab) for _ in range(3))
        out.append(f"def {name}_{rng.randint(0, 999)}({a}, {b}=None):\n"
                   f"    \"\"\"Return the {rng.choice(vocab)} of {a} and {b}.\"\"\"\n"
                   f"    if {b} is None:\n        {b} = {rng.randint(1, 99)}\n"
                   f"    total = {a} * {b} + {rng.randint(0, 9)}\n"
                   f"    for item in range({b}):\n        total += item % {rng.randint(2, 7)}\n"
                   f"    return total\n")
    return "\n\n".join(out)


def near_duplicate(rng: random.Random, text: str, target: float, vocab: list[str]) -> tuple[str, float]:
    """`text` with words replaced (at random places) until its shingle Jaccard with `text` is at most
    `target`; returns the variant and its true similarity."""
    from pipeline.curate.minhash import jaccard, shingle_hashes

    words = text.split(" ")
    original = shingle_hashes(text, 5)
    similarity = 1.0
    while similarity > target:
        for _ in range(max(1, int(len(words) * (similarity - target) / 12))):
            i = rng.randrange(len(words))
            words[i] = rng.choice(vocab) + ("." if words[i].endswith(".") else "")
        variant = " ".join(words)
        similarity = jaccard(original, shingle_hashes(variant, 5))
    return variant, similarity


def generate(folder: Path, n_docs: int, seed: int, vocab: list[str]) -> Corpus:
    rng = random.Random(seed)
    corpus = Corpus(folder)
    web, code_docs = [], []
    n_code = n_docs // 5
    for i in range(n_code):
        code_docs.append({"id": f"code-{i:06d}", "text": code(rng, vocab)})
    n_web = n_docs - n_code
    n_pairs, n_exact = n_web // 20, n_web // 50
    for i in range(n_web - n_pairs - n_exact):
        web.append({"id": f"web-{i:06d}", "text": prose(rng, vocab)})
    for k in range(n_pairs):
        original = web[rng.randrange(len(web))]
        while original["id"].endswith("v") or any(p[0] == original["id"] for p in corpus.pairs):
            original = web[rng.randrange(len(web))]
        text, sim = near_duplicate(rng, original["text"], THRESHOLD_TARGETS[k % len(THRESHOLD_TARGETS)], vocab)
        variant = {"id": f"{original['id']}-near{k}", "text": text}
        web.append(variant)
        corpus.pairs.append((original["id"], variant["id"], sim))
    for k in range(n_exact):
        original = web[rng.randrange(n_web - n_pairs - n_exact)]
        web.append({"id": f"{original['id']}-copy{k}", "text": original["text"]})
    rng.shuffle(web)
    for kind, docs in (("web", web), ("code", code_docs)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for start in range(0, len(docs), DOCS_PER_FILE):
            lines = "".join(json.dumps(d) + "\n" for d in docs[start: start + DOCS_PER_FILE])
            (folder / kind / f"part-{start // DOCS_PER_FILE:04d}.jsonl").write_text(lines)
            corpus.bytes += len(lines.encode())
    corpus.docs = len(web) + len(code_docs)
    return corpus


# ---------------------------------------------------------------- the two pipelines


def our_sources(corpus: Corpus):
    from pipeline.config import SourceConfig

    return [SourceConfig(name="web", kind="web", format="jsonl", path=str(corpus.folder / "web")),
            SourceConfig(name="code", kind="code", format="jsonl", path=str(corpus.folder / "code"))]


def run_ours(corpus: Corpus, out: Path, equivalent: bool = False) -> tuple[float, dict]:
    from pipeline.config import load_config
    from pipeline.curate.run import run_curate
    from pipeline.stages import layout_for

    overrides = ["curate.language.enabled=false", "curate.decontaminate.enabled=false",
                 "curate.split.enabled=false"] if equivalent else []
    cfg = load_config(None, overrides=overrides, root=str(out.parent))
    start = time.perf_counter()
    report = run_curate(cfg, layout_for(cfg.root), out, inputs=our_sources(corpus))
    return time.perf_counter() - start, report


def run_two_nodes(corpus: Corpus, tmp: Path, warm: Corpus, cores: int, one_node_wall: float) -> dict:
    """The large corpus again on the local 2-node cluster with the same CPUs split between the
    nodes: two_node_ratio = one node's wall time / two nodes' (1.0: crossing nodes costs nothing)."""
    from bench.two_nodes import run_on_local_cluster

    job = {"corpus": str(corpus.folder), "warm": str(warm.folder), "out": str(tmp / "two-node")}
    two = json.loads(run_on_local_cluster([sys.executable, __file__, "--two-node-job", json.dumps(job)],
                                          nodes=2, cores=cores))
    return {**two, "one_node_wall_s": one_node_wall,
            "docs_per_s_per_core": round(two["docs"] / two["wall_s"] / cores, 1),
            "two_node_ratio": round(one_node_wall / two["wall_s"], 3)}


def two_node_job(job: dict) -> str:
    """The driver on the cluster (RAY_ADDRESS and the token come from the environment): a warm-up,
    then the timed run."""
    import ray

    from bench.two_nodes import nodes_that_ran_tasks

    ray.init(log_to_driver=False, configure_logging=False)
    ray_data_quiet()
    run_ours(Corpus(Path(job["warm"])), Path(job["out"]) / "warm" / "out")
    wall, report = run_ours(Corpus(Path(job["corpus"])), Path(job["out"]) / "large" / "out")
    return json.dumps({"wall_s": round(wall, 2), "docs": report["input"]["docs"],
                       "nodes_that_ran_tasks": nodes_that_ran_tasks()})


def ray_data_quiet() -> None:
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False


def run_datatrove(corpus: Corpus, work: Path, cores: int, bands: int, rows: int) -> float:
    """DataTrove's pipeline in a child process (no Ray in it); returns the wall time of its stages."""
    import subprocess

    job = {"corpus": str(corpus.folder), "work": str(work), "cores": cores, "bands": bands, "rows": rows}
    proc = subprocess.run([sys.executable, __file__, "--datatrove-job", json.dumps(job)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the DataTrove run failed:\n{proc.stderr[-3000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def datatrove_job(job: dict) -> float:
    import datatrove.utils.hashes.xxhash as dt_xxhash
    import xxhash
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, \
        MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, \
        GopherRepetitionFilter
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    # DataTrove 0.10 hands str to xxhash, which xxhash 4 refuses: encode first (as xxhash 3 did inside).
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)
    corpus, work, cores = Path(job["corpus"]), Path(job["work"]), job["cores"]
    shutil.rmtree(work, ignore_errors=True)
    files = len(list(corpus.glob("*/*.jsonl")))
    mh = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=job["bands"], hashes_per_bucket=job["rows"],
                       n_grams=5)
    common = dict(workers=cores, skip_completed=False, start_method="fork")  # fork: the workers keep the patch
    stages = [
        LocalPipelineExecutor([JsonlReader(str(corpus), glob_pattern="*/*.jsonl"), FTFYFormatter(),
                               GopherRepetitionFilter(), GopherQualityFilter(),
                               C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter(), PIIFormatter(),
                               JsonlWriter(str(work / "filtered"))],
                              tasks=files, logging_dir=str(work / "logs1"), **common),
        LocalPipelineExecutor([JsonlReader(str(work / "filtered")), MinhashDedupSignature(str(work / "sigs"), config=mh)],
                              tasks=files, logging_dir=str(work / "logs2"), **common),
        LocalPipelineExecutor([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=mh)],
                              tasks=job["bands"], logging_dir=str(work / "logs3"), **common),
        LocalPipelineExecutor([MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=mh)],
                              tasks=1, logging_dir=str(work / "logs4"), **common),
        LocalPipelineExecutor([JsonlReader(str(work / "filtered")), MinhashDedupFilter(str(work / "remove")),
                               JsonlWriter(str(work / "out"))],
                              tasks=files, logging_dir=str(work / "logs5"), **common),
    ]
    start = time.perf_counter()
    for stage in stages:
        stage.run()
    return time.perf_counter() - start


# ---------------------------------------------------------------- measures


def dedup_quality(corpus: Corpus, out: Path, threshold: float) -> dict:
    """Recall: planted pairs above the threshold, both of whose documents reached dedup, that were
    collapsed. Precision: removed near duplicates whose true similarity to their survivor is at
    least the threshold."""
    import pyarrow.parquet as pq

    from pipeline.curate.minhash import jaccard, shingle_hashes

    kept = pq.read_table(sorted(out.glob("part-*.parquet")), columns=["id", "text"]).to_pylist()
    rejects = pq.read_table(sorted((out / "rejects").glob("part-*.parquet")),
                            columns=["id", "text", "reason", "meta"]).to_pylist()
    texts = {r["id"]: r["text"] for r in kept}
    texts.update({r["id"]: r["text"] for r in rejects if r["reason"] == "near_duplicate"})
    near = {r["id"]: json.loads(r["meta"])["duplicate_of"] for r in rejects if r["reason"] == "near_duplicate"}
    reached = set(texts)
    eligible = [(a, b) for a, b, j in corpus.pairs if j >= threshold and a in reached and b in reached]
    collapsed = [(a, b) for a, b in eligible if near.get(b) == a or near.get(a) == b
                 or (b in near and near.get(a) == near[b])]
    correct = sum(jaccard(shingle_hashes(texts[d], 5), shingle_hashes(texts[s], 5)) >= threshold
                  for d, s in near.items())
    return {"planted_pairs": len(corpus.pairs), "pairs_above_threshold": len(eligible),
            "collapsed": len(collapsed), "removed": len(near),
            "dedup_recall": round(len(collapsed) / len(eligible), 4) if eligible else None,
            "dedup_precision": round(correct / len(near), 4) if near else None}


def per_step(report: dict, wall: float, cores: int) -> dict:
    """docs/s/core and MB/s/core of each step: documents and bytes that entered it over its CPU
    seconds (summed over shard tasks); the dedup pass runs as Ray shuffles, so its wall time x
    cores stands in for CPU time."""
    cpu = dict(report["timing"]["cpu_seconds"])
    dedup_cpu = report["timing"]["wall_seconds"]["dedup"] * cores
    steps = list(report["steps"])
    out = {}
    previous = {"docs": report["input"]["docs"], "bytes": report["input"]["bytes"]}
    for step in steps:
        if step == "output":
            break
        seconds = cpu.get(step)
        if step in ("exact_dedup", "fuzzy_dedup"):
            seconds = dedup_cpu / 2 + cpu.get("dedup_keys", 0) / 2  # the keys are computed for both
        if step == "mixture":
            seconds = cpu.get("finish")
        if seconds:
            out[step] = {"docs": previous["docs"], "cpu_s": round(seconds, 3),
                         "docs_per_s_per_core": round(previous["docs"] / seconds, 1),
                         "mb_per_s_per_core": round(previous["bytes"] / 1e6 / seconds, 3)}
        previous = report["steps"][step]
    out["overall"] = {"docs": report["input"]["docs"], "cpu_s": round(wall * cores, 3),
                      "docs_per_s_per_core": round(report["input"]["docs"] / wall / cores, 1),
                      "mb_per_s_per_core": round(report["input"]["bytes"] / 1e6 / wall / cores, 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-datatrove", action="store_true")
    parser.add_argument("--no-two-node", action="store_true",
                        help="skip the large size on the local 2-node cluster (two_node_ratio)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result JSON here")
    parser.add_argument("--datatrove-job", help=argparse.SUPPRESS)
    parser.add_argument("--two-node-job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.datatrove_job:
        print(datatrove_job(json.loads(args.datatrove_job)))
        return
    if args.two_node_job:
        print(two_node_job(json.loads(args.two_node_job)))
        return

    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from pipeline.raysession import tune_ray_data_for_local_files

    tune_ray_data_for_local_files()  # as `ownlm curate` does when it starts Ray
    ray.init(num_cpus=args.cores, log_to_driver=False, configure_logging=False, include_dashboard=False)
    ray_data_quiet()
    try:
        import datatrove  # noqa: F401
        have_datatrove = not args.no_datatrove
    except ImportError:
        have_datatrove = False
    vocab = vocabulary()
    tmp = Path(tempfile.mkdtemp(prefix="bench-curate-"))
    result: dict = {"cores": args.cores, "sizes": {}}
    try:
        warm = generate(tmp / "warm", 300, args.seed + 99, vocab)
        run_ours(warm, tmp / "warm-out" / "out")
        if have_datatrove:
            run_datatrove(warm, tmp / "warm-dt", args.cores, 9, 13)
        for label, n in (("small", args.small), ("large", args.large)):
            corpus = generate(tmp / label, n, args.seed, vocab)
            wall, report = run_ours(corpus, tmp / f"{label}-out" / "out")
            fuzzy = report["dedup"]["fuzzy"]
            size = {"docs": corpus.docs, "mb": round(corpus.bytes / 1e6, 2), "wall_s": round(wall, 2),
                    "steps": per_step(report, wall, args.cores),
                    **dedup_quality(corpus, tmp / f"{label}-out" / "out", fuzzy["threshold"]),
                    "bands": fuzzy["bands"], "rows": fuzzy["rows"]}
            size["docs_per_s_per_core"] = size["steps"]["overall"]["docs_per_s_per_core"]
            size["mb_per_s_per_core"] = size["steps"]["overall"]["mb_per_s_per_core"]
            if have_datatrove:
                ours_eq, _ = run_ours(corpus, tmp / f"{label}-eq" / "out", equivalent=True)
                theirs = run_datatrove(corpus, tmp / f"{label}-dt", args.cores, fuzzy["bands"], fuzzy["rows"])
                size["ours_equivalent_wall_s"] = round(ours_eq, 2)
                size["datatrove_wall_s"] = round(theirs, 2)
                size["vs_datatrove"] = round(theirs / ours_eq, 2)
            result["sizes"][label] = size
        if not args.no_two_node:
            ray.shutdown()
            result["two_node"] = run_two_nodes(corpus, tmp, warm, args.cores, result["sizes"]["large"]["wall_s"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()
    small, large = result["sizes"]["small"], result["sizes"]["large"]
    result["cost_per_doc_large_over_small"] = round(small["docs_per_s_per_core"] / large["docs_per_s_per_core"], 3)
    for key in ("docs_per_s_per_core", "mb_per_s_per_core", "dedup_recall", "dedup_precision", "vs_datatrove"):
        if key in large:
            result[key] = large[key]
    if "two_node" in result:
        result["two_node_ratio"] = result["two_node"]["two_node_ratio"]
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def print_table(result: dict) -> None:
    for label, size in result["sizes"].items():
        print(f"\n{label}: {size['docs']:,} documents, {size['mb']} MB, {result['cores']} cores, "
              f"wall {size['wall_s']} s")
        print(f"{'step':<15}{'docs in':>10}{'cpu s':>10}{'docs/s/core':>14}{'MB/s/core':>12}")
        for step, s in size["steps"].items():
            print(f"{step:<15}{s['docs']:>10,}{s['cpu_s']:>10.2f}{s['docs_per_s_per_core']:>14,.1f}"
                  f"{s['mb_per_s_per_core']:>12.3f}")
        print(f"dedup: {size['pairs_above_threshold']} planted pairs above the threshold, {size['collapsed']} "
              f"collapsed (recall {size['dedup_recall']}); {size['removed']} removed as near duplicates "
              f"(precision {size['dedup_precision']}); {size['bands']} bands x {size['rows']} rows")
        if "vs_datatrove" in size:
            print(f"equivalent steps: ours {size['ours_equivalent_wall_s']} s, DataTrove {size['datatrove_wall_s']} s "
                  f"-> vs_datatrove {size['vs_datatrove']}x")
    print(f"\ncost per document, large over small: {result['cost_per_doc_large_over_small']}")
    if "two_node" in result:
        two = result["two_node"]
        print(f"large on the local 2-node cluster ({two['nodes_that_ran_tasks']} nodes ran tasks): {two['wall_s']} s "
              f"against {two['one_node_wall_s']} s on one node -> two_node_ratio {two['two_node_ratio']}")


if __name__ == "__main__":
    main()

"""Benchmark: tokenize + pack on Ray Data against `tokenizers`' own encode_batch, and the loader's pace.

For two corpus sizes built from the bundled sample (repeated with a per-copy marker so no two
documents are equal), measures:
  - ours: `pipeline.tokenize.pack.tokenize_and_pack` (Ray Data tasks, one core and one tokenizer
    thread each, reading their Parquet rows, tokenizing, packing and writing shards, and the
    driver's footer reads, tail packing and manifest), tokens/s per core the job had
    (min(machine cores, concurrency + 1));
  - baseline: `Tokenizer.encode_batch` over the same texts in one process with one Rust thread
    (RAYON_NUM_THREADS=1), tokens/s per core;
  - vs_tokenizers_fast = ours per core / `encode_batch_fast` per core (goal >= 0.8 at the larger
    size, with cost per token flat): the call ours makes (no character offsets, which packing
    does not need), so the ratio is what Ray, the reads, packing and writing cost. The baseline
    and ours run back to back, `--repeats` times per size in alternating order, and the ratio
    is the median of those pairs. vs_tokenizers is against `encode_batch` (with offsets), once;
    baselines encode `tokenize.batch_size` (256) documents per call;
  - first_call_s: the first tokenize call of the Ray instance (Ray Data's own actors, code and
    tokenizer loaded into the workers), once per instance, on one copy of the sample (4 MB);
  - two_node_ratio: the larger size again on the local 2-node cluster (cluster/local.py, the same
    CPUs split between the nodes), one node's median seconds over two nodes'. The nodes share
    this machine's cores: it is what crossing nodes costs, not added capacity;
  - loader: batches/s of the training loader (`ShuffledBatches`) against the training steps/s of
    the `tiny` model on the same batch (loader_vs_step must stay well above 1).
Prints a table and a final JSON line; writes bench/out/tokenize.json.

    python bench/tokenize.py [--sizes-mb 32 128] [--concurrency 2] [--repeats 3] [--no-two-node]
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's `tokenize`; keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import subprocess
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import TokenizeConfig  # noqa: E402

TOKENIZE_DEFAULTS = TokenizeConfig()

BASELINE = """
import json, sys, time, pyarrow.parquet as pq
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
texts = pq.read_table(sys.argv[2], columns=["text"]).column(0).to_pylist()
encode, batch = getattr(tok, sys.argv[3]), int(sys.argv[4])
t = time.perf_counter()
n = 0
for at in range(0, len(texts), batch):  # in batches, as a user would: one call over a big corpus
    n += sum(len(e.ids) for e in encode(texts[at:at + batch], add_special_tokens=False))
print(json.dumps({"tokens": n, "seconds": time.perf_counter() - t}))
"""


def sample_texts() -> list[str]:
    from pipeline.sample.stage import build_sample

    sample = Path(tempfile.gettempdir()) / "ownlm-bench-sample"
    build_sample(sample)
    texts = []
    for path in sorted(sample.rglob("*")):
        if path.suffix in (".py", ".txt", ".html") and path.stat().st_size < 200_000:
            texts.append(path.read_text(errors="replace"))
    return texts


BATCH = TOKENIZE_DEFAULTS.batch_size  # documents per tokenizer call, ours and the baselines'


def write_corpus(folder: Path, texts: list[str], megabytes: float) -> int:
    """Curated-style Parquet shards of about `megabytes` MB; returns the number of documents."""
    folder.mkdir(parents=True)
    rows, size, copy = [], 0, 0
    while size < megabytes * 1e6:
        for i, text in enumerate(texts):
            doc = f"# copy {copy}\n{text}"
            rows.append((f"{copy:04d}-{i:05d}", doc))
            size += len(doc.encode())
        copy += 1
    ids, docs = zip(*rows)
    table = pa.table({"id": list(ids), "text": list(docs), "source": ["bench"] * len(ids)})
    for k, part in enumerate(range(0, len(ids), 2000)):
        pq.write_table(table.slice(part, 2000), folder / f"part-{k:05d}.parquet")
    return len(ids)


def baseline(tokenizer_json: Path, curated: Path, method: str, batch_size: int) -> dict:
    """`Tokenizer.<method>` over the corpus in one process with one Rust thread."""
    merged = curated.parent / "all.parquet"
    if not merged.exists():
        pq.write_table(pa.concat_tables(pq.read_table(p) for p in sorted(curated.glob("*.parquet"))), merged)
    env = {**os.environ, "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "true"}
    out = subprocess.run([sys.executable, "-c", BASELINE, str(tokenizer_json), str(merged), method, str(batch_size)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def loader_vs_step(tokens_dir: Path, batch_size: int = 8, steps: int = 20) -> dict:
    import torch

    from model.config import get_preset
    from model.objectives import training_loss
    from model.transformer import Transformer
    from pipeline.packed import PackedSplit
    from pipeline.train.data import Position, ShuffledBatches

    split = PackedSplit(tokens_dir, "train")
    loader = ShuffledBatches(split, batch_size, rank=0, world_size=1, seed=0)
    pos, t = Position(), time.perf_counter()
    for _ in range(200):
        batch = loader.batch(pos)
        pos = loader.advance(pos)
    loader_bps = 200 / (time.perf_counter() - t)
    torch.set_num_threads(1)
    model = Transformer(get_preset("tiny", vocab_size=4096, max_seq_len=split.manifest.seq_len))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rows = torch.as_tensor(batch, dtype=torch.long)
    t = time.perf_counter()
    for _ in range(steps):
        training_loss(model, rows, pad_id=split.pad_id).backward()
        opt.step()
        opt.zero_grad()
    step_ps = steps / (time.perf_counter() - t)
    return {"loader_batches_per_s": loader_bps, "train_steps_per_s": step_ps, "loader_vs_step": loader_bps / step_ps}


def ours_run(curated: Path, tokenizer_dir: Path, out: Path, concurrency: int) -> dict:
    from pipeline.tokenize.pack import tokenize_and_pack

    t = time.perf_counter()
    manifest = tokenize_and_pack(curated, tokenizer_dir, out, TokenizeConfig(seq_len=256, batch_size=BATCH,
                                                                             concurrency=concurrency))
    seconds = time.perf_counter() - t
    return {"tokens": sum(s["tokens"] for s in manifest.splits.values()),
            "documents": sum(s["documents"] for s in manifest.splits.values()), "seconds": seconds}


def run_two_nodes(curated: Path, tokenizer_dir: Path, tmp: Path, texts: list[str], concurrency: int,
                  one_node_s: float) -> dict:
    """The larger corpus on the local 2-node cluster, the same CPUs split between the nodes:
    two_node_ratio = one node's seconds (median of the repeats) / two nodes' (after a first call
    there, as on one node)."""
    from bench.two_nodes import run_on_local_cluster

    write_corpus(tmp / "first-2n" / "curated", texts, 0.1)  # a first call that reaches both nodes' workers
    job = {"curated": str(curated), "first": str(tmp / "first-2n" / "curated"), "tokenizer": str(tokenizer_dir),
           "out": str(tmp / "two-node"), "concurrency": concurrency}
    two = json.loads(run_on_local_cluster([sys.executable, __file__, "--two-node-job", json.dumps(job)],
                                          nodes=2, cores=concurrency + 1))
    return {**two, "one_node_seconds": one_node_s, "two_node_ratio": one_node_s / two["seconds"]}


def two_node_job(job: dict) -> str:
    """The driver on the cluster (RAY_ADDRESS and the token come from the environment)."""
    import ray

    from bench.two_nodes import nodes_that_ran_tasks

    ray.init(log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    out = Path(job["out"])
    ours_run(Path(job["first"]), Path(job["tokenizer"]), out / "first", job["concurrency"])
    timed = ours_run(Path(job["curated"]), Path(job["tokenizer"]), out / "tokens", job["concurrency"])
    return json.dumps({"seconds": timed["seconds"], "tokens": timed["tokens"],
                       "nodes_that_ran_tasks": nodes_that_ran_tasks()})


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mb", type=float, nargs=2, default=[32, 128])
    ap.add_argument("--concurrency", type=int, default=2, help="tokenize tasks at once (tokenize.concurrency)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds of (encode_batch_fast, ours) per size, interleaved; ratios are medians")
    ap.add_argument("--no-two-node", action="store_true",
                    help="skip the larger size on the local 2-node cluster (two_node_ratio)")
    ap.add_argument("--two-node-job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.two_node_job:
        print(two_node_job(json.loads(args.two_node_job)))
        return

    import ray

    from pipeline.config import TokenizerConfig
    from pipeline.raysession import tune_ray_data_for_local_files
    from pipeline.tokenize.tokenizer import train_tokenizer

    tune_ray_data_for_local_files()  # as `ownlm tokenize` does when it starts Ray
    # One logical CPU beside the tasks for the driver; per-core figures divide by the cores this
    # machine actually has for the job.
    ray.init(num_cpus=args.concurrency + 1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cores = min(os.cpu_count() or 1, args.concurrency + 1)
    ray.data.DataContext.get_current().enable_progress_bars = False
    texts = sample_texts()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpora = {size: tmp / f"{size:g}mb" / "curated" for size in args.sizes_mb}
        docs = {size: write_corpus(folder, texts, size) for size, folder in corpora.items()}
        tok_dir = tmp / "tok"
        train_tokenizer(corpora[args.sizes_mb[0]], tok_dir, TokenizerConfig(vocab_size=4096, max_docs=2000))
        tok_json = tok_dir / "tokenizer.json"
        # The first tokenize call of a Ray instance also starts Ray Data's own actors and loads
        # the code and the tokenizer into the worker processes: once per instance (once per
        # `ownlm run`), not per token, so it is timed on one copy of the sample (4 MB: enough
        # tasks to reach every slot's worker) and reported apart instead of being charged to
        # whichever size runs first.
        write_corpus(tmp / "first" / "curated", texts, 0.1)
        first_call_s = ours_run(tmp / "first" / "curated", tok_dir, tmp / "first" / "tokens",
                                args.concurrency)["seconds"]
        runs = {size: [] for size in args.sizes_mb}
        for rep in range(args.repeats):
            # Baseline and ours back to back, sizes in alternating order: the ratio of each pair
            # is taken under the same load, on a machine whose pace drifts from minute to minute.
            for size in (args.sizes_mb if rep % 2 == 0 else args.sizes_mb[::-1]):
                fast = baseline(tok_json, corpora[size], "encode_batch_fast", BATCH)
                ours = ours_run(corpora[size], tok_dir, corpora[size].parent / f"tokens-{rep}", args.concurrency)
                # our count includes one end-of-text token per document; the baseline has none
                assert ours["tokens"] - ours["documents"] == fast["tokens"], "both must produce the same tokens"
                runs[size].append({"ours": ours["tokens"] / ours["seconds"] / cores,
                                   "fast": fast["tokens"] / fast["seconds"], "ours_seconds": ours["seconds"],
                                   "tokens": ours["tokens"]})
        two_node = None
        if not args.no_two_node:
            ray.shutdown()  # the cluster's nodes get the machine to themselves
            two_node = run_two_nodes(corpora[args.sizes_mb[-1]], tok_dir, tmp, texts, args.concurrency,
                                     one_node_s=median([r["ours_seconds"] for r in runs[args.sizes_mb[-1]]]))
        results = []
        for size in args.sizes_mb:
            base = baseline(tok_json, corpora[size], "encode_batch", BATCH)  # the call with offsets, once
            ours = median([r["ours"] for r in runs[size]])
            results.append({"size_mb": size, "documents": docs[size], "tokens": runs[size][0]["tokens"],
                            "ours_tokens_per_s_per_core": ours,
                            "tokenizers_fast_tokens_per_s_per_core": median([r["fast"] for r in runs[size]]),
                            "vs_tokenizers_fast": median([r["ours"] / r["fast"] for r in runs[size]]),
                            "vs_tokenizers_fast_each": [round(r["ours"] / r["fast"], 3) for r in runs[size]],
                            "tokenizers_tokens_per_s_per_core": base["tokens"] / base["seconds"],
                            "vs_tokenizers": ours / (base["tokens"] / base["seconds"]),
                            "ours_seconds": median([r["ours_seconds"] for r in runs[size]]),
                            **loader_vs_step(corpora[size].parent / "tokens-0")})
    ray.shutdown()

    print(f"{'size MB':>8} {'docs':>7} {'tokens':>11} {'ours tok/s/core':>16} {'_fast tok/s/core':>17} "
          f"{'vs _fast (each)':>24} {'vs_tokenizers':>14} {'loader b/s':>11} {'train step/s':>13}")
    for r in results:
        each = "/".join(f"{v:.2f}" for v in r["vs_tokenizers_fast_each"])
        print(f"{r['size_mb']:>8g} {r['documents']:>7} {r['tokens']:>11,} {r['ours_tokens_per_s_per_core']:>16,.0f} "
              f"{r['tokenizers_fast_tokens_per_s_per_core']:>17,.0f} {r['vs_tokenizers_fast']:>6.2f} ({each:>15}) "
              f"{r['vs_tokenizers']:>14.2f} {r['loader_batches_per_s']:>11,.0f} {r['train_steps_per_s']:>13.2f}")
    print(f"first tokenize call of the Ray instance (one sample copy, 4 MB): {first_call_s:.1f} s")
    if two_node:
        print(f"{args.sizes_mb[-1]:g} MB on the local 2-node cluster ({two_node['nodes_that_ran_tasks']} nodes ran "
              f"tasks): {two_node['seconds']:.1f} s against {two_node['one_node_seconds']:.1f} s on one node -> "
              f"two_node_ratio {two_node['two_node_ratio']:.3f}")
    final = {"bench": "tokenize", "repeats": args.repeats, "sizes": results,
             "tokens_per_s_per_core": results[-1]["ours_tokens_per_s_per_core"],
             "vs_tokenizers": results[-1]["vs_tokenizers"],
             "vs_tokenizers_fast": results[-1]["vs_tokenizers_fast"],
             # seconds per token, largest size over smallest: 1.0 is flat, above 1 costlier at scale
             "cost_growth": results[0]["ours_tokens_per_s_per_core"] / results[-1]["ours_tokens_per_s_per_core"],
             "first_call_s": first_call_s,
             **({"two_node": two_node, "two_node_ratio": two_node["two_node_ratio"]} if two_node else {}),
             "loader_vs_step": min(r["loader_vs_step"] for r in results)}
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenize.json").write_text(json.dumps(final, indent=2))
    print(json.dumps(final))


if __name__ == "__main__":
    main()

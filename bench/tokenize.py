"""Benchmark: tokenize + pack on Ray Data against `tokenizers`' own encode_batch, and the loader's pace.

For two corpus sizes built from the bundled sample (repeated with a per-copy marker so no two
documents are equal), measures:
  - ours: `pipeline.tokenize.pack.tokenize_and_pack` (Ray Data tasks, one core and one tokenizer
    thread each, reading their Parquet rows, tokenizing, packing and writing shards, and the
    driver's footer reads, tail packing and manifest), tokens/s per core the job had
    (min(machine cores, concurrency + 1));
  - baseline: `Tokenizer.encode_batch` over the same texts in one process with one Rust thread
    (RAYON_NUM_THREADS=1), tokens/s per core;
  - vs_tokenizers = ours per core / baseline per core (goal >= 0.8); both encode
    `tokenize.batch_size` (the default, 256) documents per call. Ours calls `encode_batch_fast`
    (no character offsets, which packing does not need),
    so vs_tokenizers_fast, against that same call in one process, shows what is Ray's own cost;
  - loader: batches/s of the training loader (`ShuffledBatches`) against the training steps/s of
    the `tiny` model on the same batch (loader_vs_step must stay well above 1).
Prints a table and a final JSON line; writes bench/out/tokenize.json.

    python bench/tokenize.py [--sizes-mb 32 128] [--concurrency 2]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mb", type=float, nargs=2, default=[32, 128])
    ap.add_argument("--concurrency", type=int, default=2, help="tokenize tasks at once (tokenize.concurrency)")
    args = ap.parse_args()

    import ray

    from pipeline.config import TokenizerConfig
    from pipeline.tokenize.pack import tokenize_and_pack
    from pipeline.tokenize.tokenizer import train_tokenizer

    # One logical CPU beside the tasks for the driver; per-core figures divide by the cores this
    # machine actually has for the job.
    from pipeline.raysession import tune_ray_data_for_local_files

    tune_ray_data_for_local_files()  # as `ownlm tokenize` does when it starts Ray
    ray.init(num_cpus=args.concurrency + 1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cores = min(os.cpu_count() or 1, args.concurrency + 1)
    ray.data.DataContext.get_current().enable_progress_bars = False
    # Ray Data starts actors of its own (stats, autoscaling coordinator) for the first dataset a
    # Ray instance runs: once per instance, not per token, so it is measured and reported apart
    # instead of being charged to whichever size runs first.
    t = time.perf_counter()
    ray.data.from_items([{"x": 0}]).take_all()
    ray_data_first_use_s = time.perf_counter() - t
    texts = sample_texts()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in args.sizes_mb:
            work = tmp / f"{size:g}mb"
            docs = write_corpus(work / "curated", texts, size)
            if not (tmp / "tok" / "tokenizer.json").exists():
                train_tokenizer(work / "curated", tmp / "tok", TokenizerConfig(vocab_size=4096, max_docs=2000))
            base = baseline(tmp / "tok" / "tokenizer.json", work / "curated", "encode_batch", BATCH)
            fast = baseline(tmp / "tok" / "tokenizer.json", work / "curated", "encode_batch_fast", BATCH)
            t = time.perf_counter()
            manifest = tokenize_and_pack(work / "curated", tmp / "tok", work / "tokens",
                                         TokenizeConfig(seq_len=256, batch_size=BATCH, concurrency=args.concurrency))
            ours_s = time.perf_counter() - t
            tokens = sum(s["tokens"] for s in manifest.splits.values())
            eot_docs = sum(s["documents"] for s in manifest.splits.values())
            ours = tokens / ours_s / cores
            # our token count includes one end-of-text token per document; the baseline has none
            theirs = base["tokens"] / base["seconds"]
            theirs_fast = fast["tokens"] / fast["seconds"]
            assert tokens - eot_docs == base["tokens"] == fast["tokens"], "all paths must produce the same tokens"
            results.append({"size_mb": size, "documents": docs, "tokens": tokens,
                            "ours_tokens_per_s_per_core": ours, "tokenizers_tokens_per_s_per_core": theirs,
                            "vs_tokenizers": ours / theirs, "ours_seconds": ours_s,
                            "tokenizers_seconds": base["seconds"],
                            "tokenizers_fast_tokens_per_s_per_core": theirs_fast,
                            "vs_tokenizers_fast": ours / theirs_fast, **loader_vs_step(work / "tokens")})
    ray.shutdown()

    print(f"{'size MB':>8} {'docs':>7} {'tokens':>10} {'ours tok/s/core':>16} {'tokenizers tok/s/core':>22} "
          f"{'vs_tokenizers':>14} {'vs _fast':>9} {'loader b/s':>11} {'train step/s':>13}")
    for r in results:
        print(f"{r['size_mb']:>8g} {r['documents']:>7} {r['tokens']:>10,} {r['ours_tokens_per_s_per_core']:>16,.0f} "
              f"{r['tokenizers_tokens_per_s_per_core']:>22,.0f} {r['vs_tokenizers']:>14.2f} "
              f"{r['vs_tokenizers_fast']:>9.2f} "
              f"{r['loader_batches_per_s']:>11,.0f} {r['train_steps_per_s']:>13.2f}")
    # The headline is the largest corpus: Ray's fixed start (workers, the read tasks, the actor
    # pool; several seconds on 2 cores) weighs on small corpora and vanishes on real ones.
    final = {"bench": "tokenize", "sizes": results,
             "tokens_per_s_per_core": results[-1]["ours_tokens_per_s_per_core"],
             "vs_tokenizers": results[-1]["vs_tokenizers"],
             "vs_tokenizers_fast": results[-1]["vs_tokenizers_fast"],
             # seconds per token, largest size over smallest: 1.0 is flat, above 1 costlier at scale
             "cost_growth": results[0]["ours_tokens_per_s_per_core"] / results[-1]["ours_tokens_per_s_per_core"],
             "ray_data_first_use_s": ray_data_first_use_s,
             "loader_vs_step": min(r["loader_vs_step"] for r in results)}
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenize.json").write_text(json.dumps(final, indent=2))
    print(json.dumps(final))


if __name__ == "__main__":
    main()

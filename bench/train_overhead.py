"""Benchmark: what Ray Train costs. Tokens/s of `ownlm train` against plain PyTorch, same everything.

In one run, on the same packed data (random token ids, a real tokenizer), the same model
(`tiny` by default), the same batch per worker, AdamW and gradient clipping:
  - plain-1: a plain PyTorch loop in one process (memory-mapped rows, forward, backward, clip, step);
  - ray-1:   `pipeline.train.launch.run_train` with 1 Ray Train worker (`ownlm train`'s path);
  - plain-2: 2 processes (torch.multiprocessing + gloo DistributedDataParallel), each its own slice;
  - ray-2:   `run_train` with 2 DDP workers.
Plain torch runs right before and right after each Ray run. Every process uses `--threads` torch
threads. Time is taken per window of `--window` steps, the first window being warm-up: for plain
torch around the steps; for ours as the wall clock between rank 0's log lines (MLflow timestamps),
so it holds everything the loop does per step (data, the non-finite check, logging, all-reduces,
MLflow writes) but not the final validation and checkpoint, which plain torch does not do at all.
Ray's start-up (placement, worker processes, process group, model build) is `ray_startup_s`.
Last, ray-2 again on the local 2-node cluster (cluster/local.py), one worker per node
(STRICT_SPREAD): two_node_ratio = its best window / ray-2's on one node. The nodes share this
machine's cores, so it measures what crossing nodes costs (workers under two raylets, placed
and started by Ray across nodes; gloo all-reduces over loopback TCP in both cases), not added
capacity.

On a machine shared with other work, load comes and goes; each variant's best window (its
least disturbed sustained pace) is the headline, the mean over windows is reported beside it:
vs_plain_torch = ray-1 / plain-1 and vs_plain_torch_2 = ray-2 / plain-2, best windows (goal >= 0.9).
Prints a table and a final JSON line; writes bench/out/train_overhead.json.

    python bench/train_overhead.py [--preset tiny] [--seq 256] [--batch 8] [--steps 60] [--window 10]
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py shadows the standard library's `tokenize`: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_tokens(folder: Path, seq_len: int, rows: int, vocab: int = 4096) -> Path:
    """Packed rows of random ids under folder/tokens, with a BPE tokenizer of that vocabulary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from model.tokenizer import Tokenizer
    from pipeline.config import TokenizerConfig
    from pipeline.packed import Manifest
    from pipeline.tokenize.tokenizer import train_tokenizer

    curated = folder / "curated"
    curated.mkdir(parents=True)
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 9))) for _ in range(3000)]
    texts = [" ".join(rng.choice(words, size=200)) for _ in range(300)]
    pq.write_table(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}), curated / "part-0.parquet")
    train_tokenizer(curated, folder / "tok", TokenizerConfig(vocab_size=vocab))
    tok = Tokenizer.from_file(folder / "tok" / "tokenizer.json")
    out = folder / "tokens"
    splits = {}
    for split, n in (("train", rows), ("val", 64)):
        (out / split).mkdir(parents=True)
        ids = rng.integers(0, tok.vocab_size, size=(n, seq_len + 1), dtype=np.uint16)
        np.save(out / split / "shard-0.npy", ids)
        splits[split] = {"files": [f"{split}/shard-0.npy"], "rows": n}
    Manifest(seq_len=seq_len, dtype="uint16", eot_id=tok.eot_id, pad_id=tok.pad_id,
             tokenizer_fingerprint=tok.fingerprint, splits=splits).write(out)
    (out / "tokenizer.json").write_bytes((folder / "tok" / "tokenizer.json").read_bytes())
    return out


# ---- plain PyTorch: what a user would write instead of ownlm train


def plain_worker(rank: int, world: int, args, tokens: str, port: int, result_file: str) -> None:
    import torch
    import torch.distributed as dist

    from model.config import get_preset
    from model.objectives import training_loss
    from model.transformer import Transformer
    from pipeline.packed import PackedSplit
    from pipeline.train.schedule import build_optimizer

    torch.set_num_threads(args.threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    split = PackedSplit(tokens, "train")
    torch.manual_seed(0)
    model = Transformer(get_preset(args.preset, vocab_size=args.vocab, max_seq_len=args.seq))
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    order = np.random.default_rng(0).permutation(len(split))
    global_batch = args.batch * world
    marks = [time.perf_counter()]
    for step in range(args.steps):
        first = (step * global_batch) % (len(split) - global_batch) + rank * args.batch
        rows = torch.from_numpy(split.rows(np.sort(order[first:first + args.batch])))
        loss = training_loss(model, rows, pad_id=split.pad_id)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        if (step + 1) % args.window == 0:
            marks.append(time.perf_counter())  # (DDP's all-reduce keeps the ranks in step)
    if rank == 0:
        Path(result_file).write_text(json.dumps(list(np.diff(marks))))
    if world > 1:
        dist.destroy_process_group()


def run_plain(world: int, args, tokens: Path) -> list[float]:
    """Seconds per window of `window` steps (the first one is warm-up)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        if world == 1:
            plain_worker(0, 1, args, str(tokens), port, f.name)
        else:
            mp.spawn(plain_worker, args=(world, args, str(tokens), port, f.name), nprocs=world)
        return json.loads(Path(f.name).read_text())


# ---- ownlm train on Ray Train


def run_ray(world: int, args, tokens: Path, work: Path, extra_sets: tuple[str, ...] = ()) -> tuple[list[float], float]:
    """(Seconds per window of `window` steps, the first being warm-up; start-up seconds)."""
    from mlflow import MlflowClient

    from pipeline.config import load_config
    from pipeline.train.launch import run_train

    root = work / f"ray-{world}"
    sets = [f"model.preset={args.preset}", f"model.max_seq_len={args.seq}", f"tokenize.seq_len={args.seq}",
            f"tracking.uri=sqlite:///{root}/mlflow.db", f"train.num_workers={world}",
            f"train.cpus_per_worker={args.threads}", f"train.batch_size={args.batch}", f"train.max_steps={args.steps}",
            f"train.log_every={args.window}", f"train.eval_every={args.steps}", f"train.checkpoint_every={args.steps}",
            "train.eval_batches=1", "train.warmup_steps=1", "train.lr=1e-3", *extra_sets]
    cfg = load_config(None, sets, root=str(root))
    client = MlflowClient(cfg.tracking_uri)
    run_id = client.create_run(client.create_experiment("bench")).info.run_id
    start = time.time()
    run_train(cfg, tokens, root / "model", root / "runs", f"bench-{world}", run_id=run_id)
    # Rank 0 logs every `window` steps; the last log also waited for the final validation.
    logs = sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)[:-1]
    windows = list(np.diff([m.timestamp / 1000 for m in logs]))
    first_window = client.get_metric_history(run_id, "train/step_time_s")
    first_window = min(first_window, key=lambda m: m.step).value * args.window
    return [first_window] + windows, logs[0].timestamp / 1000 - start - first_window


def two_node_job(args, job: dict) -> str:
    """ray-2 with one worker on each node of the local 2-node cluster (RAY_ADDRESS and the token
    come from the environment): its windows, start-up and the nodes the workers ran on."""
    import ray

    from model.checkpoint import load_train_state

    ray.init(log_to_driver=False, configure_logging=False)
    work = Path(job["work"])
    windows, startup = run_ray(2, args, Path(job["tokens"]), work, ("train.placement_strategy=STRICT_SPREAD",))
    placement = load_train_state(work / "ray-2" / "model")["placement"]
    return json.dumps({"windows": [float(w) for w in windows], "startup": startup,
                       "nodes": len({node for node, _ in placement})})


def pace(windows: list[float], tokens_per_window: int, steps_per_window: int) -> dict:
    timed = windows[1:]  # the first window is warm-up
    return {"best": tokens_per_window / min(timed), "mean": tokens_per_window / float(np.mean(timed)),
            "best_step_s": min(timed) / steps_per_window}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8, help="sequences per worker per step")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--window", type=int, default=10, help="steps per timed window (also the Ray log interval)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-two-node", action="store_true",
                    help="skip ray-2 on the local 2-node cluster (one worker per node: two_node_ratio)")
    ap.add_argument("--two-node-job", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.two_node_job:
        print(two_node_job(args, json.loads(args.two_node_job)))
        return
    if args.steps % args.window or args.steps < 3 * args.window:
        ap.error("--steps must be a multiple of --window and at least 3 windows (the first is warm-up, the "
                 "last holds Ray's final validation)")

    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    work = Path(tempfile.mkdtemp(prefix="ownlm-bench-train-"))
    tokens = make_tokens(work / "data", args.seq, rows=max(512, args.batch * max(args.workers) * args.steps + 64),
                         vocab=args.vocab)
    from model.tokenizer import Tokenizer

    args.vocab = Tokenizer.from_file(tokens / "tokenizer.json").vocab_size
    ray.init(num_cpus=max(args.workers) * args.threads + 2, log_to_driver=False, configure_logging=False)
    final = {"bench": "train_overhead", "preset": args.preset, "seq_len": args.seq, "batch_per_worker": args.batch,
             "steps": args.steps, "window": args.window, "threads_per_process": args.threads,
             "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
             "date": time.strftime("%Y-%m-%d"),
             "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    rows = []
    for world in args.workers:
        tokens_per_window = world * args.batch * args.seq * args.window
        before = run_plain(world, args, tokens)
        ours, startup = run_ray(world, args, tokens, work)
        after = run_plain(world, args, tokens)
        plain = pace(before + after[1:], tokens_per_window, args.window)  # both runs' timed windows
        mine = pace(ours, tokens_per_window, args.window)
        suffix = "" if world == 1 else f"_{world}"
        final.update({
            f"plain{suffix}_tokens_per_s": round(plain["best"]), f"ray{suffix}_tokens_per_s": round(mine["best"]),
            f"vs_plain_torch{suffix}": round(mine["best"] / plain["best"], 3),
            f"plain{suffix}_mean_tokens_per_s": round(plain["mean"]),
            f"ray{suffix}_mean_tokens_per_s": round(mine["mean"]),
            f"vs_plain_torch{suffix}_mean": round(mine["mean"] / plain["mean"], 3),
            f"ray_startup{suffix}_s": round(startup, 1)})
        rows.append((f"plain torch, {world} process(es)", plain, ""))
        rows.append((f"ownlm train (Ray Train), {world} worker(s)", mine,
                     f"{mine['best'] / plain['best']:.3f} ({mine['mean'] / plain['mean']:.3f})"))
        print(f"[bench] {world} worker(s): plain {plain['best']:,.0f} tok/s, ours {mine['best']:,.0f} tok/s "
              f"(best windows; start-up {startup:.1f}s)", flush=True)
    ray.shutdown()
    if 2 in args.workers and not args.no_two_node:
        from bench.two_nodes import run_on_local_cluster

        # The driver is a process of its own (bench/two_nodes.py); each node has room for a
        # worker plus Ray Train's controller.
        work2 = work / "two-nodes"
        job = json.dumps({"tokens": str(tokens), "work": str(work2)})
        two = json.loads(run_on_local_cluster([sys.executable, __file__, *sys.argv[1:], "--two-node-job", job],
                                              nodes=2, cores=2 * (args.threads + 1)))
        mine = pace(two["windows"], 2 * args.batch * args.seq * args.window, args.window)
        one_node = final["ray_2_tokens_per_s"]
        final.update({"ray_2_two_nodes_tokens_per_s": round(mine["best"]), "two_node_nodes": two["nodes"],
                      "two_node_ratio": round(mine["best"] / one_node, 3),
                      "ray_startup_2_two_nodes_s": round(two["startup"], 1)})
        rows.append(("ownlm train, 2 workers on 2 nodes", mine,
                     f"{mine['best'] / final['plain_2_tokens_per_s']:.3f} (vs plain-2); "
                     f"{mine['best'] / one_node:.3f} vs 1 node"))
    final["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print("\n| variant | tokens/s (best window) | tokens/s (mean) | step s (best) | vs plain: best (mean) |")
    print("|---|---|---|---|---|")
    for name, p, ratio in rows:
        print(f"| {name} | {p['best']:,.0f} | {p['mean']:,.0f} | {p['best_step_s']:.3f} | {ratio} |")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_overhead.json").write_text(json.dumps(final, indent=2))
    print(json.dumps(final))


if __name__ == "__main__":
    main()

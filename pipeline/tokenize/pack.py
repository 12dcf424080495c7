"""The `tokenize` stage: parallel tokenize + pack on Ray Data.

Ray Data runs one task per run of batches (pipeline/tokenize/reads.py: which rows each reads).
Packing runs where tokenization runs: each batch of documents is read from its curated file,
tokenized, split into train/validation by a hash of the document id, joined
with the end-of-text token, cut into rows of seq_len + 1 tokens and written as
one `.npy` shard per split by the task itself. Only the leftover tail of each
batch (fewer than seq_len + 1 tokens) travels back to the driver, which packs
the tails into the last shard. So the driver never holds the corpus, and no
token is lost: only the final row of a split can end in padding.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from typing import Callable

import numpy as np
import pyarrow as pa

from model.tokenizer import Tokenizer
from pipeline.config import TokenizeConfig
from pipeline.environ import scoped_env
from pipeline.layout import Location
from pipeline.options import ConfigFlag, PathFlag
from pipeline.packed import Manifest
from pipeline.progress import Progress
from pipeline.stage import Context, Stage
from pipeline.storage import (StoragePath, atomic_write, copy_file, discard_dir, local_copy, on_one_filesystem,
                              publish_dir, resolve, staging_dir)
from pipeline.tokenize.curated import TokenizeError, curated_files
from pipeline.tokenize.reads import RowReader, plan_tasks, read_footers, task_shard


def split_of(doc_id: str, val_fraction: float) -> str:
    """Deterministic train/val assignment by a hash of the document id (stable across runs and shards)."""
    h = int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:8], "big") / 2**64
    return "val" if h < val_fraction else "train"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def pack_rows(token_lists: list[list[int]], eot_id: int, row_len: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Join documents with EOT and cut into full rows of row_len; return (rows, leftover tail)."""
    joined = np.empty(sum(len(doc) + 1 for doc in token_lists), dtype=dtype)
    at = 0
    for doc in token_lists:  # one C-level copy per document, not per token
        joined[at:at + len(doc)] = doc
        joined[at + len(doc)] = eot_id
        at += len(doc) + 1
    n_full = len(joined) // row_len
    return joined[: n_full * row_len].reshape(n_full, row_len), joined[n_full * row_len:]


def source_slug(source: str) -> str:
    """A folder name for a source's shards (source names are free text in the config)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", source).strip("-.") or "source"
    return f"{slug}-{hashlib.sha1(source.encode()).hexdigest()[:6]}"


class BatchPacker:
    """Tokenizes a batch of documents and writes its packed shards.

    Each source is packed apart from the others, so every row belongs to one source and the
    training loader can weight sources (`SourceConfig.weight`) row by row.
    """

    def __init__(self, tok: Tokenizer, out_dir: StoragePath, seq_len: int, val_fraction: float):
        self.tok = tok
        self.out = out_dir
        self.row_len = seq_len + 1
        self.val_fraction = val_fraction
        self.dtype = token_dtype(self.tok.vocab_size)

    def __call__(self, batch: pa.Table) -> list[dict]:
        """One result per (split, source) of the batch: its shard, counts, and leftover tail."""
        ids = batch.column("id").to_pylist()
        with one_tokenizer_thread():
            encoded = self.tok.encode_batch(batch.column("text").to_pylist())
        sources = batch.column("source").to_pylist()
        # The batch's first id names its shards, so a retried task overwrites its own files.
        name = hashlib.sha1(ids[0].encode()).hexdigest()[:16] if ids else "empty"
        groups: dict[tuple[str, str], list[int]] = {}
        for i, doc_id in enumerate(ids):
            groups.setdefault((split_of(doc_id, self.val_fraction), sources[i]), []).append(i)
        out = []
        for (split, source), picks in sorted(groups.items()):
            rows, tail = pack_rows([encoded[i] for i in picks], self.tok.eot_id, self.row_len, self.dtype)
            rel = f"{split}/{source_slug(source)}/shard-{name}.npy"
            if len(rows):
                save_rows(self.out / rel, rows)
            out.append({"split": split, "source": source, "file": rel if len(rows) else "", "rows": len(rows),
                        "tokens": int(rows.size + tail.size), "documents": len(picks),
                        "tail": tail.astype(np.int64).tolist(), "key": ids[picks[0]]})
        return out


@contextlib.contextmanager
def one_tokenizer_thread():
    """`tokenizers` on the calling thread only, for the duration of a call.

    Parallelism comes from the tasks, one per CPU; its own thread pool would start a thread per
    core in every one of them. `tokenizers` reads TOKENIZERS_PARALLELISM at each call (0.23), and
    setting it here, unlike a task's runtime_env, lets the tasks run on Ray's already started
    worker processes."""
    with scoped_env("TOKENIZERS_PARALLELISM", "false"):
        yield


@functools.lru_cache(maxsize=4)
def _load_tokenizer(local_path: str, size: int, mtime_ns: int) -> Tokenizer:
    """One load per worker process and tokenizer file version (tasks reuse Ray's processes)."""
    return Tokenizer.from_file(local_path)


def cached_tokenizer(path: StoragePath) -> Tokenizer:
    local = local_copy(path)
    stat = local.stat()
    return _load_tokenizer(str(local), stat.st_size, stat.st_mtime_ns)


def tokenize_task(task: dict, *, fs, tokenizer_path: StoragePath, out_dir: StoragePath, seq_len: int,
                  val_fraction: float) -> list[dict]:
    """A Ray Data task: batches task["first"]..task["stop"]-1 of one curated file, read from the
    file itself, tokenized and packed; one result per (batch, split, source)."""
    import ray

    shard = task_shard(task)
    reader = RowReader(fs, shard)
    packer = BatchPacker(cached_tokenizer(tokenizer_path), out_dir, seq_len, val_fraction)
    results, size = [], int(task["batch_rows"])
    for b in range(task["first"], task["stop"]):
        results += packer(reader.rows(b * size, min(shard.rows, (b + 1) * size)))
    node = ray.get_runtime_context().get_node_id()  # where it ran: the stage reports how many nodes took part
    return [{**r, "node": node} for r in results]


def save_rows(path: StoragePath, rows: np.ndarray) -> None:
    """One `.npy` shard, appearing whole (a retried task may be writing the same name)."""
    with atomic_write(path) as f:
        np.save(f, rows)


def tokenize_and_pack(curated_dir: StoragePath, tokenizer_dir: StoragePath, output_dir: StoragePath, cfg: TokenizeConfig,
                      progress: Callable[[str], None] | None = None) -> Manifest:
    """Tokenize the curated corpus in Ray Data tasks and write packed shards + manifest;
    `progress` gets a line now and then (documents and tokens done, rates, eta)."""
    tokenizer_path = resolve(tokenizer_dir) / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise TokenizeError(f"{tokenizer_path} not found: run `ownlm tokenizer` first")
    files = curated_files(curated_dir)
    tmp = staging_dir(resolve(output_dir))
    try:
        manifest = _pack_into(tmp, files, tokenizer_path, cfg, progress or (lambda line: None))
    except BaseException:
        discard_dir(tmp)
        raise
    publish_dir(tmp, resolve(output_dir))
    return manifest


def _pack_into(tmp: StoragePath, files: list[StoragePath], tokenizer_path: StoragePath, cfg: TokenizeConfig,
               say: Callable[[str], None]) -> Manifest:
    import ray.data

    tok = cached_tokenizer(tokenizer_path)
    fs, paths = on_one_filesystem(files)
    shards = read_footers(fs, paths)
    tasks = plan_tasks(shards, cfg.batch_size, cfg.concurrency, batch_bytes=int(cfg.batch_mb * 1e6))
    packed = ray.data.from_items(tasks, override_num_blocks=len(tasks)).flat_map(
        tokenize_task,
        # Path objects, not strings: a remote one carries its filesystem (and credentials) to the tasks.
        fn_kwargs=dict(fs=fs, tokenizer_path=tokenizer_path, out_dir=tmp, seq_len=cfg.seq_len,
                       val_fraction=cfg.val_fraction),
        # (never more slots than tasks: Ray Data warns of a limit it cannot reach)
        num_cpus=1, compute=ray.data.TaskPoolStrategy(size=max(1, min(cfg.concurrency, len(tasks)))))
    # Ray Data's memory backpressure is for blocks of data; these tasks return a few KB of counts
    # and tails. With it on, two policies left one of two slots idle for a third of a run
    # (bench/RESULTS.md): the per-operator reservation starts one task and waits for it to finish
    # before starting the others, and without a reservation the downstream-capacity policy holds
    # tasks back whenever the driver has not yet taken the last few KB of results.
    packed.context.op_resource_reservation_enabled = False
    packed.context.downstream_capacity_backpressure_ratio = None
    progress = Progress("tokenize", say, total_items=sum(s.rows for s in shards), item="docs", count="tokens")
    results = []
    for row in packed.iter_rows():  # one row per (batch, split, source), as tasks finish
        results.append(row)
        progress.add(items=row["documents"], count=row["tokens"])

    nodes = len({r["node"] for r in results})
    say(f"tokenize: {len(tasks)} tasks ran on {nodes} node(s)")
    dtype = token_dtype(tok.vocab_size)
    splits = {}
    for split in ("train", "val"):
        mine = [r for r in results if r["split"] == split]
        if not mine:
            raise TokenizeError(f"the {split} split is empty: the corpus is too small for "
                                f"tokenize.val_fraction={cfg.val_fraction}")
        per_source = {}
        for source in sorted({r["source"] for r in mine}):
            batches = sorted((r for r in mine if r["source"] == source), key=lambda r: r["key"])
            per_source[source] = _finish_source(batches, tmp, f"{split}/{source_slug(source)}",
                                                cfg.seq_len + 1, tok.pad_id, dtype)
        splits[split] = {
            "files": [f for info in per_source.values() for f in info["files"]],
            **{k: sum(info[k] for info in per_source.values()) for k in ("rows", "tokens", "documents")},
            "sources": per_source,
        }
    manifest = Manifest(seq_len=cfg.seq_len, dtype=dtype.name, eot_id=tok.eot_id, pad_id=tok.pad_id,
                        tokenizer_fingerprint=tok.fingerprint, splits=splits)
    manifest.write(tmp)
    # The tokens carry their tokenizer, so `ownlm train --data DIR` needs nothing else.
    copy_file(tokenizer_path, tmp / "tokenizer.json")
    return manifest


def _finish_source(batches: list[dict], out: StoragePath, folder: str, row_len: int, pad_id: int, dtype) -> dict:
    """One source of one split: its batches' shards plus a last shard packed from their tails."""
    files = [r["file"] for r in batches if r["file"]]
    tail_rows = _pack_tails([r["tail"] for r in batches], row_len, pad_id, dtype)
    if len(tail_rows):
        save_rows(out / folder / "shard-tail.npy", tail_rows)
        files.append(f"{folder}/shard-tail.npy")
    return {
        "files": files,
        "rows": sum(r["rows"] for r in batches) + len(tail_rows),
        "tokens": sum(r["tokens"] for r in batches),
        "documents": sum(r["documents"] for r in batches),
        # In key order: each batch's shard (or "" when it filled no row), its rows, and how many
        # tokens of its stream went to the tail shard. Reading each batch's rows and then its
        # tail segment gives back the source's documents in order.
        "batches": [[r["file"], r["rows"], len(r["tail"])] for r in batches],
    }


def _pack_tails(tails: list[list[int]], row_len: int, pad_id: int, dtype) -> np.ndarray:
    """Pack the batches' leftover tails (already EOT-joined) into rows; pad only the last one."""
    joined = np.fromiter((t for tail in tails for t in tail), dtype=dtype)
    if not len(joined):
        return np.empty((0, row_len), dtype)
    n_rows = -(-len(joined) // row_len)
    rows = np.full(n_rows * row_len, pad_id, dtype=dtype)
    rows[: len(joined)] = joined
    return rows.reshape(n_rows, row_len)


def tokenize(ctx: Context) -> dict:
    layout = ctx.layout
    manifest = tokenize_and_pack(layout.curated, layout.tokenizer, layout.tokens, ctx.cfg.tokenize,
                                 progress=lambda line: print(f"   {line}", flush=True))
    splits = {s: {k: v for k, v in info.items() if k in ("rows", "tokens", "documents")}
              for s, info in manifest.splits.items()}
    ctx.tracker.log_metrics({f"tokenize/{s}_{k}": v for s, info in splits.items() for k, v in info.items()})
    ctx.tracker.log_artifact(layout.tokens / "manifest.json", "tokens")
    print("   " + "; ".join(f"{s}: {i['tokens']:,} tokens in {i['rows']:,} sequences of {manifest.seq_len}"
                            for s, i in splits.items()), flush=True)
    return splits


STAGE = Stage(
    name="tokenize",
    help="tokenize and pack the curated text into training sequences (Ray Data)",
    action=tokenize,
    upstream=("tokenizer", "curate"),
    sections=("tokenize",),
    locations=(Location("tokens", "tokens",
                        "packed token shards: train/, val/, manifest.json (and a copy of the tokenizer)"),),
    outputs=(("tokens", "manifest.json"),),
    flags=(PathFlag("--input", "curated", "curated folder"),
           PathFlag("--tokenizer", "tokenizer", "tokenizer folder"),
           PathFlag("--output", "tokens", "folder for the packed shards and manifest"),
           ConfigFlag("--seq-len", "tokenize.seq_len", type=int)),
    uses_ray=True,
)

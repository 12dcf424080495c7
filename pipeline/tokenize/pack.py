"""The `tokenize` stage: parallel tokenize + pack on Ray Data.

Packing runs where tokenization runs: each Ray Data batch of documents is
tokenized, split into train/validation by a hash of the document id, joined
with the end-of-text token, cut into rows of seq_len + 1 tokens and written as
one `.npy` shard per split by the actor itself. Only the leftover tail of each
batch (fewer than seq_len + 1 tokens) travels back to the driver, which packs
the tails into the last shard. So the driver never holds the corpus, and no
token is lost: only the final row of a split can end in padding.
"""
from __future__ import annotations

import hashlib
import re
from typing import Callable

import numpy as np
import pyarrow as pa

from model.tokenizer import Tokenizer
from pipeline.config import TokenizeConfig
from pipeline.layout import Location
from pipeline.options import ConfigFlag, PathFlag
from pipeline.packed import Manifest
from pipeline.progress import Progress
from pipeline.stage import Context, Stage
from pipeline.storage import (StoragePath, atomic_write, copy_file, discard_dir, local_copy, on_one_filesystem,
                              publish_dir, resolve, staging_dir)
from pipeline.tokenize.curated import TokenizeError, curated_files, curated_rows


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


class TokenizePack:
    """Ray Data actor: loads the tokenizer once, tokenizes a batch, writes its packed shards.

    Each source is packed apart from the others, so every row belongs to one source and the
    training loader can weight sources (`SourceConfig.weight`) row by row.
    """

    def __init__(self, tokenizer_path: StoragePath, out_dir: StoragePath, seq_len: int, val_fraction: float):
        self.tok = Tokenizer.from_file(local_copy(tokenizer_path))
        self.out = out_dir
        self.row_len = seq_len + 1
        self.val_fraction = val_fraction
        self.dtype = token_dtype(self.tok.vocab_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("id").to_pylist()
        encoded = self.tok.encode_batch(batch.column("text").to_pylist())
        sources = batch.column("source").to_pylist()
        # The batch's first id names its shards, so a retried task overwrites its own files.
        name = hashlib.sha1(ids[0].encode()).hexdigest()[:16] if ids else "empty"
        groups: dict[tuple[str, str], list[int]] = {}
        for i, doc_id in enumerate(ids):
            groups.setdefault((split_of(doc_id, self.val_fraction), sources[i]), []).append(i)
        out = {k: [] for k in ("split", "source", "file", "rows", "tokens", "documents", "tail", "key")}
        for (split, source), picks in sorted(groups.items()):
            rows, tail = pack_rows([encoded[i] for i in picks], self.tok.eot_id, self.row_len, self.dtype)
            rel = f"{split}/{source_slug(source)}/shard-{name}.npy"
            if len(rows):
                save_rows(self.out / rel, rows)
            out["split"].append(split)
            out["source"].append(source)
            out["file"].append(rel if len(rows) else "")
            out["rows"].append(len(rows))
            out["tokens"].append(int(rows.size + tail.size))
            out["documents"].append(len(picks))
            out["tail"].append(tail.astype(np.int64).tolist())
            out["key"].append(ids[picks[0]])
        return pa.table(out)


def save_rows(path: StoragePath, rows: np.ndarray) -> None:
    """One `.npy` shard, appearing whole (a retried task may be writing the same name)."""
    with atomic_write(path) as f:
        np.save(f, rows)


def tokenize_and_pack(curated_dir: StoragePath, tokenizer_dir: StoragePath, output_dir: StoragePath, cfg: TokenizeConfig,
                      progress: Callable[[str], None] | None = None) -> Manifest:
    """Tokenize the curated corpus with a Ray Data actor pool and write packed shards + manifest;
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

    tok = Tokenizer.from_file(local_copy(tokenizer_path))
    fs, paths = on_one_filesystem(files)
    ds = ray.data.read_parquet(paths, filesystem=fs).select_columns(["id", "text", "source"])
    # Blocks in file order, whatever finishes first: which documents share a batch decides the
    # shards (their names, and where rows break), so the same corpus must always batch the same
    # way, or a rerun of an unchanged stage would train on other rows.
    ds.context.execution_options.preserve_order = True
    # A Parquet file arrives as one block, and a block goes to one actor: without a split, one
    # large curated shard would be tokenized by a single actor while the others idle. Streaming
    # repartition (no shuffle, no barrier) cuts blocks down to one batch each.
    ds = ds.repartition(target_num_rows_per_block=cfg.batch_size)
    packed = ds.map_batches(
        TokenizePack, batch_size=cfg.batch_size, batch_format="pyarrow",
        # Path objects, not strings: a remote one carries its filesystem (and credentials) to the actors.
        fn_constructor_args=(tokenizer_path, tmp, cfg.seq_len, cfg.val_fraction),
        compute=ray.data.ActorPoolStrategy(min_size=_pool_floor(cfg.num_actors), max_size=cfg.num_actors),
        num_cpus=1,
        # One Rust thread per actor: parallelism comes from the actor pool, and tokenizers' own
        # thread pool would otherwise start one thread per core in every actor.
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}},
    )
    progress = Progress("tokenize", say, total_items=curated_rows(files), item="docs", count="tokens")
    results = []
    for row in packed.iter_rows():  # one row per (split, source) of each batch, as batches finish
        results.append(row)
        progress.add(items=row["documents"], count=row["tokens"])

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


def _pool_floor(num_actors: int) -> int:
    """Actors to start at once: all of them when a CPU stays free for the Parquet reads.

    A pool that takes every CPU starves the read tasks feeding it and waits forever; a pool that
    grows from one actor loses seconds to scaling up, which on a small corpus is most of the run.
    """
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(num_actors, cpus - 1))


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

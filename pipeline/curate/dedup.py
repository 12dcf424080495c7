"""Deduplication through Ray Data: rows are grouped by a key, and each group keeps one survivor.

Exact dedup keys a row by the sha1 of its (normalized, redacted) text; within a group the
row with the smallest (id, source, meta) survives, so the choice never depends on the
order rows arrive in. Other rows become `exact_duplicate` rejects whose meta names the
survivor (`duplicate_of`). Rows rejected by an earlier step get a key of their own and
pass through untouched.

Fuzzy dedup (MinHash LSH) will fit the same shape: a key step that emits one row per
band bucket, the same group-and-pick-a-survivor resolution, then a join of the verdicts.
"""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa

from pipeline.curate.records import KEPT, set_column

KEY = "_dedup_key"


def exact_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def add_exact_key(batch: pa.Table) -> pa.Table:
    """Key kept rows by a hash of their text; rejected rows by their id (groups of their own)."""
    keys = [exact_key(text) if reason == KEPT else f"rejected:{id_}"
            for text, reason, id_ in zip(batch["text"].to_pylist(), batch["reason"].to_pylist(),
                                         batch["id"].to_pylist())]
    return set_column(batch, KEY, keys, pa.string())


def survivor_order(rows: list[dict]) -> list[int]:
    """Indices of `rows` (dicts with id, source, meta), the survivor first: smallest id wins,
    ties (the same id in two sources) broken by source, then by meta."""
    return sorted(range(len(rows)), key=lambda i: (rows[i]["id"], rows[i]["source"], rows[i]["meta"]))


def resolve_exact_group(group: pa.Table) -> pa.Table:
    """One key's rows: all but the survivor among the kept rows become `exact_duplicate` rejects."""
    reasons = group["reason"].to_pylist()
    kept = [i for i, r in enumerate(reasons) if r == KEPT]
    if len(kept) < 2:
        return group
    rows = group.select(["id", "source", "meta"]).to_pylist()
    order = [kept[i] for i in survivor_order([rows[i] for i in kept])]
    survivor = rows[order[0]]["id"]
    metas = group["meta"].to_pylist()
    for i in order[1:]:
        reasons[i] = "exact_duplicate"
        metas[i] = json.dumps({**json.loads(metas[i]), "duplicate_of": survivor},
                              sort_keys=True, ensure_ascii=False)
    group = set_column(group, "reason", reasons, pa.string())
    return set_column(group, "meta", metas, pa.string())


def exact_dedup(ds, num_partitions: int):
    """The exact dedup step over a Ray Dataset: a shuffle by text hash, one survivor per text."""
    from ray.data.context import ShuffleStrategy

    ds = ds.map_batches(add_exact_key, batch_format="pyarrow")
    # The task-based sort shuffle, not Ray's default hash shuffle: that one starts a pool of
    # aggregator actors per run, which costs seconds on a small machine and buys nothing
    # until the data is far larger than one node. (`ds.context` is this pipeline's own copy.)
    ds.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ds = ds.groupby(KEY, num_partitions=num_partitions).map_groups(resolve_exact_group, batch_format="pyarrow")
    return ds.drop_columns([KEY])


def shuffle_partitions(input_bytes: int, cpus: int, bytes_per_partition: int = 64 << 20) -> int:
    """Partitions for the dedup shuffle: one per 64 MB of input, at least 1, at most 2 per CPU
    (each partition is a task to start; a small corpus is fastest in one)."""
    return max(1, min(2 * max(cpus, 1), -(-input_bytes // bytes_per_partition)))

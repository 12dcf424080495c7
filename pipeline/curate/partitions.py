"""Hash-partitioned shuffles for the dedup pass: a row's partition number comes from its key, and
Ray Data brings each partition's rows to one task, which groups them by the real key itself
(with Arrow and numpy) -- so no process holds more than its partition of the rows."""
from __future__ import annotations

import numpy as np

PART = "_part"
_MIX = np.uint64(0x9E3779B97F4A7C15)


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return ((keys.astype(np.uint64) * _MIX) >> np.uint64(40)).astype(np.int64) % partitions


def pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One 64-bit key per (a, b) pair, for partitioning pairs (equal pairs, equal keys)."""
    with np.errstate(over="ignore"):
        return (a.astype(np.uint64) * _MIX) ^ b.astype(np.uint64)


def shuffle_partitions(input_bytes: int, cpus: int, bytes_per_partition: int = 64 << 20) -> int:
    """Partitions for a dedup shuffle: one per 64 MB of input, at least 1, at most 2 per CPU
    (each partition is a task to start; a small corpus is fastest in one)."""
    return max(1, min(2 * max(cpus, 1), -(-input_bytes // bytes_per_partition)))


def grouped(ds, partitions: int):
    """`ds` shuffled by its `_part` column (Ray Data's task-based sort shuffle: the default hash
    shuffle starts a pool of aggregator actors per run, seconds on a small machine)."""
    from ray.data.context import ShuffleStrategy

    ds.context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    return ds.groupby(PART, num_partitions=partitions)

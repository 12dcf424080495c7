"""What each tokenize task reads: the curated shards cut into batches, batches grouped into tasks.

Ray Data's `read_parquet` lists the files in a task, reads their footers in actors it starts for
every read, and ships the text as blocks through the object store to the tokenizers: on a small
machine that is seconds of fixed cost per run before the first token (measured in
bench/RESULTS.md), and a copy of the corpus. The tokenizer needs none of it: the driver reads the
footers once (row counts and sizes, a few KB per file, on threads), cuts every file into
batches, and gives each task a run of consecutive batches of one file; the task reads its rows
straight from the file.

A batch is at most `batch_size` rows and about `batch_bytes` of text, the size estimated per file
from its footer. Batches are fixed by the files and those two settings alone, never by how many
tasks run or which finishes first, so the same corpus always packs into the same shards.
"""
from __future__ import annotations

import bisect
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

COLUMNS = ["id", "text", "source"]

GUIDED_FACTOR = 2
"""Each task takes this fraction, 1 / (GUIDED_FACTOR x concurrency), of the batches not yet
planned (guided self-scheduling, Polychronopoulos and Kuck 1987): tasks shrink toward the end
of a run, so few tasks pay Ray's scheduling gap between tasks and the last ones finish together."""
MAX_BATCHES_PER_TASK = 64
"""A task's output reaches the driver when it ends: long tasks make progress lumpy and a retry
costly."""


@dataclass(frozen=True)
class ShardRows:
    """One curated Parquet file: its path on the filesystem and where its row groups start."""
    path: str
    rows: int
    group_starts: tuple[int, ...]  # first row of each row group, ascending
    text_bytes: int = 0  # the text column's uncompressed size in the footer (0: unknown)

    def batch_rows(self, batch_size: int, batch_bytes: int | None) -> int:
        """Rows per batch in this file: batch_size, fewer where its documents are long."""
        if not batch_bytes or not self.text_bytes or not self.rows:
            return batch_size
        return max(1, min(batch_size, batch_bytes * self.rows // self.text_bytes))

    def groups_for(self, start: int, stop: int) -> range:
        """The row groups holding rows [start, stop)."""
        first = bisect.bisect_right(self.group_starts, start) - 1
        last = bisect.bisect_left(self.group_starts, stop)
        return range(max(first, 0), last)


def read_footers(fs: pafs.FileSystem, paths: list[str], threads: int = 16) -> list[ShardRows]:
    """Row counts and row-group starts of every file, from their footers (no data read).

    On threads: a footer read is a round trip, which is what dominates on an object store."""
    def footer(path: str) -> ShardRows:
        meta = pq.ParquetFile(path, filesystem=fs).metadata
        names = meta.schema.names
        text = names.index("text") if "text" in names else None
        starts, at, text_bytes = [], 0, 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            starts.append(at)
            at += group.num_rows
            if text is not None:
                text_bytes += group.column(text).total_uncompressed_size
        return ShardRows(path, meta.num_rows, tuple(starts), text_bytes)

    with ThreadPoolExecutor(max(1, min(threads, len(paths)))) as pool:
        return list(pool.map(footer, paths))


def plan_tasks(shards: list[ShardRows], batch_size: int, concurrency: int,
               batch_bytes: int | None = None) -> list[dict]:
    """Tasks as `{"path", "rows", "group_starts", "batch_rows", "first", "stop"}`: batches
    first..stop-1 of one shard, batch k holding its rows [k * batch_rows, (k + 1) * batch_rows).

    Which rows make a batch depends on the shard, batch_size and batch_bytes only. How batches
    group into tasks depends on the concurrency too: guided self-scheduling (GUIDED_FACTOR) over
    the files in order, a task never crossing a file's end."""
    per_file = [(s, r, -(-s.rows // r)) for s in shards for r in [s.batch_rows(batch_size, batch_bytes)]]
    remaining = sum(n for _, _, n in per_file)
    tasks = []
    for s, r, n in per_file:
        b = 0
        while b < n:  # at least one batch a task: remaining >= n - b >= 1
            take = min(MAX_BATCHES_PER_TASK, -(-remaining // (GUIDED_FACTOR * concurrency)), n - b)
            tasks.append({"path": s.path, "rows": s.rows, "group_starts": list(s.group_starts), "batch_rows": r,
                          "first": b, "stop": b + take})
            b += take
            remaining -= take
    return tasks


def task_shard(task: dict) -> ShardRows:
    """The shard a task of plan_tasks reads (as a Ray Data row: lists may arrive as arrays)."""
    return ShardRows(str(task["path"]), int(task["rows"]), tuple(int(g) for g in task["group_starts"]))


class RowReader:
    """Rows of one curated file, each row group read once per process while reads move through it.

    A row group can hold more rows than a batch, and the tasks that cut one group into batches
    often run one after another on the same worker process; keeping the groups last read turns
    those into one read instead of one per task."""

    _cache: dict[tuple, pa.Table] = {}  # (path, size, mtime, group) -> rows; this process's
    _lock = threading.Lock()
    CACHE_BYTES = 64 << 20
    """What a worker keeps between tasks, at most (Ray reuses the process for later stages, such
    as training, so the bound stays small); a larger row group is read and not kept."""

    def __init__(self, fs: pafs.FileSystem, shard: ShardRows):
        self.fs, self.shard = fs, shard
        info = fs.get_file_info(shard.path)
        self._version = (shard.path, info.size, info.mtime_ns)
        self._file: pq.ParquetFile | None = None

    def rows(self, start: int, stop: int) -> pa.Table:
        groups = self.shard.groups_for(start, stop)
        if not groups:
            return pa.table({c: pa.array([], pa.string()) for c in COLUMNS})
        table = pa.concat_tables([self._group(g) for g in groups])
        return table.slice(start - self.shard.group_starts[groups[0]], stop - start)

    def _group(self, g: int) -> pa.Table:
        key = (*self._version, g)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        if self._file is None:
            self._file = pq.ParquetFile(self.shard.path, filesystem=self.fs)
        table = self._file.read_row_group(g, columns=COLUMNS)
        if table.nbytes <= self.CACHE_BYTES:
            with self._lock:
                cache = self._cache
                cache[key] = table
                while sum(t.nbytes for t in cache.values()) > self.CACHE_BYTES:
                    del cache[next(iter(cache))]  # oldest first
        return table

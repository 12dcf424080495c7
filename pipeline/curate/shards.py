"""Shards: the unit of work, of parallelism and of resumption (DataTrove's rank model).

The driver cuts each source's files into shards of about `curate.shards.target_bytes` (whole
files, in path order: the plan depends on the data only). One Ray task per shard then

  1. (`clean_shard`) streams the shard's files through the readers and every per-document step
     in batches, and writes all its rows, kept and rejected, with their dedup keys, to
     `work/clean/shard-NNNNN.parquet`;
  2. (`finish_shard`, after the dedup pass) applies the dedup verdicts and the mixture weight,
     and writes the curated part files and the rejects.

Each output is written to a temporary name and renamed when complete, so a shard's file
exists if and only if the shard is done; a rerun after a crash skips those shards.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.config import SourceConfig
from pipeline.config.curate import CurateConfig
from pipeline.curate.readers import read_files
from pipeline.curate.records import KEPT, OUTPUT_COLUMNS, REJECT_COLUMNS, set_column, with_meta
from pipeline.curate.report import Tally, mark_step
from pipeline.curate.sources import SourceFiles
from pipeline.curate.split import mark_born
from pipeline.storage import StoragePath, atomic_write, read_table, write_text

UID = "_uid"
"""A row's number in the clean pass: shard index << 32 | row within the shard (unique, compact)."""


@dataclass(frozen=True)
class ShardSpec:
    index: int
    source: SourceConfig
    filesystem: pafs.FileSystem
    base: str
    files: tuple[tuple[str, int], ...]
    mtimes: tuple[float, ...] = ()

    @property
    def input_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def fingerprint(self) -> dict:
        return {"source": self.source.model_dump(mode="json"), "files": [list(f) for f in self.files],
                "mtimes": list(self.mtimes)}


def plan_shards(sources: list[SourceConfig], files: list[SourceFiles], target_bytes: int,
                min_shards: int) -> list[ShardSpec]:
    """Each source's files, in path order, packed into shards of about `target` bytes, where
    target = min(target_bytes, total / min_shards): never cutting a file, never mixing sources."""
    total = sum(sum(f.sizes) for f in files)
    target = max(1, min(target_bytes, -(-total // min_shards)))
    specs: list[ShardSpec] = []
    for src, f in zip(sources, files):
        mtimes = f.mtimes or [0.0] * len(f.paths)
        group: list[tuple[str, int, float]] = []
        size = 0
        for path, nbytes, mtime in zip(f.paths, f.sizes, mtimes):
            if group and size + nbytes > target:
                specs.append(_spec(len(specs), src, f, group))
                group, size = [], 0
            group.append((path, nbytes, mtime))
            size += nbytes
        if group:
            specs.append(_spec(len(specs), src, f, group))
    return specs


def _spec(index: int, src: SourceConfig, f: SourceFiles, group: list) -> ShardSpec:
    return ShardSpec(index, src, f.filesystem, f.base, tuple((p, s) for p, s, _ in group),
                     tuple(m for _, _, m in group))


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def write_atomically(table_batches, path: StoragePath, schema_hint: pa.Schema | None = None) -> int:
    """Write batches to `path` through a temporary file moved into place at the end; returns rows written."""
    writer, rows = None, 0
    with atomic_write(path) as f:
        for batch in table_batches:
            if writer is None:
                writer = pq.ParquetWriter(f, batch.schema, compression="zstd")
            writer.write_table(batch)
            rows += len(batch)
        if writer is None:
            writer = pq.ParquetWriter(f, schema_hint or pa.schema([]), compression="zstd")
        writer.close()
    return rows


# ---------------------------------------------------------------- 1. clean


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn: Callable, *args):
        start = time.process_time()
        out = fn(*args)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.process_time() - start
        return out


def clean_shard(spec: ShardSpec, cfg: CurateConfig, steps: list[tuple[str, Callable]], keys: Callable,
                out: StoragePath) -> dict:
    """Read one shard, run the per-document steps (each then counted for the report) and the dedup
    key step, write every row to `out`; returns a summary (rows, CPU seconds per step)."""
    timer = Timer()
    offset = spec.index << 32

    def batches():
        nonlocal offset
        reader = read_files(spec.source, spec.filesystem, spec.base, list(spec.files), cfg.read)
        while True:
            batch = timer.run("read", next, reader, None)
            if batch is None:
                return
            batch = mark_step(batch, "read")
            for name, step in steps:
                batch = mark_step(timer.run(name, step, batch), name)
            batch = timer.run("dedup_keys", keys, batch)
            batch = set_column(batch, UID, pa.array(np.arange(offset, offset + len(batch), dtype=np.int64)))
            offset += len(batch)
            yield batch

    rows = write_atomically(batches(), out)
    return {"shard": spec.index, "rows": rows, "seconds": timer.seconds}


# ---------------------------------------------------------------- 3. finish


def mixture_copies(ids: list[str], locs: list[str], weight: float, seed: str) -> list[int]:
    """How many times each kept row appears in the output for a mixture weight: int(w), plus one
    for a deterministic (w - int(w)) share chosen by a hash of the row (0 means downsampled)."""
    whole, frac = int(weight), weight - int(weight)
    out = []
    for id_, loc in zip(ids, locs):
        h = int.from_bytes(hashlib.blake2b(f"{seed}\n{id_}\n{loc}".encode(), digest_size=8).digest(), "big") / 2**64
        out.append(whole + (1 if h < frac else 0))
    return out


def apply_verdicts(batch: pa.Table, verdicts: pa.Table | None, reason: str) -> pa.Table:
    """Rows whose uid has a verdict become `reason` rejects with meta `duplicate_of`."""
    if verdicts is None or len(verdicts) == 0:
        return batch
    found = pc.index_in(batch[UID], value_set=verdicts[UID]).to_pylist()
    dup_of = verdicts["duplicate_of"].to_pylist()
    reasons, metas = batch["reason"].to_pylist(), batch["meta"].to_pylist()
    for i, j in enumerate(found):
        if j is not None and reasons[i] == KEPT:
            reasons[i] = reason
            metas[i] = with_meta(metas[i], duplicate_of=dup_of[j])
    batch = set_column(batch, "reason", reasons, pa.string())
    return set_column(batch, "meta", metas, pa.string())


def apply_mixture(batch: pa.Table, weight: float) -> pa.Table:
    """Up- or down-sample the kept rows of one source (copies keep their id; meta `copy` numbers them)."""
    if weight == 1.0:
        return batch
    kept = pc.equal(batch["reason"], KEPT).to_pylist()
    counts = mixture_copies(batch["id"].to_pylist(), batch["_loc"].to_pylist(), weight, "mixture")
    reasons = [("downsampled" if k and c == 0 else r) for r, k, c in zip(batch["reason"].to_pylist(), kept, counts)]
    batch = set_column(batch, "reason", reasons, pa.string())
    take, copy = [], []
    for i, (k, c) in enumerate(zip(kept, counts)):
        take.append(i)
        copy.append(0)
        if k:
            for n in range(1, c):
                take.append(i)
                copy.append(n)
    if len(take) == len(batch):
        return batch
    out = batch.take(pa.array(take, pa.int64()))
    metas, locs = out["meta"].to_pylist(), out["_loc"].to_pylist()
    out = set_column(out, "meta", [with_meta(m, copy=c) if c else m for m, c in zip(metas, copy)], pa.string())
    out = set_column(out, "_loc", [f"{loc}~{c}" if c else loc for loc, c in zip(locs, copy)], pa.string())
    return mark_born(out, pa.array([c == 0 for c in copy]), "mixture")


DEDUP_REASONS = {"exact_dedup": "exact_duplicate", "fuzzy_dedup": "near_duplicate"}

SORT_KEYS = [("id", "ascending"), ("source", "ascending"), ("_loc", "ascending")]
"""Row order in the part files: by id; source and locator break ties between equal ids."""


def finish_shard(spec: ShardSpec, clean: StoragePath, verdicts: dict[str, pa.Table | None], dedup_steps: list[str],
                 out_dir: StoragePath, rows_per_file: int, tally_path: StoragePath) -> dict:
    """Apply the dedup verdicts and the mixture weight to one clean shard and write its part files
    (`part-NNNNN-KKK.parquet`) and rejects; the tally file, written last, marks the shard done."""
    start = time.process_time()
    table = read_table(clean)
    for step in dedup_steps:
        table = mark_step(apply_verdicts(table, verdicts.get(step), DEDUP_REASONS[step]), step)
    table = mark_step(apply_mixture(table, spec.source.curate_weight), "mixture")
    steps = [c[len("_bytes_"):] for c in table.column_names if c.startswith("_bytes_")]
    tally = Tally(steps)
    tally.add(table)
    table = table.sort_by(SORT_KEYS)
    keep = pc.equal(table["reason"], KEPT)
    written = {}
    for name, rows, columns, folder in (("output", table.filter(keep), OUTPUT_COLUMNS, out_dir),
                                        ("rejects", table.filter(pc.invert(keep)), REJECT_COLUMNS,
                                         out_dir / "rejects")):
        written[name] = write_parts(rows.select(list(columns)), folder, spec.index, rows_per_file)
    summary = {"shard": spec.index, "tally": tally.to_json(), "written": written,
               "seconds": {"finish": time.process_time() - start}}
    write_text(tally_path, json.dumps(summary))
    return summary


def write_parts(table: pa.Table, folder: StoragePath, shard: int, rows_per_file: int) -> dict:
    """`table` as `part-<shard>-<k>.parquet` files of at most `rows_per_file` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {"files": 0, "docs": 0, "bytes": 0, "file_bytes": 0}
    for k, start in enumerate(range(0, len(table), rows_per_file)):
        part = table.slice(start, rows_per_file)
        path = folder / f"part-{shard:05d}-{k:03d}.parquet"
        write_atomically([part], path)
        out["files"] += 1
        out["docs"] += len(part)
        out["bytes"] += int(pc.sum(pc.binary_length(part["text"])).as_py() or 0)
        out["file_bytes"] += path.stat().st_size
    return out

"""Writing curated rows: fixed-size Parquet shards, and the swap that puts a finished output in place."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.curate.records import text_bytes

SORT_KEYS = [("id", "ascending"), ("source", "ascending"), ("meta", "ascending")]
"""Row order in the shards: by id; source and meta (path, line) break ties between equal ids."""


def write_shards(tables: list[pa.Table], folder: Path, rows_per_shard: int) -> dict:
    """Sort the rows and write them as `part-00000.parquet`, `part-00001.parquet`, ... of exactly
    `rows_per_shard` rows (the last one fewer): the same rows always give the same files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = [t for t in tables if len(t)]
    out = {"path": str(folder), "shards": 0, "docs": 0, "bytes": 0, "file_bytes": 0}
    if not tables:
        return out
    table = pa.concat_tables(tables).sort_by(SORT_KEYS)
    for start in range(0, len(table), rows_per_shard):
        shard = table.slice(start, rows_per_shard).combine_chunks()
        path = folder / f"part-{out['shards']:05d}.parquet"
        pq.write_table(shard, path, compression="zstd")
        out["shards"] += 1
        out["docs"] += len(shard)
        out["bytes"] += int(pc.sum(text_bytes(shard)).as_py() or 0)
        out["file_bytes"] += path.stat().st_size
    return out


def staging_dir(dest: Path) -> Path:
    """An empty sibling folder to build `dest` in (a leftover from a killed run is cleared)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished `tmp` at `dest`, replacing what was there: two renames, so readers never
    see a mix of old and new shards."""
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)

"""Packed token shards read back: rows across shards, batches per source, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.packed import Manifest, PackedSplit

SEQ_LEN = 8


def write_split(folder, sources: dict[str, list[int]], pad_id: int = 1) -> dict[str, np.ndarray]:
    """A val split packed per source (as the tokenize stage writes it): each source's rows in one
    or more shards (the list gives each shard's rows); every row is filled with a distinct value."""
    data, by_source, files, value = {}, {}, [], 10
    for name, shard_rows in sources.items():
        rows_of_source, source_files = [], []
        for k, n in enumerate(shard_rows):
            rows = np.arange(value, value + n)[:, None].repeat(SEQ_LEN + 1, axis=1).astype(np.int32)
            value += n
            rel = f"val/{name}/shard-{k}.npy"
            (folder / "val" / name).mkdir(parents=True, exist_ok=True)
            np.save(folder / rel, rows)
            rows_of_source.append(rows)
            source_files.append(rel)
        data[name] = np.concatenate(rows_of_source)
        by_source[name] = {"files": source_files, "rows": int(sum(shard_rows)), "tokens": 0, "documents": 1}
        files += source_files
    Manifest(seq_len=SEQ_LEN, dtype="int32", eot_id=0, pad_id=pad_id, tokenizer_fingerprint="test",
             splits={"val": {"files": files, "rows": sum(len(d) for d in data.values()), "tokens": 0,
                             "documents": len(data), "sources": by_source}}).write(folder)
    return data


def test_source_batches_read_each_source_in_order_across_its_shards(tmp_path):
    data = write_split(tmp_path, {"web": [2, 3], "code": [2]})
    split = PackedSplit(tmp_path, "val")
    got = {s: [b[:, 0].tolist() for b in batches] for s, batches in split.source_batches(2).items()}
    assert got == {"web": [[10, 11], [12, 13], [14]], "code": [[15, 16]]}
    assert all(b.dtype == np.int64 for b in split.source_batches(2)["web"])
    assert np.array_equal(np.concatenate(list(split.batches(10))), np.concatenate([data["web"], data["code"]]))


def test_max_batches_caps_each_source_not_the_split(tmp_path):
    write_split(tmp_path, {"web": [3], "code": [2]})
    capped = PackedSplit(tmp_path, "val").source_batches(2, max_batches=1)
    assert {s: sum(len(b) for b in batches) for s, batches in capped.items()} == {"web": 2, "code": 2}
    assert sum(1 for _ in PackedSplit(tmp_path, "val").batches(2, max_batches=1)) == 1


def test_a_missing_split_names_the_ones_there_and_a_missing_manifest_says_what_to_run(tmp_path):
    write_split(tmp_path, {"web": [1]})
    with pytest.raises(KeyError, match="val"):
        PackedSplit(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="ownlm tokenize"):
        PackedSplit(tmp_path / "nowhere", "val")

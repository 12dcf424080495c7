"""Dedup grouping: pairs from key partitions, connected components, survivors."""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def key_group(rows):
    from pipeline.curate.dedup import _key_rows

    exact = [r for r in rows if r[0] == "exact"]
    tables = []
    if exact:
        extra = pa.table({"id": [r[3] for r in exact], "source": ["s"] * len(exact), "_loc": [r[3] for r in exact],
                          "_exact": pa.array([r[1].to_bytes(16, "little") for r in exact], pa.binary(16))})
        tables.append(_key_rows(np.array([r[1] for r in exact], np.uint64), np.array([r[2] for r in exact]), 4,
                                "exact", extra))
    band = [r for r in rows if r[0] == "band"]
    if band:
        tables.append(_key_rows(np.array([r[1] for r in band], np.uint64), np.array([r[2] for r in band]), 4,
                                "band", None))
    return pa.concat_tables(tables)


def test_one_partition_yields_exact_and_bucket_pairs():
    from pipeline.curate.dedup import resolve_partition

    group = key_group([("exact", 7, 30, "doc-c"), ("exact", 7, 10, "doc-b"), ("exact", 7, 20, "doc-a"),
                       ("exact", 8, 40, "doc-d"),
                       ("band", 99, 5, None), ("band", 99, 3, None), ("band", 99, 9, None), ("band", 98, 1, None)])
    out = resolve_partition(group).to_pylist()
    exact = sorted((r["a"], r["b"], r["duplicate_of"], r["size"]) for r in out if r["_kind"] == "exact")
    assert exact == [(20, 10, "doc-a", 3), (20, 30, "doc-a", 3)]  # the smallest id survives, not the first row
    assert sorted((r["a"], r["b"]) for r in out if r["_kind"] == "band") == [(3, 5), (3, 9)]


def test_components_and_survivors():
    from pipeline.curate.dedup import _unique_pairs, components

    roots = components(np.array([1, 2, 10]), np.array([2, 3, 11]))
    assert roots == {1: 1, 2: 1, 3: 1, 10: 10, 11: 10}
    a, b = _unique_pairs([2, 1, 3, 5], [1, 2, 3, 4])
    assert a.tolist() == [1, 4] and b.tolist() == [2, 5]

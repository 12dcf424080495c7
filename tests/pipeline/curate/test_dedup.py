"""Dedup grouping, one partition at a time (as the Ray tasks run it): exact groups, LSH buckets,
distinct scored pairs, cluster survivors."""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def test_exact_group_leaves_the_smallest_id_not_the_first_row():
    from pipeline.curate.dedup import exact_verdicts

    digest = [b"7" * 16, b"7" * 16, b"7" * 16, b"8" * 16]
    rows = pa.table({"_uid": [30, 10, 20, 40], "id": ["doc-c", "doc-b", "doc-a", "doc-d"], "source": ["s"] * 4,
                     "_loc": ["x"] * 4, "_exact": pa.array(digest, pa.binary(16))})
    out = sorted((r["_uid"], r["duplicate_of"], r["size"]) for r in exact_verdicts(rows).to_pylist())
    assert out == [(10, "doc-a", 3), (30, "doc-a", 3)]


def test_bucket_yields_a_star_from_its_smallest_uid():
    from pipeline.curate.dedup import bucket_pairs

    rows = pa.table({"_key": pa.array([99, 99, 99, 98, 97, 97], pa.uint64()), "_uid": [5, 3, 9, 1, 4, 4]})
    assert sorted(zip(*bucket_pairs(rows).to_pydict().values())) == [(3, 5), (3, 9)]  # no self pair for 4


def test_scored_pairs_are_distinct_and_verified_by_true_jaccard():
    from pipeline.curate.dedup import score_pairs
    from pipeline.curate.minhash import jaccard

    s1, s2, s3 = np.arange(10, dtype=np.uint64), np.arange(1, 11, dtype=np.uint64), np.arange(5, 15, dtype=np.uint64)
    group = pa.table({"a": [1, 1, 1, 1], "b": [2, 3, 2, 3],
                      "_shingles": pa.array([s1.tolist(), s1.tolist(), s2.tolist(), s3.tolist()],
                                            pa.list_(pa.uint64()))})
    out = score_pairs(group, threshold=0.8, verify=True).to_pylist()
    assert jaccard(s1, s2) > 0.8 > jaccard(s1, s3)
    assert [(r["a"], r["b"], r["_ok"]) for r in out] == [(1, 2, True), (1, 3, False)]
    unverified = score_pairs(pa.table({"a": [1, 1, 2], "b": [2, 2, 3]}), threshold=0.8, verify=False)
    assert unverified.to_pydict() == {"a": [1, 2], "b": [2, 3], "_ok": [True, True]}


def test_cluster_survivor_is_the_smallest_id_source_locator():
    from pipeline.curate.dedup import cluster_verdicts

    rows = pa.table({"_uid": [7, 3, 5, 8, 9], "id": ["b", "c", "a", "z", "z"], "source": ["s", "s", "s", "t", "s"],
                     "_loc": ["1", "2", "3", "1", "1"], "root": [3, 3, 3, 8, 8]})
    out = sorted((r["_uid"], r["duplicate_of"], r["size"]) for r in cluster_verdicts(rows).to_pylist())
    assert out == [(3, "a", 3), (7, "a", 3), (8, "z", 2)]  # 9 (source s) beats 8 (source t)

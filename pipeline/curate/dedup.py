"""Deduplication through Ray: exact and MinHash LSH, on small key rows, never on the texts.

The clean pass left, for every kept document, a 128-bit digest of its text and its LSH band
keys. This pass reads only those keys (plus id, source and locator, which pick survivors):

1. exact: rows are grouped by digest; in each group the row with the smallest (id, source,
   locator) survives and the others become `exact_duplicate` with `duplicate_of` its id.
2. candidates, over the exact survivors only (an exact duplicate has its survivor's band keys,
   so it joins the same clusters): one row per band, grouped by band key; a bucket with several
   documents yields candidate pairs (each member with the bucket's smallest uid).
3. verify: the two ends of each pair go to the task of their shard, which reads the texts of
   just its candidate documents and computes their shingles; the ends then meet by pair, which
   gives each distinct pair once with its true Jaccard similarity. Pairs below the threshold
   are dropped (the LSH false positives).
4. clusters: the connected components of the pairs (components.py): large-star / small-star
   rounds on Ray Data, or scipy on the driver at most `driver_components_max_pairs` pairs.
5. survivors: every member of a cluster meets its survivor-order columns at its shard's task,
   then its cluster at the root's; the smallest (id, source, locator) survives and the others
   become `near_duplicate`.

Every grouping is a Ray Data shuffle on a coarse partition number derived from the key (see
partitions.py); verdicts are written by Ray Data, partitioned by shard, and each finish task
reads its own shard's. So no process holds the index, the pairs or the verdicts: the driver
receives counts (pairs, changed edges per components round, cluster sizes per block).
"""
from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config.curate import DedupConfig, FuzzyDedupConfig
from pipeline.curate.components import NODE, ROOT, find_components
from pipeline.curate.minhash import BANDS_COLUMN, EXACT_COLUMN, batch_shingles, jaccard, lsh_params
from pipeline.curate.partitions import PART, grouped, pair_key, partition_of
from pipeline.curate.records import KEPT
from pipeline.curate.shards import UID, shard_name

ORDER = ["id", "source", "_loc"]
"""Survivor order: the smallest id wins; source and locator break ties."""
SHARD = "_shard"
"""Verdict files are partitioned by this column (the shard index: a uid's upper 32 bits)."""
A, B = "a", "b"


@dataclass
class DedupResult:
    verdicts: dict[str, Path] = field(default_factory=dict)
    """Per dedup step (`exact_dedup`, `fuzzy_dedup`), the folder of its verdict files (uid and
    duplicate_of, an id), one sub-folder per shard that has any (`shard_verdicts` reads one)."""
    stats: dict = field(default_factory=dict)


def shard_verdicts(folder: Path, shard: int) -> pa.Table | None:
    """The verdicts of one shard's rows (uid, duplicate_of), or None when it has none."""
    import pyarrow.parquet as pq

    part = Path(folder) / f"{SHARD}={shard}"
    return pq.read_table(part, columns=[UID, "duplicate_of"]) if part.exists() else None


def shard_of(uids: np.ndarray) -> np.ndarray:
    return uids >> 32


def shard_dataset(files: dict[int, str], fn):
    """A Ray Dataset running `fn` over each clean shard (one task per shard)."""
    import ray

    shards = sorted(files)
    return ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards)) \
        .map_batches(fn, batch_size=1, batch_format="pyarrow")


def read_documents(files: dict[int, str], uids: np.ndarray, columns: list[str]) -> pa.Table:
    """The given columns (and uid) of the kept documents `uids`, read from their clean shards."""
    import pyarrow.parquet as pq

    out = []
    for shard in np.unique(shard_of(uids)).tolist():
        table = pq.read_table(files[shard], columns=[UID] + columns)
        out.append(table.filter(pc.is_in(table[UID], value_set=pa.array(uids, pa.int64()))))
    return pa.concat_tables(out) if out else None


def _runs(same_as_previous: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For sorted rows, each row's first row of its run and the run's length."""
    starts = np.flatnonzero(np.concatenate([[True], ~same_as_previous])) if n else np.zeros(0, np.int64)
    counts = np.diff(np.concatenate([starts, [n]]))
    return np.repeat(starts, counts), np.repeat(counts, counts)


def _verdicts(uids, dup_of, size) -> pa.Table:
    return pa.table({UID: pa.array(uids, pa.int64()), "duplicate_of": pa.array(dup_of, pa.string()),
                     "size": pa.array(size, pa.int64())})


def group_verdicts(rows: pa.Table, key: str) -> pa.Table:
    """Rows sorted by `key` then the survivor order: in each run of equal keys the first survives,
    every other row becomes a verdict (uid, duplicate_of its id, size of the run)."""
    rows = rows.sort_by([(key, "ascending")] + [(c, "ascending") for c in ORDER])
    n = len(rows)
    keys = rows[key]
    same = pc.equal(keys.slice(1), keys.slice(0, max(n - 1, 0))).to_numpy(zero_copy_only=False) if n > 1 \
        else np.zeros(0, bool)
    first, size = _runs(same, n)
    dup = np.arange(n) != first
    return _verdicts(rows[UID].to_numpy()[dup], rows["id"].take(pa.array(first[dup], pa.int64())), size[dup])


def write_verdicts(verdicts, folder: Path) -> dict:
    """Write the verdict rows (uid, duplicate_of, size) under `folder`, partitioned by shard; returns
    the number of duplicates and the histogram of cluster sizes (a cluster of k has k - 1 verdicts)."""
    verdicts = verdicts.materialize()
    counts: Counter = Counter()
    per_block = verdicts.map_batches(_size_counts, batch_format="pyarrow", batch_size=None)
    for row in per_block.iter_rows():
        counts[row["size"]] += row["rows"]
    shutil.rmtree(folder, ignore_errors=True)  # a killed run's partial files
    if sum(counts.values()):
        verdicts.map_batches(_with_shard, batch_format="pyarrow").write_parquet(str(folder), partition_cols=[SHARD])
    return {"duplicates": sum(counts.values()),
            "clusters": {str(k): v // (k - 1) for k, v in sorted(counts.items())}}


def _size_counts(t: pa.Table) -> pa.Table:
    sizes, rows = np.unique(t["size"].to_numpy(), return_counts=True)
    return pa.table({"size": pa.array(sizes, pa.int64()), "rows": pa.array(rows, pa.int64())})


def _with_shard(t: pa.Table) -> pa.Table:
    return pa.table({UID: t[UID], "duplicate_of": t["duplicate_of"],
                     SHARD: pa.array(shard_of(t[UID].to_numpy()), pa.int64())})


# ---------------------------------------------------------------- 1. exact


@dataclass(frozen=True)
class ExactRows:
    """For the shards named in a batch: one row per kept document, keyed by its digest."""

    files: dict[int, str]
    partitions: int

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.parquet as pq

        out = []
        for shard in batch["shard"].to_pylist():
            table = pq.read_table(self.files[shard], columns=[UID, "reason"] + ORDER + [EXACT_COLUMN])
            table = table.filter(pc.equal(table["reason"], KEPT)).select([UID] + ORDER + [EXACT_COLUMN])
            key = np.array([int.from_bytes(d[:8], "little") for d in table[EXACT_COLUMN].to_pylist()], np.uint64)
            out.append(table.append_column(PART, pa.array(partition_of(key, self.partitions))))
        return pa.concat_tables(out)


def exact_verdicts(group: pa.Table) -> pa.Table:
    """One partition's digest rows: per digest, every row after the smallest (id, source, locator)."""
    return group_verdicts(group, EXACT_COLUMN)


# ---------------------------------------------------------------- 2. candidates: LSH buckets


@dataclass(frozen=True)
class BandRows:
    """For the shards named in a batch: one row per band of each kept document that is no exact
    duplicate (those are in `exact`, the exact verdict folder), keyed by the band key."""

    files: dict[int, str]
    partitions: int
    exact: Path | None

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow.parquet as pq

        out = []
        for shard in batch["shard"].to_pylist():
            table = pq.read_table(self.files[shard], columns=[UID, "reason", BANDS_COLUMN])
            keep = pc.equal(table["reason"], KEPT)
            dups = shard_verdicts(self.exact, shard) if self.exact is not None else None
            if dups is not None:
                keep = pc.and_(keep, pc.invert(pc.is_in(table[UID], value_set=dups[UID])))
            table = table.filter(keep)
            bands = table[BANDS_COLUMN]
            key = pc.list_flatten(bands).to_numpy(zero_copy_only=False)
            owner = pc.list_parent_indices(bands).to_numpy(zero_copy_only=False)
            out.append(pa.table({"_key": pa.array(key, pa.uint64()),
                                 UID: pa.array(table[UID].to_numpy()[owner], pa.int64()),
                                 PART: pa.array(partition_of(key, self.partitions))}))
        return pa.concat_tables(out)


def _pairs(a, b) -> pa.Table:
    return pa.table({A: pa.array(a, pa.int64()), B: pa.array(b, pa.int64())})


def bucket_pairs(rows: pa.Table) -> pa.Table:
    """For each band key held by 2+ documents, a pair (first, other) per other member (first =
    the smallest uid): a star over the bucket, enough for connected components."""
    keys = rows["_key"].to_numpy(zero_copy_only=False)
    uids = rows[UID].to_numpy(zero_copy_only=False)
    order = np.lexsort((uids, keys))
    keys, uids = keys[order], uids[order]
    run_of, _ = _runs(keys[1:] == keys[:-1], len(keys))
    other = (np.arange(len(keys)) != run_of) & (uids[run_of] != uids)
    return _pairs(uids[run_of[other]], uids[other])


# ---------------------------------------------------------------- 3. verify: distinct pairs and their similarity


@dataclass(frozen=True)
class PairEnds:
    """Pairs (a, b) -> one row per end (uid, a, b), keyed by the end's shard."""

    partitions: int

    def __call__(self, pairs: pa.Table) -> pa.Table:
        a, b = pairs[A].to_numpy(), pairs[B].to_numpy()
        uid = np.concatenate([a, b])
        return pa.table({UID: pa.array(uid, pa.int64()), A: pa.array(np.concatenate([a, a]), pa.int64()),
                         B: pa.array(np.concatenate([b, b]), pa.int64()),
                         PART: pa.array(partition_of(shard_of(uid), self.partitions))})


def attach_shingles(group: pa.Table, files: dict[int, str], shingle_words: int, partitions: int) -> pa.Table:
    """One shard partition's pair ends, distinct: each gets the shingle set of its document (read
    from the clean shard, computed once per document) and is keyed by its pair."""
    ends = np.unique(np.stack([group[UID].to_numpy(), group[A].to_numpy(), group[B].to_numpy()], axis=1), axis=0)
    uid, a, b = ends[:, 0], ends[:, 1], ends[:, 2]
    docs = read_documents(files, np.unique(uid), ["text"])
    shingles = pa.array([s.tolist() for s in batch_shingles(docs["text"].to_pylist(), shingle_words)],
                        pa.list_(pa.uint64()))
    where = pc.index_in(pa.array(uid, pa.int64()), value_set=docs[UID])
    return pa.table({A: pa.array(a, pa.int64()), B: pa.array(b, pa.int64()), "_shingles": shingles.take(where),
                     PART: pa.array(partition_of(pair_key(a, b), partitions))})


@dataclass(frozen=True)
class PairRows:
    """Pairs keyed by the pair itself (unverified candidates meet their duplicates)."""

    partitions: int

    def __call__(self, pairs: pa.Table) -> pa.Table:
        a, b = pairs[A].to_numpy(), pairs[B].to_numpy()
        return pairs.select([A, B]).append_column(PART, pa.array(partition_of(pair_key(a, b), self.partitions)))


def score_pairs(group: pa.Table, threshold: float, verify: bool) -> pa.Table:
    """One pair partition: each distinct pair once, with `_ok` (its true Jaccard similarity is at
    least `threshold`; always true unverified)."""
    a, b = group[A].to_numpy(), group[B].to_numpy()
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    if not verify:
        distinct = np.concatenate([[True], (a[1:] != a[:-1]) | (b[1:] != b[:-1])]) if len(a) else np.zeros(0, bool)
        return pa.table({A: pa.array(a[distinct], pa.int64()), B: pa.array(b[distinct], pa.int64()),
                         "_ok": pa.array(np.ones(int(distinct.sum()), bool))})
    # Verified: every distinct pair has exactly two rows here, one per end.
    assert len(a) % 2 == 0 and np.array_equal(a[::2], a[1::2]) and np.array_equal(b[::2], b[1::2])
    shingles = group["_shingles"].take(pa.array(order, pa.int64()))
    ok = [jaccard(shingles[i].values.to_numpy(zero_copy_only=False),
                  shingles[i + 1].values.to_numpy(zero_copy_only=False)) >= threshold
          for i in range(0, len(a), 2)]
    return pa.table({A: pa.array(a[::2], pa.int64()), B: pa.array(b[::2], pa.int64()),
                     "_ok": pa.array(ok, pa.bool_())})


def scored_pairs(pairs, files: dict[int, str], f: FuzzyDedupConfig, partitions: int):
    """The distinct candidate pairs (a, b, _ok), materialized."""
    if f.verify:
        ends = grouped(pairs.map_batches(PairEnds(partitions), batch_format="pyarrow"), partitions) \
            .map_groups(attach_shingles, batch_format="pyarrow",
                        fn_kwargs={"files": files, "shingle_words": f.shingle_words, "partitions": partitions})
    else:
        ends = pairs.map_batches(PairRows(partitions), batch_format="pyarrow")
    return grouped(ends, partitions).map_groups(score_pairs, batch_format="pyarrow",
                                                fn_kwargs={"threshold": f.threshold, "verify": f.verify}) \
        .materialize()


# ---------------------------------------------------------------- 5. survivors


@dataclass(frozen=True)
class MemberRows:
    """Labels (node, root) -> rows (uid, root) for every node and every root, keyed by the uid's shard."""

    partitions: int

    def __call__(self, labels: pa.Table) -> pa.Table:
        node, root = labels[NODE].to_numpy(), labels[ROOT].to_numpy()
        uid = np.concatenate([node, root])
        return pa.table({UID: pa.array(uid, pa.int64()), ROOT: pa.array(np.concatenate([root, root]), pa.int64()),
                         PART: pa.array(partition_of(shard_of(uid), self.partitions))})


def attach_order(group: pa.Table, files: dict[int, str], partitions: int) -> pa.Table:
    """One shard partition's cluster members, distinct, with their survivor-order columns, keyed by
    their cluster's root."""
    members = np.unique(np.stack([group[UID].to_numpy(), group[ROOT].to_numpy()], axis=1), axis=0)
    docs = read_documents(files, members[:, 0], ORDER)
    where = pc.index_in(pa.array(members[:, 0], pa.int64()), value_set=docs[UID])
    return docs.take(where).append_column(ROOT, pa.array(members[:, 1], pa.int64())) \
        .append_column(PART, pa.array(partition_of(members[:, 1], partitions)))


def cluster_verdicts(group: pa.Table) -> pa.Table:
    """One root partition's members: per cluster, every member after the smallest (id, source, locator)."""
    return group_verdicts(group, ROOT)


# ---------------------------------------------------------------- the pass


def find_duplicates(clean_files: dict[int, str], cfg: DedupConfig, partitions: int, out_dir: Path) -> DedupResult:
    """The dedup pass over the clean shards (`{shard index: path}`): verdicts written under
    `out_dir` (one folder per step) and statistics."""
    result = DedupResult()
    exact_dir = None
    if cfg.exact:
        exact_dir = Path(out_dir) / "exact_dedup"
        keys = shard_dataset(clean_files, ExactRows(clean_files, partitions))
        result.stats["exact"] = write_verdicts(
            grouped(keys, partitions).map_groups(exact_verdicts, batch_format="pyarrow"), exact_dir)
        result.verdicts["exact_dedup"] = exact_dir
    if cfg.fuzzy.enabled:
        fuzzy_dir = Path(out_dir) / "fuzzy_dedup"
        result.stats["fuzzy"] = near_duplicates(clean_files, cfg.fuzzy, partitions, exact_dir, fuzzy_dir)
        result.verdicts["fuzzy_dedup"] = fuzzy_dir
    return result


def near_duplicates(files: dict[int, str], f: FuzzyDedupConfig, partitions: int, exact_dir: Path | None,
                    out: Path) -> dict:
    """Steps 2 to 5 (see the module docstring): verdicts written under `out`; returns the statistics."""
    bands, rows = lsh_params(f.threshold, f.num_perm, f.false_positive_weight)
    stats: dict = {"threshold": f.threshold, "num_perm": f.num_perm, "bands": bands, "rows": rows,
                   "shingle_words": f.shingle_words}
    band_rows = shard_dataset(files, BandRows(files, partitions, exact_dir))
    pairs = grouped(band_rows, partitions).map_groups(bucket_pairs, batch_format="pyarrow")
    scored = scored_pairs(pairs, files, f, partitions)
    stats["candidate_pairs"] = scored.count()
    edges = scored
    if f.verify:
        edges = scored.map_batches(lambda t: t.filter(t["_ok"]), batch_format="pyarrow").materialize()
        stats["verified_pairs"] = edges.count()
    labels, run = find_components(edges.select_columns([A, B]), partitions, f.driver_components_max_pairs)
    stats["components"] = run.to_json()
    members = grouped(labels.map_batches(MemberRows(partitions), batch_format="pyarrow"), partitions) \
        .map_groups(attach_order, batch_format="pyarrow", fn_kwargs={"files": files, "partitions": partitions})
    stats.update(write_verdicts(grouped(members, partitions).map_groups(cluster_verdicts, batch_format="pyarrow"), out))
    return stats


def clean_paths(folder: Path, indices: list[int]) -> dict[int, str]:
    return {i: str(folder / f"{shard_name(i)}.parquet") for i in indices}

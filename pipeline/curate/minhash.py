"""MinHash signatures and LSH band keys for fuzzy deduplication (Broder 1997; Leskovec et al.,
"Mining of Massive Datasets", chapter 3).

A document's shingles are its word n-grams (lowercased words, `shingle_words` at a time).
The signature is datasketch's MinHash over those shingles (hashed once, to 64 bits, by
xxh3 and a multiplicative mix; datasketch takes their low 32 bits). The signature is cut into b bands
of r rows, b and r chosen by datasketch's optimal-parameter search for the threshold (the
pair minimizing the weighted areas of false positives and false negatives under the
S-curve 1 - (1 - s^r)^b); two documents become candidates when any band is identical.
Each band is kept as one 64-bit key, so that grouping on keys finds the candidates.
"""
from __future__ import annotations

import functools
import hashlib
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config.curate import FuzzyDedupConfig
from pipeline.curate.records import kept_mask, set_column

EXACT_COLUMN = "_exact"
BANDS_COLUMN = "_bands"
_WORD = re.compile(r"\w+")
_MAX_HASH = np.uint64((1 << 32) - 1)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def exact_key(text: str) -> bytes:
    """128-bit digest of a document's (normalized, redacted) text."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@functools.lru_cache(maxsize=8)
def lsh_params(threshold: float, num_perm: int, false_positive_weight: float) -> tuple[int, int]:
    """(bands, rows) for the threshold, by datasketch's optimal-parameter search."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, false_positive_weight, 1 - false_positive_weight)


_NOT_WORD = r"[^\p{L}\p{N}_]+"  # RE2: anything but Unicode letters, digits and underscore


def batch_shingles(texts: list[str], k: int) -> list[np.ndarray]:
    """For each text, the distinct 64-bit hashes of its word k-shingles (lowercased words; a text
    under k words is one shingle). Vectorized over the batch: words are split and dictionary
    encoded by Arrow, each distinct word hashed once (xxh3), and every window of k word hashes
    combined in numpy."""
    import xxhash

    if not texts:
        return []
    words = pc.split_pattern_regex(pc.utf8_lower(pa.array(texts, pa.large_string())), _NOT_WORD)
    flat, doc = pc.list_flatten(words), pc.list_parent_indices(words)
    nonempty = pc.not_equal(flat, "")
    flat, doc = flat.filter(nonempty), doc.filter(nonempty).to_numpy()
    encoded = flat.dictionary_encode()
    vocab_hash = np.fromiter((xxhash.xxh3_64_intdigest(w.encode()) for w in encoded.dictionary.to_pylist()),
                             dtype=np.uint64, count=len(encoded.dictionary))
    word_hash = vocab_hash[encoded.indices.to_numpy(zero_copy_only=False)]
    counts = np.bincount(doc, minlength=len(texts))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n = len(word_hash)
    keys = np.zeros(max(n - k + 1, 0), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            keys = (keys ^ word_hash[j: n - k + 1 + j]) * _MIX
    out = []
    for i, (start, count) in enumerate(zip(starts.tolist(), counts.tolist())):
        if count >= k:
            out.append(np.unique(keys[start: start + count - k + 1]))
        elif count:
            out.append(np.array([_combine(word_hash[start: start + count])], dtype=np.uint64))
        else:
            out.append(np.zeros(0, dtype=np.uint64))
    return out


def _combine(hashes: np.ndarray) -> np.uint64:
    key = np.uint64(0)
    with np.errstate(over="ignore"):
        for h in hashes:
            key = (key ^ h) * _MIX
    return key


def shingle_hashes(text: str, k: int) -> np.ndarray:
    """The distinct shingle hashes of one text (see `batch_shingles`)."""
    return batch_shingles([text], k)[0]


def minhash(shingles: np.ndarray, num_perm: int, seed: int):
    """datasketch's MinHash of a set of shingle hashes (their low 32 bits, the width of its default
    affine32 scheme)."""
    from datasketch import MinHash

    template = _template(num_perm, seed)
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=_identity, permutations=template.permutations,
                scheme=template.scheme)
    if len(shingles):
        m.update_batch((shingles & _MAX_HASH).tolist())
    return m


def _identity(x):
    return x


@functools.lru_cache(maxsize=8)
def _template(num_perm: int, seed: int):
    """A MinHash whose permutations are reused (drawing them costs more than hashing a document)."""
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=seed)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) 64-bit keys, one per band of each signature row (band index mixed in)."""
    n = len(signatures)
    cut = signatures[:, : bands * rows].reshape(n, bands, rows)
    keys = np.broadcast_to(np.arange(bands, dtype=np.uint64) + np.uint64(1), (n, bands)).copy()
    with np.errstate(over="ignore"):
        for j in range(rows):
            keys = (keys ^ cut[:, :, j]) * _MIX
            keys ^= keys >> np.uint64(29)
    return keys


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sets of shingle hashes (sorted, distinct)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


class DedupKeys:
    """The last per-shard step: each kept row gets its exact-text digest (`_exact`) and, with fuzzy
    dedup on, its LSH band keys (`_bands`); rejected rows get nulls."""

    def __init__(self, exact: bool, fuzzy: FuzzyDedupConfig):
        self.exact, self.fuzzy = exact, fuzzy
        self.bands, self.rows = lsh_params(fuzzy.threshold, fuzzy.num_perm, fuzzy.false_positive_weight)

    def __call__(self, batch: pa.Table) -> pa.Table:
        keep = kept_mask(batch)
        texts = batch["text"].to_pylist()
        digests = [exact_key(t) if k else None for t, k in zip(texts, keep)]
        batch = set_column(batch, EXACT_COLUMN, digests, pa.binary(16))
        if not self.fuzzy.enabled:
            return batch
        f = self.fuzzy
        rows = [i for i, k in enumerate(keep) if k]
        shingles = batch_shingles([texts[i] for i in rows], f.shingle_words)
        sigs = np.stack([minhash(sh, f.num_perm, f.seed).hashvalues.astype(np.uint64) for sh in shingles]) \
            if rows else np.zeros((0, f.num_perm), dtype=np.uint64)
        keys = band_keys(sigs, self.bands, self.rows)
        column: list = [None] * len(texts)
        for i, row in zip(rows, keys):
            column[i] = row
        return set_column(batch, BANDS_COLUMN, pa.array(column, pa.list_(pa.uint64())))

"""MinHash signatures and LSH bands."""
from __future__ import annotations

import numpy as np


def test_minhash_is_datasketch_and_lsh_params_come_from_its_optimizer():
    from datasketch import MinHash
    from datasketch.lsh import _optimal_param

    from pipeline.curate.minhash import jaccard, lsh_params, minhash, shingle_hashes

    a = "the quick brown fox jumps over the lazy dog and runs far away into the deep dark forest " * 3
    b = a.replace("lazy", "sleepy", 1)
    sa, sb = shingle_hashes(a, 5), shingle_hashes(b, 5)
    ma = minhash(sa, 128, 1)
    ref = MinHash(num_perm=128, seed=1, hashfunc=lambda x: x)
    ref.update_batch([int(v) & 0xFFFFFFFF for v in sa])
    assert isinstance(ma, MinHash) and np.array_equal(ma.hashvalues, ref.hashvalues)
    true = jaccard(sa, sb)
    assert 0.7 < true < 1 and abs(ma.jaccard(minhash(sb, 128, 1)) - true) < 0.15
    assert lsh_params(0.8, 128, 0.5) == _optimal_param(0.8, 128, 0.5, 0.5) == (9, 13)
    assert lsh_params(0.8, 128, 0.1) == (14, 9)  # the default leans to recall (verification follows)
    assert shingle_hashes("Two words", 5).shape == (1,) and shingle_hashes("", 5).shape == (0,)
    assert np.array_equal(shingle_hashes("Hello, WORLD again and again!", 2), shingle_hashes("hello world again and again", 2))


def test_band_keys_collide_exactly_when_a_band_is_identical():
    from pipeline.curate.minhash import band_keys

    sig = np.arange(24, dtype=np.uint64).reshape(1, 24)
    other = sig.copy()
    other[0, 5] += 1  # differs in band 1 (rows 4..7) only
    ka, kb = band_keys(sig, 6, 4)[0], band_keys(other, 6, 4)[0]
    assert [x == y for x, y in zip(ka, kb)] == [True, False, True, True, True, True]
    assert len(set(band_keys(np.zeros((1, 24), np.uint64), 6, 4)[0].tolist())) == 6  # band index mixed in

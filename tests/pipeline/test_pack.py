"""Packing alone: documents joined by EOT, cut into full rows, tails packed once, nothing lost."""
import numpy as np

from pipeline.tokenize.pack import _pack_tails, pack_rows, split_of, token_dtype


def test_pack_rows_joins_with_eot_and_returns_the_tail():
    rows, tail = pack_rows([[1, 2, 3], [4, 5], [6]], eot_id=0, row_len=4, dtype=np.uint16)
    assert rows.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6]]
    assert tail.tolist() == [0]
    rows, tail = pack_rows([], eot_id=0, row_len=4, dtype=np.uint16)
    assert rows.shape == (0, 4) and tail.size == 0


def test_tails_fill_rows_and_only_the_last_is_padded():
    rows = _pack_tails([[1, 2, 0], [3, 0], [4, 5, 6, 0]], row_len=4, pad_id=9, dtype=np.uint16)
    assert rows.tolist() == [[1, 2, 0, 3], [0, 4, 5, 6], [0, 9, 9, 9]]
    assert _pack_tails([], 4, 9, np.uint16).shape == (0, 4)


def test_split_is_a_stable_function_of_the_id():
    ids = [f"doc-{i}" for i in range(2000)]
    val = [i for i in ids if split_of(i, 0.1) == "val"]
    assert 140 < len(val) < 260
    assert val == [i for i in ids if split_of(i, 0.1) == "val"]
    assert token_dtype(4096) == np.uint16 and token_dtype(100_000) == np.uint32

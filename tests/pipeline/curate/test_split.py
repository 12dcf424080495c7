"""Splitting long documents at paragraphs, lines, spaces."""
from __future__ import annotations

import json

from curate_texts import doc

from pipeline.config.curate import (
    SplitConfig,
)
from pipeline.curate.records import make_batch
from pipeline.curate.split import SplitLong, split_text


def test_split_cuts_at_paragraphs_then_lines_then_spaces():
    paragraphs = ["p%d " % i + "word " * 40 for i in range(10)]  # ~200 characters each
    pieces = split_text("\n\n".join(p.strip() for p in paragraphs), 1000)
    assert all(len(p) <= 1000 for p in pieces) and len(pieces) == 3
    assert all(p.startswith("p") for p in pieces)  # each piece starts at a paragraph
    assert "\n\n".join(pieces).split() == "\n\n".join(paragraphs).split()
    one_line = "word " * 700
    assert all(len(p) <= 1000 for p in split_text(one_line, 1000))
    assert split_text("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]


def test_split_step_makes_rows_with_part_ids_and_keeps_short_ones():
    from pipeline.curate.records import BORN, RAW_BYTES, set_column

    long = "\n\n".join(["para %d " % i + "text " * 300 for i in range(4)])
    batch = make_batch([doc(long, id_="big"), doc("short one", id_="small"), doc(long, reason="binary", id_="bad")])
    batch = set_column(set_column(batch, RAW_BYTES, [len(long), 9, 5]), BORN, ["read"] * 3)
    out = SplitLong(SplitConfig(max_chars=3100))(batch).to_pylist()  # two paragraphs a piece
    assert [r["id"] for r in out] == ["big#0", "big#1", "small", "bad"]
    assert json.loads(out[1]["meta"]) == {"part": 1, "parts": 2, "parent": "big"}
    assert [r[RAW_BYTES] for r in out] == [len(long), 0, 9, 5]  # input bytes counted once
    assert [r[BORN] for r in out] == ["read", "split", "read", "read"]

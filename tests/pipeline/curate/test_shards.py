"""Shard plans and mixture weights."""
from __future__ import annotations

import json

from curate_inputs import source

from pipeline.curate.records import BORN, RAW_BYTES, make_batch, set_column
from pipeline.curate.report import mark_step
from pipeline.curate.sources import list_source
from pipeline.stages import layout_for


def test_shard_plan_is_deterministic_and_respects_sizes(tmp_path):
    from pipeline.curate.shards import plan_shards

    for i in range(10):
        (tmp_path / f"f{i}.txt").write_text("x" * (100 * (i + 1)))
    src = source(str(tmp_path))
    files = list_source(src, layout_for(tmp_path))
    specs = plan_shards([src], [files], target_bytes=1000, min_shards=2)
    assert [len(s.files) for s in specs] == [4, 1, 1, 1, 1, 1, 1]  # 100+200+300+400; then 500+600 > 1000
    assert [s.index for s in specs] == list(range(7)) and sum(s.input_bytes for s in specs) == 5500
    assert plan_shards([src], [files], target_bytes=1 << 30, min_shards=2)[0].input_bytes <= 2750 + 1000
    assert plan_shards([src], [files], 1000, 2) == specs


def test_mixture_weights_copy_and_downsample_deterministically():
    from pipeline.curate.shards import apply_mixture, mixture_copies

    ids = [f"d{i}" for i in range(1000)]
    assert mixture_copies(ids, ids, 2.0, "m") == [2] * 1000
    down = mixture_copies(ids, ids, 0.3, "m")
    assert 250 < sum(down) < 350 and down == mixture_copies(ids, ids, 0.3, "m")
    up = mixture_copies(ids, ids, 1.5, "m")
    assert set(up) == {1, 2} and 1400 < sum(up) < 1600
    batch = make_batch([{"id": "a", "text": "t", "source": "s", "kind": "k", "meta": "{}"},
                        {"id": "b", "text": "t", "source": "s", "kind": "k", "meta": "{}", "reason": "too_short"}])
    batch = set_column(set_column(batch, RAW_BYTES, [1, 1]), BORN, ["read", "read"])
    out = apply_mixture(mark_step(batch, "read"), 3.0).to_pylist()
    assert [(r["id"], r["reason"], r[BORN]) for r in out] == [("a", "", "read"), ("a", "", "mixture"),
                                                              ("a", "", "mixture"), ("b", "too_short", "read")]
    assert [json.loads(r["meta"]).get("copy") for r in out] == [None, 1, 2, None]
    assert len({r["_loc"] for r in out}) == 4 and [r[RAW_BYTES] for r in out] == [1, 0, 0, 1]

"""The curation report's tallies balance."""
from __future__ import annotations

import json

import pyarrow as pa

from pipeline.curate.records import BORN, KIND_BY, RAW_BYTES, make_batch, set_column
from pipeline.curate.report import Tally, build_report, mark_step


def test_report_arithmetic_balances():
    rows = [{"id": str(i), "text": "x" * 10, "source": "a", "kind": "web", "meta": "{}"} for i in range(4)]
    rows[3]["reason"] = "malformed_json"
    batch = make_batch(rows)
    batch = set_column(set_column(batch, RAW_BYTES, pa.array([12, 12, 12, 20], pa.int64())), BORN, ["read"] * 4)
    batch = mark_step(batch, "read")
    # normalize shortens row 0; quality drops row 1; then dedup drops row 2
    batch = batch.set_column(1, "text", pa.array(["x" * 8, "x" * 10, "x" * 10, "x" * 10], pa.large_string()))
    batch = mark_step(batch, "normalize")
    batch = batch.set_column(5, "reason", pa.array(["", "too_short", "", "malformed_json"]))
    batch = mark_step(batch, "quality")
    batch = batch.set_column(5, "reason", pa.array(["", "too_short", "exact_duplicate", "malformed_json"]))
    batch = mark_step(batch, "dedup")
    batch = batch.append_column("pii_email", pa.array([2, 0, 1, 0], pa.int32()))
    tally = Tally(["read", "normalize", "quality", "dedup"])
    tally.add(batch.slice(0, 2))
    other = Tally(tally.steps)
    other.add(batch.slice(2))
    tally.merge(Tally.from_json(json.loads(json.dumps(other.to_json()))))
    report = build_report(tally, [{"name": "a", "format": "jsonl", "kind": "web", "path": "p", "files": 1,
                                   "files_ignored": 0}],
                          output={"docs": 1, "bytes": 8}, rejects={"docs": 3}, seconds=1.234)
    assert report["input"] == {"docs": 4, "bytes": 56}
    assert report["steps"] == {"read": {"docs": 3, "bytes": 30}, "normalize": {"docs": 3, "bytes": 28},
                               "quality": {"docs": 2, "bytes": 18}, "dedup": {"docs": 1, "bytes": 8},
                               "output": {"docs": 1, "bytes": 8}}
    assert report["rejects"] == {"exact_duplicate": 1, "malformed_json": 1, "too_short": 1}
    assert report["sources"]["a"]["docs"] == report["sources"]["a"]["kept_docs"] + sum(report["rejects"].values())
    assert report["pii"]["email"] == 3 and report["seconds"] == 1.23


def test_report_counts_documents_per_kind_and_how_each_got_it():
    cases = [("mix", "code", ""), ("mix", "code", "code_long_lines"), ("mix", "prose", ""), ("mix", "notebook", ""),
             ("web", "web", "")]
    rows = [{"id": str(i), "text": "x", "source": src, "kind": kind, "meta": "{}", "reason": reason}
            for i, (src, kind, reason) in enumerate(cases)]
    batch = make_batch(rows)
    batch = set_column(set_column(batch, RAW_BYTES, pa.array([1] * 5, pa.int64())), BORN, ["read"] * 5)
    batch = set_column(batch, KIND_BY, ["detected", "detected", "detected", "record", "source"])
    batch = mark_step(batch, "read")
    tally, other = Tally(["read"]), Tally(["read"])
    tally.add(batch.slice(0, 3))
    other.add(batch.slice(3))
    tally.merge(Tally.from_json(json.loads(json.dumps(other.to_json()))))
    sources = [{"name": n, "format": f, "kind": k, "path": "p", "files": 1, "files_ignored": 0}
               for n, f, k in (("mix", "jsonl", "auto"), ("web", "warc", "web"))]
    report = build_report(tally, sources, output={"docs": 4, "bytes": 4}, rejects={"docs": 1}, seconds=1)
    assert report["kinds"] == {
        "code": {"docs": 2, "kept": 1, "by": {"source": 0, "record": 0, "detected": 2}},
        "notebook": {"docs": 1, "kept": 1, "by": {"source": 0, "record": 1, "detected": 0}},
        "prose": {"docs": 1, "kept": 1, "by": {"source": 0, "record": 0, "detected": 1}},
        "web": {"docs": 1, "kept": 1, "by": {"source": 1, "record": 0, "detected": 0}}}
    assert report["sources"]["mix"]["kinds"] == {"code": 2, "notebook": 1, "prose": 1}
    assert report["sources"]["web"]["kinds"] == {"web": 1}
    assert report["reject_causes"] == {"code_long_lines": "curate.quality.code.max_line_length"}

"""Curation of the bundled sample on a real Ray instance: planted cases come out where they should."""
from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import SourceConfig, load_config
from pipeline.curate.pii import EMAIL, PHONE
from pipeline.curate.records import OUTPUT_COLUMNS, REJECT_COLUMNS, CurateError
from pipeline.curate.stage import run_curate
from pipeline.layout import Layout
from pipeline.sample import build_sample

pytestmark = pytest.mark.integration


def read_rows(folder: Path) -> list[dict]:
    files = sorted(folder.glob("part-*.parquet"))
    return pq.read_table(files).to_pylist() if files else []


@pytest.fixture(scope="module")
def curated(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    marker = build_sample(Layout(root).sample)
    cfg = load_config(None, root=str(root))
    cfg.curate.rows_per_shard = 200
    out = Layout(root).curated
    report = run_curate(cfg, out)
    return {"root": root, "cfg": cfg, "marker": marker, "report": report, "out": out,
            "kept": read_rows(out), "rejects": read_rows(out / "rejects")}


def forum_posts(marker_root: Path) -> list[dict]:
    posts = []
    for line in (Layout(marker_root).sample / "forum" / "posts.jsonl").read_text().splitlines():
        try:
            posts.append(json.loads(line))
        except ValueError:
            pass
    return posts


def test_output_shards_have_the_document_columns(curated):
    out = curated["out"]
    shards = sorted(out.glob("part-*.parquet"))
    assert len(shards) == curated["report"]["output"]["shards"] >= 2
    for shard in shards:
        table = pq.read_table(shard)
        assert table.column_names == list(OUTPUT_COLUMNS) and len(table) <= 200
    assert pq.read_table(sorted((out / "rejects").glob("*.parquet"))).column_names == list(REJECT_COLUMNS)
    assert json.loads((out / "report.json").read_text()) == curated["report"]
    kinds = {r["source"]: r["kind"] for r in curated["kept"]}
    assert kinds == {"pydoc-web": "web", "stdlib-code": "code", "python-reference": "prose", "forum-posts": "web"}


def test_no_document_is_lost(curated):
    report, marker = curated["report"], curated["marker"]
    n_input = marker["files"]["web"] + marker["files"]["code"] + marker["files"]["prose"] + marker["forum"]["lines"]
    assert report["input"]["docs"] == n_input
    assert report["input"]["docs"] == len(curated["kept"]) + len(curated["rejects"])
    assert report["output"]["docs"] == len(curated["kept"]) == report["steps"]["output"]["docs"]
    assert sum(report["rejects"].values()) == len(curated["rejects"])
    for name, src in report["sources"].items():
        assert src["docs"] == src["kept_docs"] + sum(report["rejects_by_source"][name].values())
    kept_docs = [report["steps"][s]["docs"] for s in ("read", "normalize", "quality", "pii", "dedup", "output")]
    assert kept_docs == sorted(kept_docs, reverse=True)
    assert len({r["id"] for r in curated["kept"]}) == len(curated["kept"])


def test_exact_duplicates_leave_one_survivor_each(curated):
    by_text = defaultdict(list)
    for post in forum_posts(curated["root"]):
        by_text[post["text"]].append(post["id"])
    groups = [sorted(ids) for ids in by_text.values() if len(ids) > 1]
    assert len(groups) >= 5
    kept = {r["id"] for r in curated["kept"]}
    rejected = {r["id"]: r for r in curated["rejects"]}
    for ids in groups:
        assert ids[0] in kept and not kept & set(ids[1:])
        for dup in ids[1:]:
            assert rejected[dup]["reason"] == "exact_duplicate"
            assert json.loads(rejected[dup]["meta"])["duplicate_of"] == ids[0]
    assert curated["report"]["rejects"]["exact_duplicate"] >= curated["marker"]["forum"]["exact_duplicates"]


def test_planted_emails_and_phones_are_redacted(curated):
    text = "\n".join(r["text"] for r in curated["kept"])
    for value in curated["marker"]["pii"]["emails"] + curated["marker"]["pii"]["phones"]:
        assert value not in text
    assert text.count(EMAIL) >= curated["marker"]["forum"]["with_email"]
    assert text.count(PHONE) >= curated["marker"]["forum"]["with_phone"]
    pii, planted = curated["report"]["pii"], curated["marker"]["forum"]
    assert pii["email"] >= planted["with_email"] and pii["phone"] >= planted["with_phone"]
    assert "json (version 2.0.9)" in text  # version numbers survive


def test_junk_is_rejected_with_its_reason(curated):
    rejects = curated["rejects"]
    forum = [r for r in rejects if r["source"] == "forum-posts"]
    reasons = defaultdict(int)
    for r in forum:
        reasons[r["reason"]] += 1
    planted = curated["marker"]["forum"]
    assert reasons["too_short"] == planted["too_short"]
    assert reasons["symbol_ratio"] == planted["symbol_soup"]
    assert reasons["repeated_lines"] == planted["repeated_lines"]
    code = {json.loads(r["meta"])["path"]: r["reason"] for r in rejects if r["source"] == "stdlib-code"}
    for reason, path in curated["marker"]["code_planted"].items():
        assert code[path] == reason
    assert not any(r["source"] == "stdlib-code" and r["reason"] in ("symbol_ratio", "repeated_lines") for r in rejects)


def test_malformed_json_line_is_counted_and_kept_raw(curated):
    assert curated["report"]["rejects"]["malformed_json"] == 1
    [bad] = [r for r in curated["rejects"] if r["reason"] == "malformed_json"]
    meta = json.loads(bad["meta"])
    lines = (Layout(curated["root"]).sample / "forum" / "posts.jsonl").read_text().splitlines()
    assert bad["text"] == lines[meta["line"] - 1] and meta["path"] == "posts.jsonl"


def test_rerun_replaces_output_with_the_same_ids(curated):
    out = curated["out"]
    before = {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}
    report = run_curate(curated["cfg"], out)
    assert [r["id"] for r in read_rows(out)] == [r["id"] for r in curated["kept"]]
    assert {p.name: p.read_bytes() for p in out.glob("part-*.parquet")} == before
    assert report["output"] == curated["report"]["output"]
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".curated")) == []


def test_jsonl_gz_and_parquet_sources(curated, tmp_path):
    rows = [{"id": f"r{i}", "text": f"record number {i} " + "with plenty of words in it " * 4} for i in range(5)]
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows[:3]) + "\n\n{broken\n")
    pq.write_table(pa.table({"body": [r["text"] for r in rows[3:]], "lang": ["en", "en"]}), tmp_path / "b.parquet")
    inputs = [SourceConfig(name="gz", format="jsonl", path=str(tmp_path / "*.jsonl.gz")),
              SourceConfig(name="pq", kind="book", format="parquet", path=str(tmp_path / "b.parquet"),
                           text_field="body")]
    report = run_curate(curated["cfg"], tmp_path / "out", inputs=inputs)
    kept = read_rows(tmp_path / "out")
    assert report["sources"]["gz"]["docs"] == 4 and report["rejects"] == {"malformed_json": 1}
    assert sorted(r["id"] for r in kept if r["source"] == "gz") == ["r0", "r1", "r2"]
    books = [r for r in kept if r["source"] == "pq"]
    assert len(books) == 2 and {json.loads(r["meta"])["lang"] for r in books} == {"en"}
    assert [json.loads(r["meta"])["row"] for r in sorted(books, key=lambda r: r["text"])] == [0, 1]


def test_missing_path_is_a_clear_error(curated, tmp_path):
    inputs = [SourceConfig(name="lost", format="text", path="{root}/no/such/folder")]
    with pytest.raises(CurateError, match=r"source 'lost' \(text\): path '\{root\}/no/such/folder' .* does not exist"):
        run_curate(curated["cfg"], tmp_path / "out", inputs=inputs)
    assert not (tmp_path / "out").exists()


def test_source_without_documents_is_a_clear_error(curated, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n   \n")
    (tmp_path / "ok.txt").write_text("a perfectly fine document " * 10)
    inputs = [SourceConfig(name="fine", format="text", path=str(tmp_path / "ok.txt")),
              SourceConfig(name="blank", format="jsonl", path=str(tmp_path / "empty.jsonl"))]
    with pytest.raises(CurateError, match=r"source 'blank' \(jsonl\): 1 file\(s\) under .* hold no documents"):
        run_curate(curated["cfg"], tmp_path / "out", inputs=inputs)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.tmp").exists()

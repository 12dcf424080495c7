"""Curation pieces around the records: readers' batch functions, listing, dedup, report, shards (no Ray)."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import SourceConfig
from pipeline.curate.config import ReadConfig
from pipeline.curate.dedup import add_exact_key, resolve_exact_group, shuffle_partitions, survivor_order
from pipeline.curate.output import write_shards
from pipeline.curate.readers import FileDocs, ParseJsonl, RecordsToDocs, decode, language, read_tasks, skip_reason
from pipeline.curate.records import RAW_BYTES, CurateError, doc_id, make_batch
from pipeline.curate.report import Tally, build_report, mark_step
from pipeline.curate.sources import list_source
from pipeline.layout import Layout

# ---------------------------------------------------------------- JSONL and records


def jsonl_batch(lines: list[bytes]) -> pa.Table:
    return pa.table({"_path": ["/data/forum/posts.jsonl"] * len(lines), "_line": list(range(1, len(lines) + 1)),
                     "raw": pa.array(lines, pa.large_binary())})


def test_jsonl_corrupt_lines_become_rejects_not_errors():
    parse = ParseJsonl("forum", "web", "text", "id", "/data/forum")
    out = parse(jsonl_batch([
        b'{"id": "p1", "text": "hello there", "url": "https://forum.example.org/t/1"}',
        b'{"id": "p2", "text": "cut sho',
        b'["a", "list"]',
        b'{"id": "p4", "body": "no text field"}',
        b'{"text": "caf\xe9"}',
        b'{"text": "no id here"}',
    ]))
    rows = out.to_pylist()
    assert [r["reason"] for r in rows] == ["", "malformed_json", "malformed_json", "missing_text", "invalid_utf8", ""]
    assert rows[0]["id"] == "p1" and rows[0]["text"] == "hello there" and rows[0]["source"] == "forum"
    assert json.loads(rows[0]["meta"]) == {"path": "posts.jsonl", "line": 1, "url": "https://forum.example.org/t/1"}
    assert rows[1]["text"] == '{"id": "p2", "text": "cut sho'  # the raw line, for inspection
    assert rows[1]["id"] == doc_id("forum", "posts.jsonl:2")
    assert rows[4]["text"] == '{"text": "caf\ufffd"}'
    assert rows[5]["id"] == doc_id("forum", "posts.jsonl:6")
    assert out[RAW_BYTES].to_pylist()[1] == len(b'{"id": "p2", "text": "cut sho')


def test_records_use_configured_fields_and_keep_the_rest_in_meta():
    to_docs = RecordsToDocs("books", "book", "body", "isbn", "/data")
    batch = pa.table({"isbn": [978, None], "body": ["a long text", "another"], "year": [1999, 2001],
                      "_path": ["/data/a.parquet", "/data/a.parquet"], "_row": [0, 1]})
    rows = to_docs(batch).to_pylist()
    assert [r["id"] for r in rows] == ["978", doc_id("books", "a.parquet:1")]
    assert json.loads(rows[0]["meta"]) == {"path": "a.parquet", "row": 0, "year": 1999}
    assert rows[1]["kind"] == "book" and rows[1]["reason"] == ""


# ---------------------------------------------------------------- whole files


def test_decode_tells_binary_from_bad_utf8():
    assert decode("h\u00e9".encode()) == ("h\u00e9", "")
    assert decode(b"\xef\xbb\xbfbom") == ("bom", "")
    assert decode(b"\x89PNG\r\n\x1a\n\x00\x00")[1] == "binary"
    assert decode("h\u00e9".encode("utf-16"))[1] == "binary"
    assert decode("caf\u00e9".encode("latin-1")) == ("caf\ufffd", "invalid_utf8")


@pytest.mark.parametrize("rel, size, reason", [
    ("json/decoder.py", 100, ""),
    ("json/__pycache__/decoder.cpython-311.pyc", 100, "build_artifact"),
    ("third_party/six.py", 100, "vendored"),
    ("web/node_modules/left-pad/index.js", 100, "vendored"),
    ("lib/site-packages/requests/api.py", 100, "vendored"),
    ("generated/table.py", 200_001, "too_large"),
    ("vendor.py", 100, ""),  # a file named like a vendored folder is not in one
])
def test_code_skip_rules(rel, size, reason):
    assert skip_reason(rel, size, "code", ReadConfig(max_code_bytes=200_000)) == reason


def test_size_cap_for_text_is_separate():
    cfg = ReadConfig(max_code_bytes=10, max_file_bytes=1000)
    assert skip_reason("third_party/a.txt", 500, "text", cfg) == ""
    assert skip_reason("a.txt", 1001, "text", cfg) == "too_large"


def test_language_from_extension():
    assert [language(p) for p in ("a/b.py", "x.RS", "Makefile", "README", "notes.weird")] == \
        ["python", "rust", "make", "text", "text"]


def test_file_docs_extract_html_and_tag_code():
    batch = pa.table({"bytes": [b"<html><head><title>T</title></head><body><p>Hi there</p></body></html>",
                                b"def f():\n    return 1\n", b"\x00\x01\x02"],
                      "path": ["/src/a.html", "/src/pkg/m.py", "/src/logo.png"]})
    html = FileDocs("web", "web", "html", "/src")(batch.slice(0, 1)).to_pylist()[0]
    assert html["text"] == "Hi there" and json.loads(html["meta"])["title"] == "T"
    code = FileDocs("code", "code", "code", "/src")(batch.slice(1)).to_pylist()
    assert json.loads(code[0]["meta"]) == {"path": "pkg/m.py", "bytes": 22, "language": "python"}
    assert code[0]["id"] == doc_id("code", "pkg/m.py")
    assert code[1]["reason"] == "binary" and code[1]["text"] == ""


# ---------------------------------------------------------------- listing


def source(path, fmt="text", name="src"):
    return SourceConfig(name=name, format=fmt, path=path)


def test_listing_folder_file_and_glob(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ("d/a.txt", "d/sub/b.md", "d/c.html", "d/.hidden.txt", "d/sub/x.jsonl"):
        (tmp_path / rel).write_text("x")
    layout = Layout(tmp_path)
    files = list_source(source("{root}/d"), layout)
    assert [files.rel(p) for p in files.paths] == ["a.txt", "sub/b.md"] and files.ignored == 3
    assert [files.rel(p) for p in list_source(source("{root}/d/c.html", "html"), layout).paths] == ["c.html"]
    assert [files.rel(p) for p in list_source(source("{root}/d/*/*.jsonl", "jsonl"), layout).paths] == ["sub/x.jsonl"]
    assert len(list_source(source("{root}/d/**/*.txt"), layout).paths) == 1  # hidden files only if named


@pytest.mark.parametrize("path, fmt, message", [
    ("{root}/nowhere", "text", "source 'src' (text): path '{root}/nowhere' (= ROOT/nowhere) does not exist"),
    ("{root}/d/*.parquet", "parquet", "matches no files"),
    ("{root}/gone/*.jsonl", "jsonl", "does not exist"),
    ("{root}/d", "parquet", "is a folder with no files with extension .parquet"),
])
def test_listing_errors_name_the_source_and_path(tmp_path, path, fmt, message):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("x")
    with pytest.raises(CurateError) as err:
        list_source(source(path, fmt), Layout(tmp_path))
    assert message.replace("ROOT", str(tmp_path)) in str(err.value)


# ---------------------------------------------------------------- dedup


def test_survivor_is_the_smallest_id_whatever_the_order():
    rows = [{"id": "post-9", "source": "f", "meta": "{}"}, {"id": "post-10", "source": "f", "meta": "{}"},
            {"id": "post-1", "source": "z", "meta": "{}"}, {"id": "post-1", "source": "a", "meta": "{}"}]
    assert survivor_order(rows) == [3, 2, 1, 0]


def test_exact_group_rejects_all_but_the_survivor():
    group = make_batch([
        {"id": "b", "text": "same", "source": "s", "kind": "web", "meta": '{"line": 2}'},
        {"id": "a", "text": "same", "source": "s", "kind": "web", "meta": '{"line": 1}'},
        {"id": "0", "text": "same", "source": "s", "kind": "web", "meta": "{}", "reason": "too_short"},
        {"id": "c", "text": "same", "source": "s", "kind": "web", "meta": '{"line": 3}'},
    ])
    out = resolve_exact_group(group).to_pylist()
    assert [r["reason"] for r in out] == ["exact_duplicate", "", "too_short", "exact_duplicate"]
    assert json.loads(out[0]["meta"]) == {"line": 2, "duplicate_of": "a"}
    assert out[2]["meta"] == "{}"


def test_exact_key_groups_kept_rows_by_text_only():
    batch = make_batch([{"id": "1", "text": "t", "source": "s", "kind": "k", "meta": "{}"},
                        {"id": "2", "text": "t", "source": "s2", "kind": "k", "meta": "{}"},
                        {"id": "3", "text": "t", "source": "s", "kind": "k", "meta": "{}", "reason": "x"}])
    keys = add_exact_key(batch)["_dedup_key"].to_pylist()
    assert keys[0] == keys[1] != keys[2]


def test_partition_and_task_counts_follow_data_size():
    assert shuffle_partitions(5 << 20, cpus=4) == 1
    assert shuffle_partitions(1 << 30, cpus=4) == 8
    assert read_tasks([1000] * 50) == 1 and read_tasks([64 << 20] * 3) == 3 and read_tasks([100 << 20]) == 1


# ---------------------------------------------------------------- report


def test_report_arithmetic_balances():
    rows = [{"id": str(i), "text": "x" * 10, "source": "a", "kind": "web", "meta": "{}"} for i in range(4)]
    rows[3]["reason"] = "malformed_json"
    batch = mark_step(make_batch(rows).append_column(RAW_BYTES, pa.array([12, 12, 12, 20], pa.int64())), "read")
    # normalize shortens row 0; quality drops row 1; then dedup drops row 2
    batch = batch.set_column(1, "text", pa.array(["x" * 8, "x" * 10, "x" * 10, "x" * 10], pa.large_string()))
    batch = mark_step(batch, "normalize")
    batch = batch.set_column(5, "reason", pa.array(["", "too_short", "", "malformed_json"]))
    batch = mark_step(batch, "quality")
    batch = batch.set_column(5, "reason", pa.array(["", "too_short", "exact_duplicate", "malformed_json"]))
    batch = mark_step(batch, "dedup")
    batch = batch.append_column("pii_email", pa.array([2, 0, 1, 0], pa.int64()))
    tally = Tally(["read", "normalize", "quality", "dedup"])
    tally.add(batch.slice(0, 2))
    tally.add(batch.slice(2))
    report = build_report(tally, [{"name": "a", "format": "jsonl", "kind": "web", "path": "p", "files": 1,
                                   "files_ignored": 0}],
                          output={"docs": 1, "bytes": 8}, rejects={"docs": 3}, seconds=1.234)
    assert report["input"] == {"docs": 4, "bytes": 56}
    assert report["steps"] == {"read": {"docs": 3, "bytes": 30}, "normalize": {"docs": 3, "bytes": 28},
                               "quality": {"docs": 2, "bytes": 18}, "dedup": {"docs": 1, "bytes": 8},
                               "output": {"docs": 1, "bytes": 8}}
    assert report["rejects"] == {"exact_duplicate": 1, "malformed_json": 1, "too_short": 1}
    assert report["sources"]["a"]["docs"] == report["sources"]["a"]["kept_docs"] + sum(report["rejects"].values())
    assert report["sources"]["a"]["kept_bytes"] == 8
    assert report["pii"] == {"email": 3, "phone": 0}
    assert report["seconds"] == 1.23


# ---------------------------------------------------------------- shards


def test_shards_are_sorted_and_sized(tmp_path):
    rows = [{"id": f"{i:03d}", "text": "t", "source": "s", "kind": "k", "meta": "{}"} for i in (5, 3, 9, 1, 7)]
    tables = [make_batch(rows[:2]).drop_columns(["reason"]), make_batch(rows[2:]).drop_columns(["reason"])]
    out = write_shards(tables, tmp_path, rows_per_shard=2)
    assert out["shards"] == 3 and out["docs"] == 5 and out["bytes"] == 5
    files = sorted(tmp_path.glob("part-*.parquet"))
    assert [pq.read_table(f)["id"].to_pylist() for f in files] == [["001", "003"], ["005", "007"], ["009"]]
    again = tmp_path / "again"
    write_shards(list(reversed(tables)), again, rows_per_shard=2)
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in sorted(again.glob("part-*.parquet"))]

"""The per-format readers (no Ray): JSONL, Parquet, PDF, text and code files, and how each turns bad input into a counted reject."""
from __future__ import annotations

import bz2
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curate_inputs import PROSE, make_pdf, rows_of

from pipeline.config import SourceConfig
from pipeline.config.curate import ReadConfig
from pipeline.curate.readers import decode, language, skip_reason
from pipeline.curate.records import KIND_BY, RAW_BYTES, doc_id


def test_jsonl_corrupt_lines_become_rejects_not_errors(tmp_path):
    (tmp_path / "posts.jsonl").write_bytes(b"\n".join([
        b'{"id": "p1", "text": "hello there", "url": "https://forum.example.org/t/1"}',
        b'{"id": "p2", "text": "cut sho',
        b'["a", "list"]',
        b'',
        b'{"id": "p4", "body": "no text field"}',
        b'{"text": "caf\xe9"}',
        b'{"text": "no id here", "reason": "theirs", "raw": 1, "path": "theirs", "line": 0}',
    ]) + b"\n")
    rows = rows_of(SourceConfig(name="forum", format="jsonl", path=str(tmp_path)), tmp_path)
    assert [r["reason"] for r in rows] == ["", "malformed_json", "malformed_json", "missing_text", "invalid_utf8", ""]
    assert rows[0]["id"] == "p1" and rows[0]["text"] == "hello there" and rows[0]["source"] == "forum"
    assert json.loads(rows[0]["meta"]) == {"path": "posts.jsonl", "line": 1, "url": "https://forum.example.org/t/1"}
    assert rows[1]["text"] == '{"id": "p2", "text": "cut sho'  # the raw line, for inspection
    assert rows[1]["id"] == doc_id("forum", "posts.jsonl:2") and rows[1][RAW_BYTES] == 29
    assert rows[4]["text"] == '{"text": "caf\ufffd"}'
    assert rows[5]["id"] == doc_id("forum", "posts.jsonl:7")  # blank lines keep their numbers
    assert json.loads(rows[5]["meta"]) == {"reason": "theirs", "raw": 1, "path": "posts.jsonl", "line": 7}


def lines(n: int) -> bytes:
    return b"".join(json.dumps({"id": f"r{i}", "text": f"record {i} " + PROSE}).encode() + b"\n" for i in range(n))


@pytest.mark.parametrize("name, compress", [
    ("a.jsonl.gz", gzip.compress), ("a.jsonl.bz2", lambda d: bz2.compress(d, 1)),  # 100 kB blocks
    ("a.jsonl.zst", lambda d: __import__("zstandard").ZstdCompressor().compress(d)),
])
def test_compressed_jsonl_is_read_and_truncation_is_a_counted_reject(tmp_path, name, compress):
    data = compress(lines(3000))
    (tmp_path / "whole").mkdir()
    (tmp_path / "whole" / name).write_bytes(data)
    rows = rows_of(SourceConfig(name="c", format="jsonl", path=str(tmp_path / "whole")), tmp_path)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(3000)] and {r["reason"] for r in rows} == {""}
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / name).write_bytes(data[: len(data) // 2])
    rows = rows_of(SourceConfig(name="c", format="jsonl", path=str(tmp_path / "cut")), tmp_path)
    good = [r for r in rows if r["reason"] == ""]
    assert 100 < len(good) < 3000 and [r["id"] for r in good] == [f"r{i}" for i in range(len(good))]
    last = rows[-1]
    assert last["reason"] == "truncated" and "EOFError" in json.loads(last["meta"])["error"]
    assert sum(r["reason"] not in ("", "truncated", "malformed_json") for r in rows) == 0


def test_not_actually_gzip_is_a_read_error_naming_the_file(tmp_path):
    (tmp_path / "fake.jsonl.gz").write_bytes(b'{"text": "plain, not gzip"}\n')
    [row] = rows_of(SourceConfig(name="c", format="jsonl", path=str(tmp_path)), tmp_path)
    assert row["reason"] == "read_error"
    assert "gzip" in json.loads(row["meta"])["error"].lower() and json.loads(row["meta"])["path"] == "fake.jsonl.gz"


def test_empty_file_is_counted_and_runaway_record_is_too_large(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_bytes(b"\n  \n")
    (tmp_path / "huge.jsonl").write_bytes(b'{"id": "big", "text": "' + b"x" * 50_000_000 + b'"}\n{"id": "after", "text": "ok"}\n')
    rows = rows_of(SourceConfig(name="c", format="jsonl", path=str(tmp_path)), tmp_path)
    by = {json.loads(r["meta"])["path"]: r for r in rows if r["reason"] != ""}
    assert by["empty.jsonl"]["reason"] == by["blank.jsonl"]["reason"] == "empty_file"
    big = [r for r in rows if json.loads(r["meta"])["path"] == "huge.jsonl"]
    assert [(r["reason"], r["text"]) for r in big] == [("too_large", ""), ("", "ok")]
    assert big[0][RAW_BYTES] > 16_000_000 and big[1]["id"] == "after"


def test_parquet_records_use_configured_fields_and_keep_the_rest_in_meta(tmp_path):
    pq.write_table(pa.table({"isbn": [978, None], "body": ["a long text", "another"], "year": [1999, 2001]}),
                   tmp_path / "a.parquet")
    rows = rows_of(SourceConfig(name="books", kind="book", format="parquet", path=str(tmp_path), text_field="body",
                                id_field="isbn"), tmp_path)
    assert [r["id"] for r in rows] == ["978", doc_id("books", "a.parquet:1")]
    assert json.loads(rows[0]["meta"]) == {"path": "a.parquet", "row": 0, "year": 1999}
    assert rows[1]["kind"] == "book" and rows[1]["reason"] == ""


def test_pdf_pages_become_one_document_and_broken_pdfs_are_rejects(tmp_path):
    (tmp_path / "paper.pdf").write_bytes(make_pdf([["Hello from page one.", "Second line."], ["Page two."]]))
    (tmp_path / "broken.pdf").write_bytes(make_pdf([["x"]])[:200])
    rows = {json.loads(r["meta"])["path"]: r for r in rows_of(SourceConfig(name="p", kind="paper", format="pdf",
                                                                            path=str(tmp_path)), tmp_path)}
    paper = rows["paper.pdf"]
    assert paper["text"] == "Hello from page one.\nSecond line.\n\nPage two." and paper["kind"] == "paper"
    assert json.loads(paper["meta"])["pages"] == 2 and json.loads(paper["meta"])["title"] == "A paper"
    assert rows["broken.pdf"]["reason"] == "pdf_error" and json.loads(rows["broken.pdf"]["meta"])["error"]


def test_text_folder_reads_markdown_and_counts_binary_and_bad_utf8(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\nSome *markdown* text.")
    (tmp_path / "b.txt").write_bytes("caf\u00e9".encode("latin-1"))
    (tmp_path / "c.txt").write_bytes("h\u00e9".encode("utf-16"))
    (tmp_path / "d.txt").write_bytes(b"")
    rows = {json.loads(r["meta"])["path"]: r for r in rows_of(SourceConfig(name="t", format="text",
                                                                            path=str(tmp_path)), tmp_path)}
    assert rows["a.md"]["text"].startswith("# Title") and rows["a.md"]["reason"] == ""
    assert [rows[k]["reason"] for k in ("b.txt", "c.txt", "d.txt")] == ["invalid_utf8", "binary", "empty_file"]


def test_decode_tells_binary_from_bad_utf8():
    assert decode("h\u00e9".encode()) == ("h\u00e9", "")
    assert decode(b"\xef\xbb\xbfbom") == ("bom", "")
    assert decode(b"\x89PNG\r\n\x1a\n\x00\x00")[1] == "binary"
    assert decode("caf\u00e9".encode("latin-1")) == ("caf\ufffd", "invalid_utf8")


@pytest.mark.parametrize("rel, size, reason", [
    ("json/decoder.py", 100, ""),
    ("json/__pycache__/decoder.cpython-311.pyc", 100, "build_artifact"),
    ("third_party/six.py", 100, "vendored"),
    ("web/node_modules/left-pad/index.js", 100, "vendored"),
    ("lib/site-packages/requests/api.py", 100, "vendored"),
    ("web/dist/app.min.js", 100, "generated"),
    ("proto/api_pb2.py", 100, "generated"),
    ("package-lock.json", 100, "generated"),
    ("generated/table.py", 200_001, "too_large"),
    ("vendor.py", 100, ""),  # a file named like a vendored folder is not in one
])
def test_code_skip_rules(rel, size, reason):
    assert skip_reason(rel, size, "code", ReadConfig(max_code_bytes=200_000)) == reason


def test_code_tree_keeps_path_and_language_in_meta(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f():\n    return 1\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text("var x = 1;")
    rows = rows_of(SourceConfig(name="code", kind="code", format="code", path=str(tmp_path)), tmp_path)
    by = {json.loads(r["meta"])["path"]: r for r in rows}
    assert json.loads(by["pkg/m.py"]["meta"]) == {"path": "pkg/m.py", "bytes": 22, "language": "python"}
    assert by["pkg/m.py"]["id"] == doc_id("code", "pkg/m.py") and by["node_modules/x.js"]["reason"] == "vendored"
    assert [language(p) for p in ("a/b.py", "x.RS", "Makefile", "README", "notes.weird")] == \
        ["python", "rust", "make", "text", "text"]


# ---------------------------------------------------------------- kind: auto, format: auto

CODE = "import os\n\n\ndef main(argv):\n    for name in argv:\n        print(os.path.basename(name))\n    return 0\n"


def test_auto_kind_takes_a_records_own_kind_else_the_detectors(tmp_path):
    records = [{"text": CODE, "kind": "notebook"}, {"text": PROSE * 3, "kind": "book"}, {"text": CODE},
               {"text": PROSE * 3}, {"text": CODE, "kind": 7}, {"text": PROSE * 3, "type": "x"}]
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = rows_of(SourceConfig(name="m", kind="auto", format="jsonl", path=str(tmp_path)), tmp_path)
    assert [r["kind"] for r in rows] == ["notebook", "book", "code", "prose", "code", "prose"]
    assert [r[KIND_BY] for r in rows] == ["record", "record", "detected", "detected", "detected", "detected"]
    metas = [json.loads(r["meta"]) for r in rows]
    assert "kind" not in metas[0] and "kind_detected" not in metas[0]  # the record's kind is the row's
    assert metas[2]["kind_detected"] == "code" and metas[2]["kind_by"] == "content" and metas[2]["kind_score"] > 0.5
    assert metas[3]["kind_detected"] == "prose" and metas[3]["kind_score"] < 0.5
    assert metas[4]["kind"] == 7  # not a kind: kept in meta, the detector decides
    web = rows_of(SourceConfig(name="m", kind="auto", prose_kind="web", format="jsonl", path=str(tmp_path)), tmp_path)
    assert [r["kind"] for r in web] == ["notebook", "book", "code", "web", "code", "web"]


def test_a_fixed_kind_is_every_rows_and_a_records_kind_field_stays_in_meta(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": CODE, "kind": "code"}) + "\n")
    [row] = rows_of(SourceConfig(name="m", kind="web", format="jsonl", path=str(tmp_path)), tmp_path)
    assert row["kind"] == "web" and row[KIND_BY] == "source"
    assert json.loads(row["meta"]) == {"kind": "code", "path": "a.jsonl", "line": 1}


def test_prose_kind_is_for_auto_sources_only():
    with pytest.raises(ValueError, match="prose_kind applies to kind: auto only"):
        SourceConfig(name="m", kind="web", prose_kind="book", format="jsonl", path="x")
    with pytest.raises(ValueError, match="cannot be auto"):
        SourceConfig(name="m", kind="auto", prose_kind="auto", format="jsonl", path="x")


def test_auto_folder_reads_each_file_in_the_format_it_names(tmp_path):
    from curate_texts import NEWS

    files = {
        "site/news.html": NEWS.encode(),
        "site/page": b"<!DOCTYPE html>" + NEWS.encode(),      # no extension: an HTML page by its content
        "src/tool.py": CODE.encode(),
        "src/run": b"#!/bin/sh\nset -e\necho done\n",            # a script without extension
        "src/package.json": json.dumps({"name": "x", "version": "1.0", "private": True}, indent=2).encode(),
        "data/posts.json": b'{"text": "' + PROSE.encode() + b'", "id": "p1"}\n{"text": "second", "id": "p2"}\n',
        "docs/README.md": ("# Tool\n\n" + PROSE + "\n\n```python\n" + CODE + "```\n").encode(),
        "docs/paper.pdf": make_pdf([["A short paper about foxes.", "It has one page."]]),
        "img/logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>\n',
        "node_modules/left-pad/index.js": b"module.exports = function () {};\n",
        "src/__pycache__/tool.cpython-311.pyc": b"\x00\x01",
    }
    for rel, data in files.items():
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(data)
    rows = rows_of(SourceConfig(name="tree", kind="auto", format="auto", path=str(tmp_path / "in")), tmp_path)
    by = {r["_loc"]: r for r in rows}
    got = {loc: (r["kind"], r["reason"]) for loc, r in by.items()}
    assert got == {
        "site/news.html": ("web", ""), "site/page": ("web", ""), "src/tool.py": ("code", ""), "src/run": ("code", ""),
        "src/package.json": ("code", ""), "data/posts.json:1": ("prose", ""), "data/posts.json:2": ("prose", ""),
        "docs/README.md": ("prose", ""), "docs/paper.pdf": ("paper", ""), "img/logo.svg": ("markup", ""),
        "node_modules/left-pad/index.js": ("code", "vendored"),
        "src/__pycache__/tool.cpython-311.pyc": ("prose", "build_artifact")}
    for loc in ("site/news.html", "site/page"):  # pages are read as HTML: their text, not their markup
        assert "Big story of the day" in by[loc]["text"] and "<" not in by[loc]["text"]
        assert json.loads(by[loc]["meta"])["title"] == "News"
    assert by["src/tool.py"]["text"] == CODE
    assert json.loads(by["src/tool.py"]["meta"]) == {"path": "src/tool.py", "bytes": len(CODE), "language": "python",
                                                     "kind_detected": "code", "kind_score": 1.0,
                                                     "kind_by": "extension"}
    assert json.loads(by["src/run"]["meta"])["kind_by"] == "shebang"
    assert by["data/posts.json:1"]["id"] == "p1" and "A short paper" in by["docs/paper.pdf"]["text"]
    assert json.loads(by["docs/README.md"]["meta"])["kind_by"] == "extension"

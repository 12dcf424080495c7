"""Curation pieces around the records (no Ray): readers of every format and their failure modes,
listing, MinHash/LSH, dedup grouping, decontamination, report tallies, shards, mixture."""
from __future__ import annotations

import bz2
import gzip
import json
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from pipeline.config import SourceConfig
from pipeline.curate.config import CurateConfig, DecontaminateConfig, ReadConfig
from pipeline.curate.readers import decode, language, read_files, skip_reason
from pipeline.curate.records import BORN, RAW_BYTES, CurateError, doc_id, make_batch, set_column
from pipeline.curate.report import Tally, build_report, mark_step
from pipeline.curate.sources import infer_source, list_source
from pipeline.layout import Layout

PROSE = "The quick brown fox jumps over the lazy dog while the cat watches from the window. "


def rows_of(src: SourceConfig, folder, cfg: ReadConfig | None = None) -> list[dict]:
    files = list_source(src, Layout(folder))
    out = []
    for batch in read_files(src, files.filesystem, files.base, list(zip(files.paths, files.sizes)), cfg or ReadConfig()):
        out += batch.to_pylist()
    return out


# ---------------------------------------------------------------- test files: WARC and PDF


def warc_record(url: str, body: bytes, content_type: str = "text/html; charset=utf-8", kind: str = "response",
                status: str = "200 OK") -> bytes:
    http = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    if kind == "request":
        http = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
    head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url + kind)}>\r\n"
            f"WARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
            f"Content-Type: application/http; msgtype={kind}\r\nContent-Length: {len(http)}\r\n\r\n").encode()
    return head + http + b"\r\n\r\n"


def page(title: str, body: str) -> bytes:
    return (f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a> <a href='/a'>About us</a>"
            f"</nav><article><h1>{title}</h1><p>{body}</p><p>{body}</p></article>"
            f"<footer>Copyright 2024. All rights reserved.</footer></body></html>").encode()


def make_pdf(pages: list[list[str]], title: str = "A paper") -> bytes:
    """A valid PDF (Helvetica text, one content stream per page), built by hand."""
    kids = " ".join(f"{5 + 2 * i} 0 R" for i in range(len(pages)))
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>", f"<< /Title ({title}) >>".encode()]
    for i, lines in enumerate(pages):
        content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                    f"/Contents {6 + 2 * i} 0 R >>".encode())
        objs.append(f"<< /Length {len(content)} >>\nstream\n{content}\nendstream".encode())
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for k, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{k} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# ---------------------------------------------------------------- JSONL and Parquet


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


# ---------------------------------------------------------------- WARC


def test_warc_html_responses_become_pages_with_url_and_record_id(tmp_path):
    records = [warc_record("http://a.example/x", b"", kind="request"),
               warc_record("http://a.example/x", page("Library news", PROSE * 3)),
               warc_record("http://a.example/logo.png", b"\x89PNG\x00\x00", "image/png"),
               warc_record("http://a.example/gone", page("Gone", "not here"), status="404 Not Found"),
               warc_record("http://b.example/y", page("Caf\u00e9", PROSE).decode().encode("latin-1"),
                           "text/html; charset=iso-8859-1")]
    (tmp_path / "crawl.warc.gz").write_bytes(b"".join(gzip.compress(r) for r in records))
    rows = rows_of(SourceConfig(name="cc", format="warc", path=str(tmp_path)), tmp_path)
    assert [r["reason"] for r in rows] == ["", "not_html", "http_status", ""]
    meta = json.loads(rows[0]["meta"])
    assert meta["url"] == "http://a.example/x" and meta["title"] == "Library news" and meta["path"] == "crawl.warc.gz"
    assert rows[0]["id"] == f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'http://a.example/xresponse')}"
    assert "quick brown fox" in rows[0]["text"] and "About us" not in rows[0]["text"]
    assert "Caf\u00e9" in rows[3]["text"]  # decoded by its declared charset


def test_truncated_and_garbage_warc_files_are_counted(tmp_path):
    good = [warc_record(f"http://a.example/{i}", page(f"Page {i}", PROSE * 4)) for i in range(40)]
    data = b"".join(gzip.compress(r) for r in good)
    (tmp_path / "cut.warc.gz").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "plain.warc").write_bytes(b"".join(good)[:-100])
    (tmp_path / "junk.warc").write_bytes(b"this is not a WARC file\n" * 20)
    rows = rows_of(SourceConfig(name="cc", format="warc", path=str(tmp_path)), tmp_path)
    by_file: dict[str, list[str]] = {}
    for r in rows:
        by_file.setdefault(json.loads(r["meta"])["path"], []).append(r["reason"])
    assert 20 <= by_file["cut.warc.gz"].count("") < 40 and by_file["cut.warc.gz"][-1] == "truncated"
    assert by_file["plain.warc"] == [""] * 39 + ["truncated"]
    assert by_file["junk.warc"] == ["read_error"]


# ---------------------------------------------------------------- whole files: text, pdf, code


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


# ---------------------------------------------------------------- listing and --input


def source(path, fmt="text", name="src"):
    return SourceConfig(name=name, format=fmt, path=path)


def test_listing_folder_file_and_glob(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for rel in ("d/a.txt", "d/sub/b.md", "d/c.html", "d/.hidden.txt", "d/sub/x.jsonl", "d/sub/y.jsonl.zst"):
        (tmp_path / rel).write_text("x")
    layout = Layout(tmp_path)
    files = list_source(source("{root}/d"), layout)
    assert [files.rel(p) for p in files.paths] == ["a.txt", "sub/b.md"] and files.ignored == 4
    assert [files.rel(p) for p in list_source(source("{root}/d/c.html", "html"), layout).paths] == ["c.html"]
    sub = list_source(source("{root}/d/sub", "jsonl"), layout)
    assert [sub.rel(p) for p in sub.paths] == ["x.jsonl", "y.jsonl.zst"]
    assert len(list_source(source("{root}/d/**/*.txt"), layout).paths) == 1  # hidden files only if named


@pytest.mark.parametrize("path, fmt, message", [
    ("{root}/nowhere", "text", "source 'src' (text): path '{root}/nowhere' (= ROOT/nowhere) does not exist"),
    ("{root}/d/*.parquet", "parquet", "matches no files"),
    ("{root}/gone/*.jsonl", "jsonl", "does not exist"),
    ("{root}/d", "pdf", "is a folder with no files with extension .pdf"),
])
def test_listing_errors_name_the_source_and_path(tmp_path, path, fmt, message):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("x")
    with pytest.raises(CurateError) as err:
        list_source(source(path, fmt), Layout(tmp_path))
    assert message.replace("ROOT", str(tmp_path)) in str(err.value)


def test_input_paths_get_format_and_kind_from_their_extension(tmp_path):
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("x")
    (tmp_path / "books" / "b.md").write_text("x")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x")
    (tmp_path / "src" / "b.json").write_text("x")
    got = [(s.format, s.kind) for s in (
        infer_source("/data/crawl/CC-MAIN-1.warc.gz"), infer_source("/data/web.jsonl.zst"),
        infer_source("/data/papers/x.pdf"), infer_source(str(tmp_path / "books")), infer_source(str(tmp_path / "src")),
        infer_source("s3://bucket/fineweb/*.parquet"))]
    assert got == [("warc", "web"), ("jsonl", "web"), ("pdf", "paper"), ("text", "prose"), ("code", "code"),
                   ("parquet", "web")]
    assert infer_source("/x/books", {"books"}).name == "books-2"
    (tmp_path / "books" / ".DS_Store").write_bytes(b"\x00")  # hidden files do not make a folder "mixed"
    assert infer_source(f"file://{tmp_path / 'books'}").format == "text"


# ---------------------------------------------------------------- MinHash and dedup grouping


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


def key_group(rows):
    from pipeline.curate.dedup import _key_rows

    exact = [r for r in rows if r[0] == "exact"]
    tables = []
    if exact:
        extra = pa.table({"id": [r[3] for r in exact], "source": ["s"] * len(exact), "_loc": [r[3] for r in exact],
                          "_exact": pa.array([r[1].to_bytes(16, "little") for r in exact], pa.binary(16))})
        tables.append(_key_rows(np.array([r[1] for r in exact], np.uint64), np.array([r[2] for r in exact]), 4,
                                "exact", extra))
    band = [r for r in rows if r[0] == "band"]
    if band:
        tables.append(_key_rows(np.array([r[1] for r in band], np.uint64), np.array([r[2] for r in band]), 4,
                                "band", None))
    return pa.concat_tables(tables)


def test_one_partition_yields_exact_and_bucket_pairs():
    from pipeline.curate.dedup import resolve_partition

    group = key_group([("exact", 7, 30, "doc-c"), ("exact", 7, 10, "doc-b"), ("exact", 7, 20, "doc-a"),
                       ("exact", 8, 40, "doc-d"),
                       ("band", 99, 5, None), ("band", 99, 3, None), ("band", 99, 9, None), ("band", 98, 1, None)])
    out = resolve_partition(group).to_pylist()
    exact = sorted((r["a"], r["b"], r["duplicate_of"], r["size"]) for r in out if r["_kind"] == "exact")
    assert exact == [(20, 10, "doc-a", 3), (20, 30, "doc-a", 3)]  # the smallest id survives, not the first row
    assert sorted((r["a"], r["b"]) for r in out if r["_kind"] == "band") == [(3, 5), (3, 9)]


def test_components_and_survivors():
    from pipeline.curate.dedup import _unique_pairs, components

    roots = components(np.array([1, 2, 10]), np.array([2, 3, 11]))
    assert roots == {1: 1, 2: 1, 3: 1, 10: 10, 11: 10}
    a, b = _unique_pairs([2, 1, 3, 5], [1, 2, 3, 4])
    assert a.tolist() == [1, 4] and b.tolist() == [2, 5]


# ---------------------------------------------------------------- decontamination


def test_decontamination_drops_or_cuts_documents_quoting_eval_texts(tmp_path):
    from pipeline.curate.decontaminate import Decontaminate, build_index

    evals = tmp_path / "task.jsonl"
    long_q = "Which function of the standard library returns the number of items held in a list or a tuple?"
    evals.write_text(json.dumps({"question": long_q, "choices": ["len", "size"]}) + "\n"
                     + json.dumps({"question": "What does len of the word hello return here?"}) + "\n"
                     + json.dumps({"question": "Too short to match"}) + "\n")
    index = build_index(DecontaminateConfig(files=[str(evals)]), tmp_path)
    assert index.texts == 5 and set(index.keys) == {13, 9}  # two choices and one question too short
    quoting = f"In class today the teacher asked: {long_q.lower().replace('?', '')}! Nobody knew."
    batch = make_batch([{"id": "1", "text": quoting, "source": "s", "kind": "web", "meta": "{}"},
                        {"id": "2", "text": "So what does len of the word hello return here, really?", "source": "s",
                         "kind": "web", "meta": "{}"},
                        {"id": "3", "text": PROSE + " too short to match", "source": "s", "kind": "web", "meta": "{}"}])
    dropped = Decontaminate(index, "drop")(batch)
    assert dropped["reason"].to_pylist() == ["contaminated", "contaminated", ""]
    cut = Decontaminate(index, "cut")(batch).to_pylist()
    assert cut[0]["text"] == "In class today the teacher asked: ! Nobody knew." and cut[0]["reason"] == ""
    assert json.loads(cut[0]["meta"]) == {"decontaminated": 1}
    with pytest.raises(CurateError, match="does not exist"):
        build_index(DecontaminateConfig(files=["{root}/missing.jsonl"]), tmp_path)


def test_bundled_eval_task_is_the_default_decontamination_set(tmp_path):
    from pipeline.curate.decontaminate import build_index

    index = build_index(DecontaminateConfig(), tmp_path)
    assert index.files[0].endswith("evaluation/tasks/pyfacts.jsonl") and not index.empty


# ---------------------------------------------------------------- report, shards, mixture


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


def test_html_report_shows_every_section():
    from pipeline.curate.report_html import render_html

    report = {"input": {"docs": 10, "bytes": 1000}, "output": {"path": "/out", "docs": 4, "bytes": 400},
              "rejected": {"docs": 6}, "seconds": 1.5,
              "steps": {"read": {"docs": 10, "bytes": 1000}, "quality": {"docs": 5, "bytes": 500},
                        "output": {"docs": 4, "bytes": 400}},
              "rejects": {"too_short": 5, "near_duplicate": 1}, "rejects_by_source": {"web": {"too_short": 5}},
              "sources": {"web": {"format": "warc", "kind": "web", "files": 1, "docs": 10, "kept_docs": 4,
                                  "bytes": 1000, "kept_bytes": 400}},
              "languages": {"en": {"docs": 9, "kept": 4}, "<b>": {"docs": 1, "kept": 0}},
              "dedup": {"exact": {"duplicates": 0, "clusters": {}},
                        "fuzzy": {"duplicates": 1, "clusters": {"2": 1}, "threshold": 0.8, "bands": 9, "rows": 13,
                                  "candidate_pairs": 2, "verified_pairs": 1}},
              "pii": {"email": 3, "phone": 0}, "timing": {"cpu_seconds": {"quality": 0.5}},
              "decontamination": {"files": ["/x/pyfacts.jsonl"], "texts": 42, "ngram": 13, "mode": "drop"}}
    html = render_html(report)
    for needle in ("Kept after each step", "too_short", "near_duplicate", "Languages", "size 2", "email",
                   "9 bands x 13 rows", "pyfacts.jsonl", "&lt;b&gt;"):
        assert needle in html
    assert "<script" not in html


def test_shard_plan_is_deterministic_and_respects_sizes(tmp_path):
    from pipeline.curate.shards import plan_shards

    for i in range(10):
        (tmp_path / f"f{i}.txt").write_text("x" * (100 * (i + 1)))
    src = source(str(tmp_path))
    files = list_source(src, Layout(tmp_path))
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


def test_curate_config_defaults_cite_published_thresholds():
    c = CurateConfig()
    q = c.quality
    assert (q.gopher_quality.min_words, q.gopher_quality.max_words, q.gopher_quality.min_stop_words) == (50, 100_000, 2)
    assert q.gopher_repetition.dup_ngram_char_frac[10] == 0.10 and q.gopher_repetition.top_ngram_char_frac[2] == 0.20
    assert (q.c4.min_sentences, q.c4.min_words_per_line, q.fineweb.min_line_punct_ratio) == (5, 3, 0.12)
    assert (c.decontaminate.ngram, c.dedup.fuzzy.threshold, c.dedup.fuzzy.shingle_words) == (13, 0.8, 5)
    fs = pafs.LocalFileSystem()
    assert fs.get_file_info("/").type == pafs.FileType.Directory  # listing works on pyarrow filesystems

"""WARC crawls: HTML responses become pages with their URL and record id; damaged files are counted."""
from __future__ import annotations

import gzip
import json
import uuid

from curate_inputs import PROSE, page, rows_of, warc_record

from pipeline.config import SourceConfig


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

"""WARC files (Common Crawl): HTML responses to main text, one document per page, with its URL.

FastWARC parses the records; the decompression is ours (`streams.open_stream`), because
FastWARC's own gzip reader ends a truncated file quietly. Only `response` records are read:
requests, metadata and warcinfo records describe the crawl and hold no page. The id of a
page is its WARC-Record-ID; the locator is the record's byte offset in the (decompressed) file.
"""
from __future__ import annotations

import re
from typing import Iterator

from pipeline.curate.fileref import FileRef
from pipeline.curate.htmltext import extract
from pipeline.curate.streams import PositionTracking, open_stream

HTML_TYPES = ("text/html", "application/xhtml+xml")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)


def read_warc(ref: FileRef) -> Iterator[dict]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    f = PositionTracking(open_stream(ref.filesystem, ref.path))
    offset = 0
    try:
        records = ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True,
                                  stream_detect=False, fsspec_args=False)
        for record in records:
            offset = record.stream_pos
            yield response_row(ref, record)
    except OSError:
        if f.error is None:
            raise  # not a truncation: file_rows makes it a `read_error`
        # else the cut left half a record header behind the pages already read
    except BaseException as e:
        # FastWARC's Rust core reports an internal failure as pyo3's PanicException, a BaseException:
        # it means this file cannot be parsed, not that the process must stop.
        if type(e).__name__ != "PanicException":
            raise
        yield ref.reject("read_error", at=f"{offset}+", error=f"FastWARC: {e}", offset=offset)
    finally:
        f.close()
    if f.error is not None:  # a compressed file cut short: the pages before the cut are kept
        yield ref.reject("truncated", at="truncated", error=f"{type(f.error).__name__}: {f.error}",
                         offset=f.tell())


def response_row(ref: FileRef, record) -> dict:
    headers = record.headers
    url = headers.get("WARC-Target-URI") or ""
    own_id = (headers.get("WARC-Record-ID") or "").strip("<>") or None
    offset = record.stream_pos
    locator = f"{ref.rel}@{offset}"
    http = record.http_headers
    content_type = (http.get("Content-Type") or "") if http is not None else ""
    meta = {"url": url, "offset": offset, "warc_date": headers.get("WARC-Date"), "content_type": content_type}
    expected = record.content_length
    status = getattr(http, "status_code", None) if http is not None else None
    if status is not None and not 200 <= int(status) < 300:
        return ref.row("", locator, "http_status", expected, own_id, **meta, status=int(status))
    if not content_type.split(";")[0].strip().lower() in HTML_TYPES:
        return ref.row("", locator, "not_html", expected, own_id, **meta)
    if expected > ref.cfg.max_doc_bytes:
        return ref.row("", locator, "too_large", expected, own_id, **meta)
    body = record.reader.read()
    if len(body) < expected:  # an uncompressed file cut inside this record
        return ref.row("", locator, "truncated", len(body), own_id, **meta, expected_bytes=expected)
    html = decode_html(body, content_type)
    meta["title"], text = extract(html, ref.cfg.warc_extractor)
    return ref.row(text, locator, "", len(body), own_id, **meta)


def decode_html(body: bytes, content_type: str) -> str:
    """Page bytes to text: the charset the server declared, else the one resiliparse detects
    (from the meta tag or the bytes); undecodable bytes become U+FFFD."""
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    match = _CHARSET.search(content_type)
    encoding = match.group(1) if match else detect_encoding(body)
    try:
        return bytes_to_str(body, encoding)
    except (LookupError, ValueError):
        return body.decode("utf-8", errors="replace")

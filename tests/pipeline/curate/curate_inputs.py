"""Files and helpers the curate tests build their inputs with (WARC records, PDFs, pages, sources)."""
from __future__ import annotations

import uuid

from pipeline.config import SourceConfig
from pipeline.config.curate import ReadConfig
from pipeline.curate.readers import read_files
from pipeline.curate.sources import list_source
from pipeline.stages import layout_for

PROSE = "The quick brown fox jumps over the lazy dog while the cat watches from the window. "


def rows_of(src: SourceConfig, folder, cfg: ReadConfig | None = None) -> list[dict]:
    files = list_source(src, layout_for(folder))
    out = []
    for batch in read_files(src, files.filesystem, files.base, list(zip(files.paths, files.sizes)), cfg or ReadConfig()):
        out += batch.to_pylist()
    return out


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


def source(path, fmt="text", name="src"):
    return SourceConfig(name=name, format=fmt, path=path)

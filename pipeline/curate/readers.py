"""One reader per source format: a file in, document rows out (plain Python, no Ray).

A shard task (see `shards.py`) streams its files through these readers in batches. A reader
never crashes on bad input: what it cannot use becomes a rejected row with its reason, so it
is counted in the report and kept in `rejects/` for inspection.

    reason          format           what
    malformed_json  jsonl            a line that is not a JSON object (the raw line is kept as text)
    missing_text    jsonl/parquet    a record without a string in `text_field`
    invalid_utf8    all              bytes that are not UTF-8. We do not guess encodings of files: a
                                     wrong guess yields mojibake that looks like text; convert such
                                     sources upstream. The reject keeps the text decoded with U+FFFD.
                                     (WARC responses are decoded by their declared or detected charset.)
    binary          html/text/code   a NUL byte: an image, a compiled file, UTF-16 text
    too_large       all              a file over `curate.read.max_file_bytes` (code: `max_code_bytes`),
                                     a record over `max_doc_bytes`; not read
    empty_file      all              a file without a single record (its path is kept)
    truncated       jsonl/warc/...   a compressed file cut short, or a last record cut off; the rows
                                     before the cut are kept, the cut itself is this one reject
    read_error      all              a file that cannot be opened or parsed (the error is in meta)
    vendored        code             under site-packages, vendor, node_modules, third_party, ...
    build_artifact  code             under __pycache__
    generated       code             lock files, minified bundles, protobuf output (by name)
    not_html        warc             a response that is not an HTML page (content type in meta)
    http_status     warc             a response whose HTTP status is not 2xx
    pdf_error       pdf              a PDF that cannot be parsed or is encrypted

A source of format `auto` reads each file in the format its extension or first bytes name
(`read_auto`), and skips build output, vendored and generated files by path as a code tree does.
A source of kind `auto` gives each row its own kind (`fileref.py`: the record's kind field, else
`kinds.py`'s detector). Blank JSONL lines are not records and are skipped. Hidden files and, in a folder, files with
another format's extension are not read (the report counts them as `files_ignored`). Every
row has a stable `id`: the record's own id field when it has one (WARC: WARC-Record-ID), else
the sha1 of the source name and the locator (`path`, `path:line`, `path:row`), so ids survive
moving the storage root.
"""
from __future__ import annotations

import dataclasses
import io
import json
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.config import SOURCE_FORMATS, SourceConfig
from pipeline.config.curate import ReadConfig
from pipeline.config.data import AUTO
from pipeline.curate.fileref import FileRef
from pipeline.curate.htmltext import extract
from pipeline.curate.kinds import language
from pipeline.curate.records import BORN, KEPT, KIND_BY, RAW_BYTES, make_batch, set_column
from pipeline.curate.sources import format_by_name, relative
from pipeline.curate.streams import READ_ERRORS, open_stream, read_chunk
from pipeline.curate.warc import read_warc

VENDORED_DIRS = frozenset({"site-packages", "dist-packages", "vendor", "vendored", "_vendor",
                           "node_modules", "third_party", "third-party", "bower_components"})
BUILD_DIRS = frozenset({"__pycache__"})
GENERATED_NAMES = frozenset({"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock", "Cargo.lock",
                             "Gemfile.lock", "composer.lock", "go.sum", "uv.lock", "Pipfile.lock"})
GENERATED_SUFFIXES = (".min.js", ".min.css", ".map", "_pb2.py", "_pb2_grpc.py", ".pb.go", ".pb.cc", ".pb.h",
                      ".designer.cs", ".g.dart")
WHOLE_FILE_FORMATS = ("html", "text", "code", "pdf")

BATCH_ROWS = 1000
BATCH_BYTES = 16 << 20
"""A batch is flushed at this many rows or this many bytes of text, whichever comes first."""


def read_files(source: SourceConfig, filesystem: pafs.FileSystem, base: str, files: list[tuple[str, int]],
               cfg: ReadConfig) -> Iterator[pa.Table]:
    """Document rows of `files` (path, size) of one source, in batches, file by file in order."""
    reader = READERS[source.format]
    rows, nbytes = [], 0
    for path, size in files:
        ref = FileRef(source, filesystem, path, relative(path, base), size, cfg)
        for row in file_rows(reader, ref):
            rows.append(row)
            nbytes += len(row["text"])
            if len(rows) >= BATCH_ROWS or nbytes >= BATCH_BYTES:
                yield rows_to_batch(rows)
                rows, nbytes = [], 0
    if rows:
        yield rows_to_batch(rows)


def file_rows(reader: Callable[[FileRef], Iterator[dict]], ref: FileRef) -> Iterator[dict]:
    """A reader's rows for one file; a file with none becomes one `empty_file` reject, and an error
    that escapes the reader becomes one `read_error` reject (after the rows read before it)."""
    n = 0
    try:
        for row in reader(ref):
            n += 1
            yield row
    except READ_ERRORS as e:
        n += 1
        yield ref.reject("read_error", at="error", error=f"{type(e).__name__}: {e}")
    if n == 0:
        yield ref.reject("empty_file", raw=ref.size, bytes=ref.size)


def rows_to_batch(rows: list[dict]) -> pa.Table:
    batch = make_batch(rows)
    batch = set_column(batch, RAW_BYTES, [r[RAW_BYTES] for r in rows], pa.int64())
    batch = set_column(batch, KIND_BY, [r.get(KIND_BY, "source") for r in rows], pa.string())
    return set_column(batch, BORN, ["read"] * len(rows), pa.string())


# ---------------------------------------------------------------- records: jsonl, parquet


def record_row(ref: FileRef, rec: dict, locator: str, raw: int, **position) -> dict:
    """A JSON or Parquet record as a row: the text field becomes `text`, the id field `id`, every
    other field goes into `meta` beside `path` and the position (ours win over a record field). In a
    `kind: auto` source a string in the kind field is the row's kind (and leaves the meta)."""
    text = rec.pop(ref.source.text_field, None)
    own_id = rec.pop(ref.source.id_field, None)
    own_kind = None
    if ref.source.kind == AUTO and isinstance(rec.get(ref.source.kind_field), str):
        own_kind = rec.pop(ref.source.kind_field)
    reason = KEPT if isinstance(text, str) else "missing_text"
    if not isinstance(text, str):
        text = "" if text is None else json.dumps(text, default=str)
    if raw > ref.cfg.max_doc_bytes:
        reason, text = "too_large", ""
    return ref.row(text, locator, reason, raw, own_id, fields=rec, own_kind=own_kind, **position)


READ_BUFFER = 4 << 20
"""Bytes asked of a JSONL stream per read (decompressing streams may hand out fewer)."""


def read_jsonl(ref: FileRef) -> Iterator[dict]:
    """One row per non-blank line; a line that does not parse is a `malformed_json` reject that keeps
    the raw line as its text, and a stream cut short ends with one `truncated` reject.

    Reads end anywhere in a line: `rest` is the start of the line the last read ended in (never a
    newline in it). A line that grows past `max_doc_bytes` before its newline arrives is not held:
    its bytes are counted (`skipped`) and dropped up to its newline, it becomes one `too_large`
    reject, and the bytes after that newline are split into lines like any other read."""
    f = open_stream(ref.filesystem, ref.path)
    limit = ref.cfg.max_doc_bytes
    number, rest = 0, b""
    skipped: int | None = None  # while skipping line `number` (over the limit): its bytes so far
    try:
        while True:
            try:
                chunk = read_chunk(f, READ_BUFFER)
            except READ_ERRORS as e:
                # EOFError: the file was cut short, and the bytes after the last newline are a record cut
                # off by it (the reject keeps them, or counts them when skipped); anything else: the stream
                # cannot be read on. Either way the cut line is this one reject.
                reason = "truncated" if isinstance(e, EOFError) else "read_error"
                cut = rest.decode("utf-8", "replace")[:10_000]
                yield ref.reject(reason, at=reason, raw=len(rest) if skipped is None else skipped,
                                 text=cut, error=f"{type(e).__name__}: {e}",
                                 line=number + 1 if skipped is None else number)
                return
            if not chunk:
                break
            if skipped is not None:
                end = chunk.find(b"\n")
                if end < 0:
                    skipped += len(chunk)
                    continue
                yield ref.row("", f"{ref.rel}:{number}", "too_large", skipped + end, line=number)
                skipped, chunk = None, chunk[end + 1:]
            *complete, rest = (rest + chunk).split(b"\n")
            for raw in complete:
                number += 1
                if raw.strip():
                    yield parse_line(ref, _line_bytes(raw), number)
            if len(rest) - rest.endswith(b"\r") > limit:  # a runaway line: stop holding it (a last \r may end it)
                number += 1
                skipped, rest = len(rest), b""
        if skipped is not None:
            yield ref.row("", f"{ref.rel}:{number}", "too_large", skipped, line=number)
        elif rest.strip():
            yield parse_line(ref, _line_bytes(rest), number + 1)
    finally:
        f.close()


def _line_bytes(raw: bytes) -> bytes:
    """A line without the \\r of a \\r\\n line end (one: the size limit is checked on these bytes,
    also while a line is still arriving, when only one \\r can be its end)."""
    return raw[:-1] if raw.endswith(b"\r") else raw


def parse_line(ref: FileRef, raw: bytes, line: int) -> dict:
    locator = f"{ref.rel}:{line}"
    if len(raw) > ref.cfg.max_doc_bytes:
        return ref.row("", locator, "too_large", len(raw), line=line)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return ref.row(raw.decode("utf-8", errors="replace"), locator, "invalid_utf8", len(raw), line=line)
    try:
        rec = json.loads(text)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        return ref.row(text, locator, "malformed_json", len(raw), line=line)
    return record_row(ref, rec, locator, len(raw), line=line)


def read_parquet(ref: FileRef) -> Iterator[dict]:
    with ref.filesystem.open_input_file(ref.path) as f:  # Parquet needs random access
        row = 0
        for rb in pq.ParquetFile(f).iter_batches(batch_size=1024):
            for rec in rb.to_pylist():
                text = rec.get(ref.source.text_field)
                raw = len(text.encode()) if isinstance(text, str) else 0
                yield record_row(ref, rec, f"{ref.rel}:{row}", raw, row=row)
                row += 1


# ---------------------------------------------------------------- whole files: html, text, code, pdf


def skip_reason(rel: str, size: int, fmt: str, cfg: ReadConfig) -> str:
    """Why a file is rejected before it is read (by its path and size), or KEPT."""
    if fmt == "code":
        if reason := path_reason(rel):
            return reason
        if size > cfg.max_code_bytes:
            return "too_large"
    elif size > cfg.max_file_bytes:
        return "too_large"
    return KEPT


def path_reason(rel: str) -> str:
    """Why a file of a source tree is not read, by its path alone (build output, vendored, generated), or KEPT."""
    parts = set(rel.split("/")[:-1])
    name = rel.rsplit("/", 1)[-1]
    if parts & BUILD_DIRS:
        return "build_artifact"
    if parts & VENDORED_DIRS:
        return "vendored"
    if name in GENERATED_NAMES or name.lower().endswith(GENERATED_SUFFIXES):
        return "generated"
    return KEPT


def decode(data: bytes) -> tuple[str, str]:
    """(text, reason): UTF-8 text, or the reason it is not (`binary`, `invalid_utf8`)."""
    if b"\x00" in data:
        return "", "binary"
    try:
        return data.decode("utf-8-sig"), KEPT
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), "invalid_utf8"


def read_whole_file(ref: FileRef) -> Iterator[dict]:
    """One document per file (html, text, code, pdf); files to skip are rejected unread."""
    fmt = ref.format
    meta = {"bytes": ref.size}
    if fmt == "code":
        meta["language"] = language(ref.rel)
    reason = skip_reason(ref.rel, ref.size, fmt, ref.cfg)
    if reason:
        yield ref.row("", ref.rel, reason, ref.size, **meta)
        return
    with ref.filesystem.open_input_stream(ref.path) as f:
        data = f.read()
    if not data:
        return  # file_rows turns this into `empty_file`
    if fmt == "pdf":
        yield pdf_row(ref, data, meta)
        return
    text, reason = decode(data)
    if fmt == "html" and not reason:
        meta["title"], text = extract(text, ref.cfg.html_extractor)
    yield ref.row(text, ref.rel, reason, len(data), **meta)


def pdf_row(ref: FileRef, data: bytes, meta: dict) -> dict:
    """A PDF's text (pypdf), pages joined by blank lines; `pdf_error` when it cannot be read."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return ref.row("", ref.rel, "pdf_error", len(data), **meta, error="encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        info = reader.metadata
        title = info.title if info is not None and info.title else None
    except (PyPdfError, *READ_ERRORS, KeyError, TypeError, AttributeError, RecursionError) as e:
        # pypdf raises plain KeyError/TypeError on some damaged object tables.
        return ref.row("", ref.rel, "pdf_error", len(data), **meta, error=f"{type(e).__name__}: {e}")
    meta.update(pages=len(pages), **({"title": str(title)} if title else {}))
    return ref.row("\n\n".join(p.strip() for p in pages if p.strip()), ref.rel, KEPT, len(data), **meta)


# ---------------------------------------------------------------- auto: each file in its own format

SNIFF_BYTES = 4096
MAGIC = ((b"%PDF-", "pdf"), (b"PAR1", "parquet"), (b"WARC/", "warc"))
_HTML_OPENINGS = (b"<!doctype html", b"<html")


def read_auto(ref: FileRef) -> Iterator[dict]:
    """A file of an `auto` source in the format it names: build output, vendored and generated files
    are skipped by path as in a code tree, then the format comes from `file_format`."""
    reason = path_reason(ref.rel)
    if reason:
        yield ref.row("", ref.rel, reason, ref.size, bytes=ref.size)
        return
    fmt = file_format(ref)
    yield from READERS[fmt](dataclasses.replace(ref, file_format=fmt))


def file_format(ref: FileRef) -> str:
    """The format of one file of an `auto` source: its extension's (a `.json` file is JSON Lines only
    when its first line is an object with the text field, else a code file, as `package.json` is);
    without a known extension, the format its first bytes show (PDF, Parquet, WARC, an HTML page
    without an extension); `code` (a whole file, kind detected) otherwise."""
    lowered = ref.rel.lower()
    by_name = format_by_name(lowered)
    if by_name and not lowered.endswith(".json"):
        return by_name
    if language(ref.rel) != "text" and not lowered.endswith(".json"):
        return "code"  # a known code or data extension: no need to look inside
    head = _head(ref)
    if lowered.endswith(".json"):
        first = head.split(b"\n", 1)[0].strip()
        try:
            rec = json.loads(first)
        except ValueError:
            rec = None
        return "jsonl" if isinstance(rec, dict) and ref.source.text_field in rec else "code"
    for magic, fmt in MAGIC:
        if head.startswith(magic):
            return fmt
    if head.lstrip()[:20].lower().startswith(_HTML_OPENINGS):
        return "html"
    return "code"


def _head(ref: FileRef) -> bytes:
    if ref.size == 0:
        return b""
    try:
        with ref.filesystem.open_input_stream(ref.path) as f:
            return f.read(SNIFF_BYTES)
    except READ_ERRORS:
        return b""  # the reader it goes to will meet the same error and report it


READERS: dict[str, Callable[[FileRef], Iterator[dict]]] = {
    "jsonl": read_jsonl, "parquet": read_parquet, "warc": read_warc,
    **{fmt: read_whole_file for fmt in WHOLE_FILE_FORMATS}, AUTO: read_auto,
}
assert set(READERS) == set(SOURCE_FORMATS), "one reader per source format (pipeline/config/data.py)"

"""One reader per source format, each a Ray Dataset of document rows (see `records.SCHEMA`).

A reader never crashes on bad input: what it cannot use becomes a rejected row with its
reason, so it is counted in the report and kept in `rejects/` for inspection.

    reason          format         what
    malformed_json  jsonl          a line that is not a JSON object (the raw line is kept as text)
    missing_text    jsonl/parquet  a record without a string in `text_field`
    invalid_utf8    all            bytes that are not UTF-8. We do not guess encodings: a wrong guess
                                   yields mojibake that looks like text; convert such sources upstream.
                                   The reject keeps the text decoded with U+FFFD replacements.
    binary          html/text/code a NUL byte: an image, a compiled file, UTF-16 text
    too_large       html/text/code over `curate.read.max_file_bytes` (code: `max_code_bytes`); not read
    vendored        code           under site-packages, vendor, node_modules, third_party, ...
    build_artifact  code           under __pycache__

Blank JSONL lines are not records and are skipped. Hidden files and, in a folder, files
with another format's extension are not read (the report counts them as `files_ignored`).
Every row has a stable `id`: the record's own id field when it has one, else the sha1 of
the source name and the locator (`path` relative to the source folder, `path:line` or
`path:row`), so ids survive moving the storage root.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

from pipeline.config import SourceConfig
from pipeline.curate.config import ReadConfig
from pipeline.curate.htmltext import html_to_text
from pipeline.curate.records import KEPT, RAW_BYTES, doc_id, dump_meta, make_batch, set_column
from pipeline.curate.sources import SourceFiles, relative

VENDORED_DIRS = frozenset({"site-packages", "dist-packages", "vendor", "vendored", "_vendor",
                           "node_modules", "third_party", "third-party", "bower_components"})
BUILD_DIRS = frozenset({"__pycache__"})
LANGUAGES = {
    ".py": "python", ".pyi": "python", ".pyx": "cython", ".c": "c", ".h": "c", ".cc": "cpp",
    ".cpp": "cpp", ".hpp": "cpp", ".cu": "cuda", ".rs": "rust", ".go": "go", ".java": "java",
    ".kt": "kotlin", ".scala": "scala", ".swift": "swift", ".js": "javascript", ".mjs": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".rb": "ruby", ".php": "php", ".lua": "lua",
    ".r": "r", ".jl": "julia", ".sh": "shell", ".bash": "shell", ".sql": "sql", ".html": "html",
    ".css": "css", ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".md": "markdown", ".rst": "restructuredtext", ".txt": "text", ".cfg": "ini", ".ini": "ini",
}
NAMED_LANGUAGES = {"Makefile": "make", "Dockerfile": "dockerfile", "CMakeLists.txt": "cmake"}


def read_source(src: SourceConfig, files: SourceFiles, cfg: ReadConfig):
    """The document rows of one source, as a lazy Ray Dataset (nothing runs until consumed)."""
    import ray

    from pipeline.curate.datasources import LinesDatasource, ParquetRowsDatasource

    if src.format == "jsonl":
        ds = ray.data.read_datasource(LinesDatasource(files.paths, filesystem=files.filesystem),
                                      override_num_blocks=read_tasks(files.sizes))
        return ds.map_batches(ParseJsonl(src.name, src.kind, src.text_field, src.id_field, files.base),
                              batch_format="pyarrow")
    if src.format == "parquet":
        ds = ray.data.read_datasource(ParquetRowsDatasource(files.paths, filesystem=files.filesystem),
                                      override_num_blocks=read_tasks(files.sizes))
        return ds.map_batches(RecordsToDocs(src.name, src.kind, src.text_field, src.id_field, files.base),
                              batch_format="pyarrow")
    read, sizes, skipped = [], [], []
    for path, size in zip(files.paths, files.sizes):
        reason = skip_reason(files.rel(path), size, src.format, cfg)
        if reason:
            skipped.append(skipped_row(src, files.rel(path), size, reason))
        else:
            read.append(path)
            sizes.append(size)
    parts = []
    if read:
        ds = ray.data.read_binary_files(read, include_paths=True, filesystem=files.filesystem,
                                        override_num_blocks=read_tasks(sizes))
        parts.append(ds.map_batches(FileDocs(src.name, src.kind, src.format, files.base),
                                    batch_format="pyarrow"))
    if skipped:
        table = make_batch(skipped)
        parts.append(ray.data.from_arrow(set_column(table, RAW_BYTES, [r["_size"] for r in skipped], pa.int64())))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def read_tasks(sizes: list[int], bytes_per_task: int = 32 << 20) -> int:
    """Read tasks for files of these sizes: one per 32 MB, at least one, at most one per file.
    (Ray's default of 200 blocks costs a task start per tiny block on a small corpus.)"""
    return max(1, min(len(sizes), -(-sum(sizes) // bytes_per_task)))


# ---------------------------------------------------------------- whole files: html, text, code


def skip_reason(rel: str, size: int, fmt: str, cfg: ReadConfig) -> str:
    """Why a file is rejected before it is read (by its path and size), or KEPT."""
    if fmt == "code":
        parts = set(rel.split("/")[:-1])
        if parts & BUILD_DIRS:
            return "build_artifact"
        if parts & VENDORED_DIRS:
            return "vendored"
        if size > cfg.max_code_bytes:
            return "too_large"
    elif size > cfg.max_file_bytes:
        return "too_large"
    return KEPT


def skipped_row(src: SourceConfig, rel: str, size: int, reason: str) -> dict:
    meta = {"path": rel, "bytes": size}
    if src.format == "code":
        meta["language"] = language(rel)
    return {"id": doc_id(src.name, rel), "text": "", "source": src.name, "kind": src.kind,
            "meta": dump_meta(meta), "reason": reason, "_size": size}


def language(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    if name in NAMED_LANGUAGES:
        return NAMED_LANGUAGES[name]
    dot = name.rfind(".")
    return LANGUAGES.get(name[dot:].lower(), "text") if dot > 0 else "text"


def decode(data: bytes) -> tuple[str, str]:
    """(text, reason): UTF-8 text, or the reason it is not (`binary`, `invalid_utf8`)."""
    if b"\x00" in data:
        return "", "binary"
    try:
        return data.decode("utf-8-sig"), KEPT
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), "invalid_utf8"


@dataclass(frozen=True)
class FileDocs:
    """`read_binary_files` rows (`bytes`, `path`) to documents: one per file."""

    source: str
    kind: str
    format: str
    base: str

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for data, path in zip(batch["bytes"].to_pylist(), batch["path"].to_pylist()):
            rel = relative(path, self.base)
            text, reason = decode(data)
            meta = {"path": rel, "bytes": len(data)}
            if self.format == "html" and not reason:
                meta["title"], text = html_to_text(text)
            if self.format == "code":
                meta["language"] = language(rel)
            rows.append({"id": doc_id(self.source, rel), "text": text, "source": self.source,
                         "kind": self.kind, "meta": dump_meta(meta), "reason": reason})
        out = make_batch(rows)
        return set_column(out, RAW_BYTES, [len(d) for d in batch["bytes"].to_pylist()], pa.int64())


# ---------------------------------------------------------------- records: jsonl, parquet


@dataclass(frozen=True)
class RecordsToDocs:
    """Parquet rows (their own fields plus `_path`, `_row`) to documents. The text field becomes
    `text`, the id field `id`, every other field goes into `meta` beside `path` and `row`
    (ours win over a record field of the same name)."""

    source: str
    kind: str
    text_field: str
    id_field: str
    base: str
    POSITION = "row"  # the record's place in its file, in meta and in the locator `path:row`

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for rec in batch.to_pylist():
            path, row = rec.pop("_path"), rec.pop("_row")
            rows.append(self.document(rec, relative(path, self.base), row))
        out = make_batch(rows)
        nbytes = [r.pop("_raw") for r in rows]
        return set_column(out, RAW_BYTES, nbytes, pa.int64())

    def document(self, rec: dict, rel: str, pos: int, raw_bytes: int | None = None) -> dict:
        text = rec.pop(self.text_field, None)
        own_id = rec.pop(self.id_field, None)
        meta = {**rec, "path": rel, self.POSITION: pos}
        reason = KEPT if isinstance(text, str) else "missing_text"
        if not isinstance(text, str):
            text = "" if text is None else json.dumps(text, default=str)
        doc = {"id": str(own_id) if own_id not in (None, "") else doc_id(self.source, f"{rel}:{pos}"),
               "text": text, "source": self.source, "kind": self.kind, "meta": dump_meta(meta),
               "reason": reason}
        doc["_raw"] = raw_bytes if raw_bytes is not None else len(text.encode())
        return doc


@dataclass(frozen=True)
class ParseJsonl(RecordsToDocs):
    """JSON lines (`_path`, `_line`, `raw` bytes) to documents; a line that does not parse is a
    `malformed_json` reject that keeps the raw line as its text."""

    POSITION = "line"  # 1-based

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for path, line, raw in zip(batch["_path"].to_pylist(), batch["_line"].to_pylist(),
                                   batch["raw"].to_pylist()):
            rows.append(self.parse(raw, relative(path, self.base), line))
        nbytes = [r.pop("_raw") for r in rows]
        return set_column(make_batch(rows), RAW_BYTES, nbytes, pa.int64())

    def parse(self, raw: bytes, rel: str, line: int) -> dict:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._reject(raw.decode("utf-8", errors="replace"), rel, line, "invalid_utf8", len(raw))
        try:
            rec = json.loads(text)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            return self._reject(text, rel, line, "malformed_json", len(raw))
        return self.document(rec, rel, line, raw_bytes=len(raw))

    def _reject(self, text: str, rel: str, line: int, reason: str, nbytes: int) -> dict:
        return {"id": doc_id(self.source, f"{rel}:{line}"), "text": text, "source": self.source,
                "kind": self.kind, "meta": dump_meta({"path": rel, "line": line}), "reason": reason,
                "_raw": nbytes}

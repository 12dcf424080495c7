"""One input file of a source as a reader sees it, and the rows a reader makes of it.

Kept apart from the readers so that every reader module (readers.py, warc.py) imports it
from below, and none imports another. A row's `kind` is decided here: the source's kind,
or for a `kind: auto` source the record's own kind or the detector's (`kinds.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs

from pipeline.config import SourceConfig
from pipeline.config.curate import ReadConfig
from pipeline.config.data import AUTO
from pipeline.curate.kinds import CODE, MARKUP, detect
from pipeline.curate.records import KEPT, KIND_BY, RAW_BYTES, doc_id, dump_meta

PROSE_KINDS = {"warc": "web", "html": "web", "pdf": "paper"}
"""The kind of documents detected as prose, by the format of their file (`prose` for the others),
unless the source names one (`prose_kind`)."""
NAMED_BY_FILE = ("code", "text", "auto")
"""Formats in which a document is a whole file (auto: a file skipped before its format is known),
so that the file's name says what it holds."""


@dataclass(frozen=True)
class FileRef:
    """One input file of a source, as a reader sees it."""

    source: SourceConfig
    filesystem: pafs.FileSystem
    path: str
    rel: str
    """The path relative to the source folder: in `meta`, in the locator and so in default ids."""
    size: int
    cfg: ReadConfig
    file_format: str | None = None
    """The format this file is read in, where the source's is `auto` (else the source's)."""

    @property
    def format(self) -> str:
        return self.file_format or self.source.format

    def row(self, text: str, locator: str, reason: str = KEPT, raw: int | None = None, own_id=None,
            fields: dict | None = None, own_kind: str | None = None, **meta) -> dict:
        """A document row of this file: `fields` (a record's own, any names) and `meta` go into `meta`,
        with `path` (ours win); the id is the record's own or derived from the locator. `own_kind` is
        a record's own kind (used by `kind: auto` sources only)."""
        meta = {**(fields or {}), **meta, "path": self.rel}
        kind, by = self.source.kind, "source"
        if kind == AUTO:
            kind, by = self.kind_of(text, own_kind, meta)
        own = str(own_id) if own_id not in (None, "") else None
        return {"id": own or doc_id(self.source.name, locator), "text": text, "source": self.source.name,
                "kind": kind, "meta": dump_meta(meta), "reason": reason, "_loc": locator,
                RAW_BYTES: len(text.encode("utf-8", "replace")) if raw is None else raw, KIND_BY: by}

    def kind_of(self, text: str, own_kind: str | None, meta: dict) -> tuple[str, str]:
        """(kind, what gave it) of a document of a `kind: auto` source; the detector's decision goes
        into `meta` (`kind_detected`, `kind_score`, `kind_by`: extension, shebang or content)."""
        if isinstance(own_kind, str) and own_kind.strip():
            return own_kind.strip(), "record"
        fmt = self.format
        found, score, basis = detect(text, self.rel if fmt in NAMED_BY_FILE else None)
        meta.update(kind_detected=found, kind_score=score, kind_by=basis)
        if found in (CODE, MARKUP):
            return found, "detected"
        return self.source.prose_kind or PROSE_KINDS.get(fmt, "prose"), "detected"

    def reject(self, reason: str, at: str | None = None, raw: int = 0, text: str = "", **meta) -> dict:
        """A reject for the file as a whole (`at` names a place in it, to keep locators unique)."""
        return self.row(text, self.rel if at is None else f"{self.rel}@{at}", reason, raw, **meta)

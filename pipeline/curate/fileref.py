"""One input file of a source as a reader sees it, and the rows a reader makes of it.

Kept apart from the readers so that every reader module (readers.py, warc.py) imports it
from below, and none imports another.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs

from pipeline.config import SourceConfig
from pipeline.config.curate import ReadConfig
from pipeline.curate.records import KEPT, RAW_BYTES, doc_id, dump_meta


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

    def row(self, text: str, locator: str, reason: str = KEPT, raw: int | None = None, own_id=None,
            fields: dict | None = None, **meta) -> dict:
        """A document row of this file: `fields` (a record's own, any names) and `meta` go into `meta`,
        with `path` (ours win); the id is the record's own or derived from the locator."""
        meta = {**(fields or {}), **meta, "path": self.rel}
        own = str(own_id) if own_id not in (None, "") else None
        return {"id": own or doc_id(self.source.name, locator), "text": text, "source": self.source.name,
                "kind": self.source.kind, "meta": dump_meta(meta), "reason": reason, "_loc": locator,
                RAW_BYTES: len(text.encode("utf-8", "replace")) if raw is None else raw}

    def reject(self, reason: str, at: str | None = None, raw: int = 0, text: str = "", **meta) -> dict:
        """A reject for the file as a whole (`at` names a place in it, to keep locators unique)."""
        return self.row(text, self.rel if at is None else f"{self.rel}@{at}", reason, raw, **meta)

"""The document record and the batch helpers every curation step shares.

A batch is a `pyarrow.Table` of document rows (the unit Ray Data's `map_batches` hands
over). Every row carries a `reason`: empty while the row is kept, the name of the rule
that dropped it otherwise. Steps skip rejected rows and pass them through untouched, so
one stream flows from the reader to the writer and nothing is lost on the way:
input rows == kept rows + rejected rows (split pieces and mixture copies are new rows,
born at their step; see `report.py`).
"""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.compute as pc

from model.errors import UserError

KEPT = ""
"""The `reason` of a row that is still in."""

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.large_string()),
    ("source", pa.string()),
    ("kind", pa.string()),
    ("meta", pa.string()),
    ("reason", pa.string()),
    ("_loc", pa.string()),
])
"""A document row as the readers produce it. `_loc` is the row's locator within its source
(`path`, `path:line`, `path:row`, `path@offset`): with the source name it names the row
uniquely, and it breaks ties between equal ids. Steps add working columns whose names
start with `_` or `pii_`; the writer drops them."""

RAW_BYTES = "_raw_bytes"
"""Working column set by the readers: bytes the row took in the input (line, file), for the report."""
BORN = "_born"
"""Working column: the step a row came into existence at (`read`, or `split` / `mixture` for the
pieces and copies those steps add), so that the report counts each input document once."""

KIND_BY = "_kind_by"
"""Working column set by the readers: what gave the row its `kind`: `source` (the source's fixed kind),
`record` (the record's own kind field) or `detected` (kind: auto, see `kinds.py`), for the report."""
KIND_BY_VALUES = ("source", "record", "detected")

OUTPUT_COLUMNS = ("id", "text", "source", "kind", "meta")
REJECT_COLUMNS = OUTPUT_COLUMNS + ("reason",)


class CurateError(UserError, RuntimeError):
    """A source that cannot be curated (missing path, no files, no documents): told in one line."""


def doc_id(source: str, locator: str) -> str:
    """Stable id of a document without its own: sha1 of the source name and its locator (path, path:line)."""
    return hashlib.sha1(f"{source}\n{locator}".encode()).hexdigest()


def dump_meta(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, default=str)


def make_batch(rows: list[dict]) -> pa.Table:
    """Document rows (dicts with the SCHEMA fields; `reason` defaults to kept, `_loc` to the id) as a batch."""
    cols = {f.name: [r.get(f.name, KEPT if f.name == "reason" else None) for r in rows] for f in SCHEMA}
    cols["_loc"] = [loc if loc is not None else r.get("id") for loc, r in zip(cols["_loc"], rows)]
    return pa.table(cols, schema=SCHEMA)


def kept_mask(batch: pa.Table) -> list[bool]:
    return pc.equal(batch["reason"], KEPT).to_pylist()


def text_bytes(batch: pa.Table) -> pa.Array:
    """UTF-8 bytes of each row's text."""
    return pc.binary_length(batch["text"]).cast(pa.int64())


def set_column(batch: pa.Table, name: str, values, type: pa.DataType | None = None) -> pa.Table:
    """`batch` with column `name` replaced (or appended) by `values`."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=type)
    i = batch.schema.get_field_index(name)
    return batch.set_column(i, name, arr) if i >= 0 else batch.append_column(name, arr)


def with_meta(meta: str, **extra) -> str:
    """A meta JSON string with `extra` keys added (ours win)."""
    return dump_meta({**json.loads(meta), **extra})

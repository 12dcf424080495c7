"""Long documents cut into pieces at paragraph boundaries, each at most `max_chars` long.

A piece is a run of whole paragraphs; a paragraph longer than the limit is cut at line
breaks, a line at spaces, and only a single "word" longer than the limit is cut
mid-word. Pieces become rows of their own: id `<id>#<k>`, meta `part`, `parts` and
`parent`; the first piece inherits the document's place in the report (its input
bytes, its history before this step), the others are born here.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config.curate import SplitConfig
from pipeline.curate.records import BORN, KEPT, RAW_BYTES, set_column, with_meta
from pipeline.curate.report import STEP_PREFIX

_SEPARATORS = ("\n\n", "\n", " ")


def split_text(text: str, max_chars: int) -> list[str]:
    """`text` in pieces of at most `max_chars` characters, cut at the largest boundary that fits."""
    if len(text) <= max_chars:
        return [text]
    return [p for p in _split(text, max_chars, 0) if p.strip()]


def _split(text: str, limit: int, level: int) -> list[str]:
    if len(text) <= limit:
        return [text]
    if level == len(_SEPARATORS):
        return [text[i: i + limit] for i in range(0, len(text), limit)]
    sep = _SEPARATORS[level]
    pieces: list[str] = []
    current = ""
    for unit in text.split(sep):
        if len(unit) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.extend(_split(unit, limit, level + 1))
        elif not current:
            current = unit
        elif len(current) + len(sep) + len(unit) <= limit:
            current += sep + unit
        else:
            pieces.append(current)
            current = unit
    if current:
        pieces.append(current)
    return [p.strip("\n") if sep != " " else p.strip() for p in pieces]


@dataclass(frozen=True)
class SplitLong:
    """The split step: kept rows longer than `max_chars` become several rows."""

    cfg: SplitConfig

    def __call__(self, batch: pa.Table) -> pa.Table:
        lengths = pc.utf8_length(batch["text"]).to_pylist()
        reasons = batch["reason"].to_pylist()
        long_rows = [i for i, (n, r) in enumerate(zip(lengths, reasons)) if r == KEPT and n > self.cfg.max_chars]
        if not long_rows:
            return batch
        texts, ids = batch["text"].to_pylist(), batch["id"].to_pylist()
        locs, metas = batch["_loc"].to_pylist(), batch["meta"].to_pylist()
        pieces = {i: split_text(texts[i], self.cfg.max_chars) for i in long_rows}
        take, new_text, new_id, new_loc, new_meta, first = [], [], [], [], [], []
        for i in range(len(texts)):
            parts = pieces.get(i)
            if parts is None:
                take.append(i)
                new_text.append(texts[i])
                new_id.append(ids[i])
                new_loc.append(locs[i])
                new_meta.append(metas[i])
                first.append(True)
                continue
            for k, part in enumerate(parts):
                take.append(i)
                new_text.append(part)
                new_id.append(f"{ids[i]}#{k}")
                new_loc.append(f"{locs[i]}#{k}")
                new_meta.append(with_meta(metas[i], part=k, parts=len(parts), parent=ids[i]))
                first.append(k == 0)
        out = batch.take(pa.array(take, pa.int64()))
        out = set_column(out, "text", new_text, pa.large_string())
        out = set_column(out, "id", new_id, pa.string())
        out = set_column(out, "_loc", new_loc, pa.string())
        out = set_column(out, "meta", new_meta, pa.string())
        return mark_born(out, pa.array(first), "split")


def mark_born(batch: pa.Table, first: pa.Array, step: str) -> pa.Table:
    """Rows where `first` is false are new (born at `step`): no input bytes, and -1 (not there) in
    the report's columns of the steps before."""
    batch = set_column(batch, RAW_BYTES, pc.if_else(first, batch[RAW_BYTES], 0), pa.int64())
    batch = set_column(batch, BORN, pc.if_else(first, batch[BORN], step), pa.string())
    for name in batch.column_names:
        if name.startswith(STEP_PREFIX):
            batch = set_column(batch, name, pc.if_else(first, batch[name], -1), pa.int64())
    return batch

"""Text normalization: one canonical form for the same text, before filters and dedup look at it."""
from __future__ import annotations

import re
import unicodedata

import pyarrow as pa

from pipeline.curate.records import kept_mask, set_column

_LINE_BREAKS = re.compile(r"\r\n|[\r\x85\u2028\u2029]")
# C0/C1 control characters except \t and \n, plus invisible characters that only get in the way
# of matching (byte-order mark / zero-width no-break space, zero-width space).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u200b]")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{4,}")  # 3 or more blank lines


def normalize_text(text: str) -> str:
    """NFC, one kind of line ending, no control characters, no trailing spaces, at most 2 blank lines
    in a row (PEP 8 code keeps its two blank lines), no blank lines at either end."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    text = _TRAILING.sub("", text)
    text = _BLANK_RUNS.sub("\n\n\n", text)
    return text.strip("\n")


def normalize_batch(batch: pa.Table) -> pa.Table:
    """The normalize step: kept rows get normalized text; rejected rows pass through untouched."""
    texts = batch["text"].to_pylist()
    out = [normalize_text(t) if keep else t for t, keep in zip(texts, kept_mask(batch))]
    return set_column(batch, "text", out, pa.large_string())

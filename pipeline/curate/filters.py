"""Quality rules: each one keeps a document or names the reason it drops it.

Prose (web pages, books, posts) and code get different rules: code is full of symbols and
repeats lines like `return None` or `}` by nature, so the symbol-ratio and repeated-lines
rules would throw away good code; instead code is checked for minified or generated lines
and for a low share of letters and digits (the StarCoder data filters do the same).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from pipeline.curate.config import QualityConfig
from pipeline.curate.records import KEPT, kept_mask, set_column

CODE_KINDS = frozenset({"code"})


def symbol_ratio(text: str) -> float:
    """Share of characters that are neither letters, digits nor whitespace."""
    if not text:
        return 0.0
    return sum(not (c.isalnum() or c.isspace()) for c in text) / len(text)


def duplicate_line_fraction(text: str) -> float:
    """Share of non-blank lines that repeat an earlier line of the same document."""
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return 0.0
    return 1 - len(set(lines)) / len(lines)


def alnum_fraction(text: str) -> float:
    return sum(c.isalnum() for c in text) / len(text) if text else 0.0


def quality_reason(text: str, kind: str, cfg: QualityConfig) -> str:
    """The first rule `text` breaks (its reason), or KEPT."""
    words = len(text.split())
    if words < cfg.min_words:
        return "too_short"
    if words > cfg.max_words:
        return "too_long"
    if kind in CODE_KINDS:
        if max(map(len, text.split("\n"))) > cfg.code_max_line_length:
            return "long_lines"
        if alnum_fraction(text) < cfg.code_min_alnum_fraction:
            return "low_alnum"
        return KEPT
    if symbol_ratio(text) > cfg.max_symbol_ratio:
        return "symbol_ratio"
    if duplicate_line_fraction(text) > cfg.max_duplicate_line_fraction:
        return "repeated_lines"
    return KEPT


@dataclass(frozen=True)
class QualityFilter:
    """The quality step: sets `reason` on kept rows that break a rule; rejected rows pass through."""

    cfg: QualityConfig

    def __call__(self, batch: pa.Table) -> pa.Table:
        reasons = [
            quality_reason(text, kind, self.cfg) if keep else reason
            for text, kind, reason, keep in zip(batch["text"].to_pylist(), batch["kind"].to_pylist(),
                                                batch["reason"].to_pylist(), kept_mask(batch))
        ]
        return set_column(batch, "reason", reasons, pa.string())

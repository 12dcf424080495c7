"""The `curate` config section: which steps run and their thresholds."""
from __future__ import annotations

from pydantic import Field

from pipeline.section import Section


class QualityConfig(Section):
    enabled: bool = True
    min_words: int = Field(default=20, ge=0)
    """Documents with fewer words are dropped (`too_short`)."""
    max_words: int = Field(default=200_000, ge=1)
    """Documents with more words are dropped (`too_long`)."""
    max_symbol_ratio: float = Field(default=0.5, ge=0, le=1)
    """Most non-alphanumeric, non-space characters a prose document may have (`symbol_ratio`)."""
    max_duplicate_line_fraction: float = Field(default=0.3, ge=0, le=1)
    """Most lines that may repeat another line of the same document (`repeated_lines`)."""


class PiiConfig(Section):
    enabled: bool = True
    emails: bool = True
    phones: bool = True


class DedupConfig(Section):
    exact: bool = True
    """Drop documents whose normalized text repeats an earlier one (the smallest id survives)."""


class CurateConfig(Section):
    normalize: bool = True
    """Unicode NFC, control characters removed, whitespace tidied."""
    quality: QualityConfig = Field(default_factory=QualityConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    rows_per_shard: int = Field(default=2000, ge=1)
    """Documents per output Parquet shard (at most)."""

"""The `curate` config section: which steps run and their thresholds."""
from __future__ import annotations

from pydantic import Field

from pipeline.section import Section


class ReadConfig(Section):
    max_file_bytes: int = Field(default=64_000_000, ge=1)
    """html and text files larger than this are rejected (`too_large`) without being read."""
    max_code_bytes: int = Field(default=200_000, ge=1)
    """Code files larger than this are rejected (`too_large`): at that size a source file is
    almost always generated code or data."""


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
    code_max_line_length: int = Field(default=1000, ge=1)
    """Code only: a longer line means minified or generated code (`long_lines`)."""
    code_min_alnum_fraction: float = Field(default=0.25, ge=0, le=1)
    """Code only: fewer letters and digits than this share means data or noise (`low_alnum`)."""


class PiiConfig(Section):
    enabled: bool = True
    emails: bool = True
    phones: bool = True


class DedupConfig(Section):
    exact: bool = True
    """Drop documents whose normalized text repeats an earlier one (the smallest id survives)."""


class CurateConfig(Section):
    read: ReadConfig = Field(default_factory=ReadConfig)
    normalize: bool = True
    """Unicode NFC, control characters removed, whitespace tidied."""
    quality: QualityConfig = Field(default_factory=QualityConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    rows_per_shard: int = Field(default=2000, ge=1)
    """Documents per output Parquet shard (at most)."""

"""The raw sources to curate."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.base import Section

SOURCE_FORMATS = ("jsonl", "parquet", "warc", "html", "text", "pdf", "code", "auto")
"""Every format a source can be read in (pipeline/curate/readers.py has one reader for each);
`auto` reads each file of a folder in the format its extension or content names."""

AUTO = "auto"
"""The kind (and format) that is decided per document (per file) rather than for the whole source."""


class SourceConfig(Section):
    name: str = Field(min_length=1)
    """The source's name, kept in every document's `source` column."""
    kind: str = Field(default="web", min_length=1)
    """What the text is: web, code, book, paper, legal, prose, ... (the quality rules go by it), or
    `auto`: each document's own (a record's `kind_field`, else detected from its content and file
    name: code, markup, or `prose_kind`; `meta.kind_detected`, `meta.kind_score`)."""
    format: Literal[SOURCE_FORMATS]  # type: ignore[valid-type]
    """How to read it: jsonl (.gz, .zst) / parquet records, warc crawls (HTML responses), html pages,
    plain text or markdown files, pdf documents, a source-code tree, or `auto`: every file in the
    format its extension (else its content) names, source code for anything else."""
    path: str = Field(min_length=1)
    """A file, a folder or a glob; `{root}` and `{sample}` expand to the storage root and the sample corpus."""
    text_field: str = "text"
    """For jsonl/parquet: the field holding the text."""
    id_field: str = "id"
    """For jsonl/parquet: the field holding a record's own id, kept when present."""
    kind_field: str = "kind"
    """For jsonl/parquet with `kind: auto`: the field holding a record's own kind, used when it holds
    a string (the detector decides for the others). With a fixed kind the field stays in `meta`."""
    prose_kind: str | None = Field(default=None, min_length=1)
    """With `kind: auto`: the kind of the documents detected as prose. None: `web` for warc and html
    (pages), `paper` for pdf, `prose` for the rest (Gopher's rules, not the web-only C4 and FineWeb)."""
    weight: float = Field(default=1.0, gt=0)
    """Mixture weight applied by the training loader each epoch: above 1 up-samples, below 1
    down-samples this source (the curated files are not copied)."""
    curate_weight: float = Field(default=1.0, gt=0)
    """Mixture weight applied at curation: the curated output holds each kept document int(w) times,
    plus one more copy for a deterministic (w - int(w)) share of them; below 1, a deterministic
    w share is kept (the rest are `downsampled` rejects). Copies keep the document's id, so they
    fall into the same train/validation split. Multiplies with `weight`; use one of the two."""

    @model_validator(mode="after")
    def _prose_kind_with_auto_only(self):
        if self.prose_kind is not None and self.kind != AUTO:
            raise ValueError(f"prose_kind applies to kind: auto only (this source's kind is {self.kind!r})")
        if self.prose_kind == AUTO:
            raise ValueError("prose_kind names the kind prose gets: it cannot be auto")
        return self


class DataConfig(Section):
    sample: bool = True
    """Build the bundled sample corpus under `<root>/sample` before curating (from this Python's own
    standard library and documentation: nothing is downloaded)."""
    sources: list[SourceConfig] = Field(min_length=1)
    """The raw sources to curate."""

    @model_validator(mode="after")
    def _unique_names(self):
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self

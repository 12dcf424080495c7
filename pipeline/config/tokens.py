"""The tokenizer and the packing of tokens into training sequences."""
from __future__ import annotations

from pydantic import Field, model_validator

from pipeline.config.base import Section


class TokenizerConfig(Section):
    vocab_size: int = Field(default=4096, ge=300, le=1_000_000)
    """BPE vocabulary size, special tokens included (at least the 256 bytes plus specials)."""
    min_frequency: int = Field(default=2, ge=1)
    """A merge must occur this often to be learned."""
    max_docs: int | None = Field(default=None, ge=1)
    """Train on at most this many curated documents (a deterministic sample); None uses all."""
    path: str | None = None
    """Use this existing tokenizer.json instead of training one."""


class TokenizeConfig(Section):
    seq_len: int = Field(default=256, ge=8)
    """Tokens per packed training sequence (each row stores seq_len + 1 tokens: inputs and shifted targets)."""
    val_fraction: float = Field(default=0.05, gt=0, lt=0.5)
    """Share of documents, chosen by a hash of their id, held out for validation."""
    batch_size: int = Field(default=256, ge=1)
    """Documents per tokenizer call and per packed shard (of each split and source), at most."""
    batch_mb: float = Field(default=1.0, gt=0)
    """Text per batch, about: files of long documents get fewer than batch_size per batch (the
    estimate is per file, from the text column's size in its Parquet footer). This bounds the
    memory of one tokenizer call and keeps batches small enough to share out among the tasks."""
    concurrency: int = Field(default=2, ge=1)
    """Tokenize tasks running at once, one CPU and one tokenizer thread each."""

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data):
        """`num_actors` (tokenize ran in an actor pool until 2026-12) still means `concurrency`."""
        if isinstance(data, dict) and "num_actors" in data:
            data = dict(data)
            if "concurrency" in data:
                raise ValueError("num_actors is the old name of concurrency: give one of them")
            data["concurrency"] = data.pop("num_actors")
        return data

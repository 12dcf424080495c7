"""The curated corpus as the tokenizer stages read it, and the error they report."""
from __future__ import annotations

from pathlib import Path

from model.errors import UserError


class TokenizeError(UserError, RuntimeError):
    """A tokenizer or tokenize input problem, told to the user without a traceback."""


def curated_files(curated_dir: Path) -> list[str]:
    """The curated shards (top level only: `rejects/` holds dropped rows)."""
    files = sorted(str(p) for p in Path(curated_dir).glob("*.parquet"))
    if not files:
        raise TokenizeError(f"no curated Parquet shards in {curated_dir}: run `ownlm curate` first")
    return files


def iter_texts(curated_dir: Path, max_docs: int | None = None, batch_rows: int = 1024):
    """Stream curated texts; with max_docs, a deterministic sample spread over the corpus."""
    import pyarrow.dataset as pads  # pulls in pandas: only when reading

    dataset = pads.dataset(curated_files(curated_dir), format="parquet")
    total = dataset.count_rows()
    stride = max(1, total // max_docs) if max_docs else 1
    seen = taken = 0
    for batch in dataset.to_batches(columns=["text"], batch_size=batch_rows):
        for text in batch.column(0).to_pylist():
            if seen % stride == 0 and (max_docs is None or taken < max_docs):
                taken += 1
                yield text
            seen += 1


def curated_rows(files: list[str]) -> int:
    """Documents in the curated shards, from their Parquet footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)

"""The curated corpus as the tokenizer stages read it, and the error they report."""
from __future__ import annotations

from model.errors import UserError
from pipeline.storage import StoragePath, on_one_filesystem, resolve


class TokenizeError(UserError, RuntimeError):
    """A tokenizer or tokenize input problem, told to the user without a traceback."""


def curated_files(curated_dir: StoragePath) -> list[StoragePath]:
    """The curated shards (top level only: `rejects/` holds dropped rows)."""
    files = sorted(resolve(curated_dir).glob("*.parquet"), key=str)
    if not files:
        raise TokenizeError(f"no curated Parquet shards in {curated_dir}: run `ownlm curate` first")
    return files


def iter_texts(curated_dir: StoragePath, max_docs: int | None = None, batch_rows: int = 1024):
    """Stream curated texts; with max_docs, a deterministic sample spread over the corpus."""
    import pyarrow.dataset as pads  # pulls in pandas: only when reading

    fs, files = on_one_filesystem(curated_files(curated_dir))
    dataset = pads.dataset(files, format="parquet", filesystem=fs)
    total = dataset.count_rows()
    stride = max(1, total // max_docs) if max_docs else 1
    seen = taken = 0
    for batch in dataset.to_batches(columns=["text"], batch_size=batch_rows):
        for text in batch.column(0).to_pylist():
            if seen % stride == 0 and (max_docs is None or taken < max_docs):
                taken += 1
                yield text
            seen += 1


def curated_rows(files: list[StoragePath]) -> int:
    """Documents in the curated shards, from their Parquet footers (no data read)."""
    import pyarrow.parquet as pq

    fs, paths = on_one_filesystem(files)
    return sum(pq.ParquetFile(p, filesystem=fs).metadata.num_rows for p in paths)

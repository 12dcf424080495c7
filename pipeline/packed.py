"""Packed token shards on disk: the record between `tokenize` and `train`/`eval`.

Layout under the tokens folder:

    manifest.json          seq_len, dtype, special ids, tokenizer fingerprint, per-split files and counts
    train/shard-00000.npy  2-D array (rows, seq_len + 1): inputs are row[:-1], targets row[1:]
    val/shard-00000.npy

Rows hold documents joined by the end-of-text token; only the very last row of a
split may end in padding (`pad_id`), which the loss ignores. Shards are plain
`.npy` so that readers memory-map them: a worker touches only the rows it reads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterator

import numpy as np

from model.errors import MissingInput
from pipeline.storage import StoragePath, local_copy, resolve, write_text

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    seq_len: int
    dtype: str
    eot_id: int
    pad_id: int
    tokenizer_fingerprint: str
    splits: dict[str, dict] = field(default_factory=dict)
    """split -> {"files": [relative paths], "rows": int, "tokens": int, "documents": int, "by_source": {...}}"""

    @classmethod
    def read(cls, tokens_dir: str | StoragePath) -> "Manifest":
        path = resolve(tokens_dir) / MANIFEST
        if not path.is_file():
            raise MissingInput(f"{path} not found: run `ownlm tokenize` first")
        return cls(**json.loads(path.read_text()))

    def write(self, tokens_dir: str | StoragePath) -> None:
        write_text(resolve(tokens_dir) / MANIFEST, json.dumps(self.__dict__, indent=2))


class PackedSplit:
    """Random access to the rows of one split across its shards (memory-mapped; the shards of a
    remote tokens folder are read from a copy in this node's cache, pipeline/storage.py)."""

    def __init__(self, tokens_dir: str | StoragePath, split: str):
        self.dir = local_copy(tokens_dir)
        self.manifest = Manifest.read(self.dir)
        if split not in self.manifest.splits:
            raise KeyError(f"split {split!r} not in {self.dir / MANIFEST} "
                           f"(has: {', '.join(self.manifest.splits)})")
        self.split = split
        self.files = [self.dir / f for f in self.manifest.splits[split]["files"]]

    @cached_property
    def _shards(self) -> list[np.ndarray]:
        return [np.load(f, mmap_mode="r") for f in self.files]

    @cached_property
    def _offsets(self) -> np.ndarray:
        return np.cumsum([0] + [len(s) for s in self._shards])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def source_rows(self) -> dict[str, np.ndarray]:
        """Global row indices of each source (rows never mix sources; see pipeline/tokenize.py)."""
        sources = self.manifest.splits[self.split].get("sources")
        if not sources:  # a manifest without per-source packing: one anonymous source
            return {"": np.arange(len(self))}
        index = {f.relative_to(self.dir).as_posix(): i for i, f in enumerate(self.files)}
        out = {}
        for name, info in sources.items():
            spans = [np.arange(self._offsets[index[f]], self._offsets[index[f] + 1]) for f in info["files"]]
            out[name] = np.concatenate(spans) if spans else np.empty(0, dtype=np.int64)
        return out

    @property
    def pad_id(self) -> int:
        return self.manifest.pad_id

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """The rows at these global indices, as int64 (rows, seq_len + 1)."""
        indices = np.asarray(indices, dtype=np.int64)
        shard = np.searchsorted(self._offsets, indices, side="right") - 1
        out = np.empty((len(indices), self.manifest.seq_len + 1), dtype=np.int64)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._shards[s][indices[sel] - self._offsets[s]]
        return out

    def batches(self, batch_size: int, max_batches: int | None = None) -> Iterator[np.ndarray]:
        """In order, for evaluation: yields int64 arrays (b, seq_len + 1)."""
        yield from self._batches_of(np.arange(len(self)), batch_size, max_batches)

    def source_batches(self, batch_size: int, max_batches: int | None = None) -> dict[str, Iterator[np.ndarray]]:
        """Each source's rows in order, in batches of its own (at most max_batches per source)."""
        return {source: self._batches_of(indices, batch_size, max_batches)
                for source, indices in self.source_rows().items()}

    def _batches_of(self, indices: np.ndarray, batch_size: int, max_batches: int | None) -> Iterator[np.ndarray]:
        for i, start in enumerate(range(0, len(indices), batch_size)):
            if max_batches is not None and i >= max_batches:
                return
            yield self.rows(indices[start: start + batch_size])


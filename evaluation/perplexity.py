"""Held-out loss, perplexity and bits per byte over packed token shards, per source.

The mean is over tokens, not batches: the summed negative log-likelihood of every scored
target divided by their count, so a short last batch, or one ending in padding, weighs
exactly its tokens. Padding targets are excluded from both sums.

Rows never mix sources (pipeline/tokenize.py packs each source apart and the manifest lists
each source's shards), so every figure is also reported per source, and the overall figure
is the token-weighted sum of the sources'.

Bits per byte compare models across tokenizers: the NLL of the text's tokens in bits over
the UTF-8 bytes they stand for. A byte-level BPE token stands for a fixed byte string, so a
table of byte lengths per token id (`token_byte_lengths`) gives the bytes of any target
without the text. Special tokens (end-of-text between documents, padding) stand for no
bytes; their targets count in the loss and perplexity but not in bits per byte.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.objectives import IGNORE_INDEX, shift_for_next_token
from pipeline.packed import PackedSplit


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens), as an int64 array.

    For a byte-level BPE (the project's tokenizer) every character of a token's vocabulary
    string is one byte; for any other tokenizer the token is decoded on its own."""
    backend = tokenizer.backend if hasattr(tokenizer, "backend") else tokenizer
    vocab = backend.get_vocab(with_added_tokens=True)
    special = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    byte_level = type(backend.decoder).__name__ == "ByteLevel"
    out = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
    for token, i in vocab.items():
        if token not in special:
            out[i] = len(token) if byte_level else len(backend.decode([i]).encode("utf-8"))
    return out


@dataclass
class _Sums:
    nll: float = 0.0  # nats, over every scored target
    tokens: int = 0
    text_nll: float = 0.0  # nats, over targets that stand for bytes
    bytes: int = 0
    batches: int = 0
    rows: int = 0

    def add(self, other: "_Sums") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def report(self, with_bytes: bool) -> dict:
        loss = self.nll / self.tokens
        out = {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
               "tokens": self.tokens, "batches": self.batches, "rows": self.rows}
        if with_bytes and self.bytes:
            out.update(bits_per_byte=self.text_nll / math.log(2) / self.bytes, bytes=self.bytes,
                       bytes_per_token=self.bytes / self.tokens)
        return out


def _score(model, rows: np.ndarray, pad_id: int, byte_lengths: np.ndarray | None, device) -> _Sums:
    inputs, targets = shift_for_next_token(torch.as_tensor(rows, dtype=torch.long), pad_id)
    inputs, targets = inputs.to(device), targets.to(device)
    logits = model(inputs)  # (B, T, V)
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                          reduction="none")  # (B*T,), 0 where ignored
    flat = targets.flatten()
    scored = flat != IGNORE_INDEX
    sums = _Sums(nll=nll.sum().item(), tokens=int(scored.sum()), batches=1, rows=len(rows))
    if byte_lengths is not None:
        table = torch.as_tensor(byte_lengths, device=flat.device)
        ids = flat.clamp(min=0, max=len(byte_lengths) - 1)
        nbytes = torch.where(scored & (flat < len(byte_lengths)), table[ids], torch.zeros_like(flat))
        sums.bytes = int(nbytes.sum())
        sums.text_nll = nll[nbytes > 0].sum().item()
    return sums


@torch.inference_mode()
def perplexity(model, tokens_dir: str | Path, split: str = "val", batch_size: int = 8,
               max_batches: int | None = None, device: str | torch.device = "cpu",
               tokenizer=None) -> dict:
    """Mean next-token NLL of `model` on one split of a packed tokens folder.

    Returns {"loss": nats per token, "perplexity": exp(loss), "bits_per_token": loss / ln 2,
    "tokens": scored targets, "batches": batches read, "rows": rows read}, plus
    "bits_per_byte", "bytes" and "bytes_per_token" when `tokenizer` is given, plus
    "sources": {name: the same figures} when the split's rows are packed per source.
    max_batches caps the batches read from each source. The model should already be on
    `device`; it runs in eval mode and gets its previous mode back afterwards.
    """
    data = PackedSplit(tokens_dir, split)
    seq_len, max_len = data.manifest.seq_len, model.cfg.max_seq_len
    if seq_len > max_len:
        raise ValueError(f"{tokens_dir} holds rows of seq_len={seq_len}, longer than the model's "
                         f"max_seq_len={max_len}: re-tokenize with a shorter seq_len")
    if getattr(model.cfg, "family", "causal") == "masked":
        raise ValueError("perplexity is a next-token measure; a masked (BERT-style) model has none")
    byte_lengths = token_byte_lengths(tokenizer) if tokenizer is not None else None
    was_training = model.training
    model.eval()
    total, per_source = _Sums(), {}
    try:
        for source, indices in data.source_rows().items():
            sums = _Sums()
            for b, start in enumerate(range(0, len(indices), batch_size)):
                if max_batches is not None and b >= max_batches:
                    break
                sums.add(_score(model, data.rows(indices[start : start + batch_size]), data.pad_id,
                                byte_lengths, device))
            per_source[source] = sums
            total.add(sums)
    finally:
        model.train(was_training)
    if total.tokens == 0:
        raise ValueError(f"split {split!r} of {tokens_dir} has no tokens to score")
    out = total.report(byte_lengths is not None)
    named = {s: v for s, v in per_source.items() if s and v.tokens}
    if named:
        out["sources"] = {s: v.report(byte_lengths is not None) for s, v in sorted(named.items())}
    return out

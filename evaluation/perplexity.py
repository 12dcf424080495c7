"""Held-out loss, perplexity and bits per byte per source, the unigram baseline, and the
masked-LM loss, over batches of packed rows (int arrays (B, seq_len + 1): inputs are row[:-1],
targets row[1:]). Where the rows come from is the caller's business (pipeline/evaluate.py reads
them from the packed token shards).

The mean is over tokens, not batches: the summed negative log-likelihood of every scored
target divided by their count, so a short last batch, or one ending in padding, weighs
exactly its tokens. Padding targets are excluded from both sums.

Rows never mix sources (the tokenize stage packs each source apart), so every figure is also
reported per source, and the overall figure is the token-weighted sum of the sources'.

Bits per byte compare models across tokenizers: the NLL of the text's tokens in bits over
the UTF-8 bytes they stand for. A byte-level BPE token stands for a fixed byte string, so a
table of byte lengths per token id (`token_byte_lengths`) gives the bytes of any target
without the text. Special tokens (end-of-text between documents, padding) stand for no
bytes; their targets count in the loss and perplexity but not in bits per byte.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.names import metric_name
from model.errors import InputError
from model.objectives import IGNORE_INDEX, loss_terms, shift_for_next_token

Batches = Iterable[np.ndarray]
"""Row batches, each an int array (B, seq_len + 1)."""


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
def perplexity(model, sources: Mapping[str, Batches], pad_id: int, tokenizer=None,
               device: str | torch.device = "cpu") -> dict:
    """Mean next-token NLL of `model` over every source's row batches (padding `pad_id` excluded).

    Returns {"loss": nats per token, "perplexity": exp(loss), "bits_per_token": loss / ln 2,
    "tokens": scored targets, "batches": batches read, "rows": rows read}, plus
    "bits_per_byte", "bytes" and "bytes_per_token" when `tokenizer` is given, plus
    "sources": {name: the same figures} for the named sources (a source named "" is rows of
    no particular source). The model should already be on `device`; it runs in eval mode and
    gets its previous mode back afterwards.
    """
    if getattr(model.cfg, "family", "causal") == "masked":
        raise InputError("perplexity is a next-token measure; a masked (BERT-style) model has none")
    byte_lengths = token_byte_lengths(tokenizer) if tokenizer is not None else None
    was_training = model.training
    model.eval()
    total, per_source = _Sums(), {}
    try:
        for source, batches in sources.items():
            sums = _Sums()
            for rows in batches:
                _check_length(rows, model.cfg.max_seq_len)
                sums.add(_score(model, rows, pad_id, byte_lengths, device))
            per_source[source] = sums
            total.add(sums)
    finally:
        model.train(was_training)
    if total.tokens == 0:
        raise InputError("no tokens to score")
    out = total.report(byte_lengths is not None)
    named = {s: v for s, v in per_source.items() if s and v.tokens}
    if named:
        out["sources"] = {s: v.report(byte_lengths is not None) for s, v in sorted(named.items())}
    return out


def _check_length(rows: np.ndarray, max_seq_len: int) -> None:
    if rows.shape[1] - 1 > max_seq_len:
        raise InputError(f"rows of seq_len={rows.shape[1] - 1} are longer than the model's "
                         f"max_seq_len={max_seq_len}: re-tokenize with a shorter seq_len")


def perplexity_metrics(ppl: dict) -> dict[str, float]:
    """`perplexity`'s report as MLflow metrics: eval/perplexity, eval/source/<source>/loss, ..."""
    metrics = {"eval/val_loss": ppl["loss"], "eval/perplexity": ppl["perplexity"],
               "eval/bits_per_token": ppl["bits_per_token"]}
    if "bits_per_byte" in ppl:
        metrics["eval/bits_per_byte"] = ppl["bits_per_byte"]
    for source, s in ppl.get("sources", {}).items():
        for key in ("loss", "perplexity", "bits_per_byte"):
            if key in s:
                metrics[metric_name("eval", "source", source, key)] = s[key]
    return metrics


def unigram_loss(train: Batches, val: Batches, pad_id: int) -> float:
    """Cross-entropy (nats/token) of the val targets under the train targets' unigram distribution.

    The floor any model that learned something must beat: it knows token frequencies and no
    context. Add-one smoothing over every id seen in either split keeps tokens unseen in training
    finite; padding is never a target.
    """
    train_counts, train_max = _target_counts(train)
    val_counts, val_max = _target_counts(val)
    vocab = max(train_max, val_max) + 1
    counts = np.ones(vocab, dtype=np.float64)
    counts[: len(train_counts)] += train_counts
    counts[pad_id] = 0
    logp = np.log(counts / counts.sum(), where=counts > 0, out=np.full(vocab, -np.inf))
    scored = np.zeros(vocab, dtype=np.float64)
    scored[: len(val_counts)] = val_counts
    scored[pad_id] = 0
    return float(-(scored[scored > 0] * logp[scored > 0]).sum() / max(scored.sum(), 1))


def _target_counts(batches: Batches) -> tuple[np.ndarray, int]:
    """How often each id is a target, and the largest id anywhere in the rows."""
    counts, largest = np.zeros(0, dtype=np.int64), 0
    for rows in batches:
        largest = max(largest, int(rows.max()))
        found = np.bincount(rows[:, 1:].ravel())
        if len(found) > len(counts):
            counts = np.pad(counts, (0, len(found) - len(counts)))
        counts[: len(found)] += found
    return counts, largest


@torch.no_grad()
def masked_lm_loss(model, batches: Batches, pad_id: int, mask_id: int, seed: int = 0) -> float:
    """Mean loss per masked token (the masked family's objective), with a fixed seed so that
    reruns score the same masks."""
    generator = torch.Generator().manual_seed(seed)
    total = count = 0.0
    for rows in batches:
        loss_sum, n = loss_terms(model, torch.as_tensor(rows, dtype=torch.long), family="masked",
                                 pad_id=pad_id, mask_id=mask_id, generator=generator)
        total += float(loss_sum)
        count += float(n)
    return total / max(count, 1.0)

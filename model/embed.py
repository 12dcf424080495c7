"""Text embeddings: the mean of a model's final (normed) hidden states over a text's tokens,
scaled to unit length, so that a dot product is a cosine similarity (semantic search,
clustering, features for a classifier).

Any family embeds; a masked-family encoder sees every token from both sides, which is what
sentence embeddings usually want, while a causal model's state at a token only knows the
text before it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from model.errors import InputError
from model.transformer import Transformer

if TYPE_CHECKING:
    from model.tokenizer import Tokenizer


@torch.inference_mode()
def embed_ids(model: Transformer, batch: list[list[int]], pad_id: int = 0) -> torch.Tensor:
    """Unit vectors (N, D), float32, for N token id lists (each cut to the model's window).
    Rows are right-padded; padding is masked out of attention and out of the mean, so a text
    gets the same vector in any batch."""
    if not batch or any(len(ids) == 0 for ids in batch):
        raise InputError("every text to embed needs at least one token")
    device = model.tok_embeddings.weight.device
    rows = [list(ids)[: model.cfg.max_seq_len] for ids in batch]
    width = max(len(r) for r in rows)
    tokens = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=device)  # (N, T)
    real = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows], device=device)
    hidden = model(tokens, padding_mask=real, return_hidden=True).float()  # (N, T, D)
    weights = real[..., None].float()  # (N, T, 1)
    mean = (hidden * weights).sum(1) / weights.sum(1)  # (N, D)
    return F.normalize(mean, dim=-1)


def embed(model: Transformer, tokenizer: "Tokenizer", texts: list[str], batch_size: int = 32) -> torch.Tensor:
    """Unit vectors (len(texts), dim), float32 on the model's device, one per text: mean-pooled
    final hidden states, normalized. An empty text embeds as the end-of-text token."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        ids = [tokenizer.encode(t) or [tokenizer.eot_id] for t in texts]
        chunks = [embed_ids(model, ids[i:i + batch_size], pad_id=tokenizer.pad_id)
                  for i in range(0, len(ids), batch_size)]
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros(0, model.cfg.dim)
    return torch.cat(chunks)

"""Held-out loss and perplexity over packed token shards (see pipeline/packed.py).

The mean is over tokens, not batches: the summed negative log-likelihood of every scored
target divided by their count, so a short last batch, or one ending in padding, weighs
exactly its tokens. Padding targets are excluded from both sums.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from model.objectives import IGNORE_INDEX, shift_for_next_token
from pipeline.packed import PackedSplit



@torch.inference_mode()
def perplexity(model, tokens_dir: str | Path, split: str = "val", batch_size: int = 8,
               max_batches: int | None = None, device: str | torch.device = "cpu") -> dict:
    """Mean next-token NLL of `model` on one split of a packed tokens folder.

    Returns {"loss": nats per token, "perplexity": exp(loss), "bits_per_token": loss / ln 2,
    "tokens": scored targets, "batches": batches read}. The model should already be on
    `device`; it runs in eval mode and gets its previous mode back afterwards.
    """
    data = PackedSplit(tokens_dir, split)
    seq_len, max_len = data.manifest.seq_len, model.cfg.max_seq_len
    if seq_len > max_len:
        raise ValueError(f"{tokens_dir} holds rows of seq_len={seq_len}, longer than the model's "
                         f"max_seq_len={max_len}: re-tokenize with a shorter seq_len")
    was_training = model.training
    model.eval()
    nll_sum, count, batches = 0.0, 0, 0
    try:
        for rows in data.batches(batch_size, max_batches):
            inputs, targets = shift_for_next_token(torch.as_tensor(rows, dtype=torch.long), data.pad_id)
            inputs, targets = inputs.to(device), targets.to(device)
            logits = model(inputs)  # (B, T, V)
            nll_sum += F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                       ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((targets != IGNORE_INDEX).sum())
            batches += 1
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"split {split!r} of {tokens_dir} has no tokens to score")
    loss = nll_sum / count
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
            "tokens": count, "batches": batches}

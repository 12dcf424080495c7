"""Training objectives: from packed rows of token ids to the loss the trainer minimizes.

The trainer knows nothing of model families: it hands each batch of packed rows
(B, T + 1) here with the family named in the model config, and gets a scalar loss.
"""
from __future__ import annotations

import torch

from model.transformer import lm_loss

IGNORE_INDEX = -100


def shift_for_next_token(rows: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T+1) rows -> inputs (B, T) and next-token targets (B, T), padding masked out of the loss."""
    inputs, targets = rows[:, :-1], rows[:, 1:].clone()
    targets[targets == pad_id] = IGNORE_INDEX
    return inputs, targets


def causal_lm_terms(model, rows: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoregressive: predict every next token from the ones before it."""
    inputs, targets = shift_for_next_token(rows, pad_id)
    count = (targets != IGNORE_INDEX).sum()
    return lm_loss(model(inputs), targets, ignore_index=IGNORE_INDEX) * count, count


def loss_terms(model, rows: torch.Tensor, *, family: str = "causal", pad_id: int, mask_id: int | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, predicted-token count) of one batch of packed rows for the model family
    (`ModelConfig.family`); sums over batches give exact token-weighted means."""
    if family == "causal":
        return causal_lm_terms(model, rows, pad_id)
    raise ValueError(f"unknown model family {family!r}; known: causal")


def training_loss(model, rows: torch.Tensor, **kwargs) -> torch.Tensor:
    """The mean loss per predicted token of one batch (keyword arguments as `loss_terms`)."""
    total, count = loss_terms(model, rows, **kwargs)
    return total / count.clamp(min=1)

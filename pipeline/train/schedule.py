"""Learning-rate schedule and optimizer construction (small pieces, testable alone)."""
from __future__ import annotations

import math

import torch


def lr_at(step: int, *, lr: float, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    min_lr = lr * min_lr_ratio
    # 1) linear warmup from lr/warmup to lr (never exactly 0: step 0 should still move the weights)
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    # 2) past the budget (a resumed run asked for more steps): hold the floor
    if step >= max_steps:
        return min_lr
    # 3) cosine decay from lr down to min_lr over the remaining steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def build_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float],
                    fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW with decay on weight matrices only: norms and biases (1-D) are not decayed.

    Embeddings are matrices and are decayed, as in nanoGPT and Llama recipes.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kwargs = {"fused": fused} if fused is not None else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **kwargs)

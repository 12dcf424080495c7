"""Training objectives: from packed rows of token ids to the loss the trainer minimizes.

The trainer knows nothing of model families: it hands each batch of packed rows
(B, T + 1) here with the family named in the model config, and gets a scalar loss.

    causal  next-token loss on every position (GPT)
    masked  corrupt mask_prob of the tokens (80% <|mask|>, 10% a random token, 10% kept),
            predict the originals from both sides (BERT, Devlin et al. 2019)
    prefix  a random prefix of each row is read bidirectionally; next-token loss on the rest
            (T5's prefix LM, Raffel et al. 2020)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


IGNORE_INDEX = -100


def shift_for_next_token(rows: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T+1) rows -> inputs (B, T) and next-token targets (B, T), padding masked out of the loss."""
    inputs, targets = rows[:, :-1], rows[:, 1:].clone()
    targets[targets == pad_id] = IGNORE_INDEX
    return inputs, targets


def _summed(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed float32 cross entropy, count) over the targets that are not IGNORE_INDEX; a
    batch with none gives (0, 0), not NaN, while a diverged model still shows its NaN."""
    loss = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX,
                           reduction="sum")
    return loss, (targets != IGNORE_INDEX).sum()


def causal_lm_terms(model, rows: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoregressive: predict every next token from the ones before it."""
    inputs, targets = shift_for_next_token(rows, pad_id)
    count = (targets != IGNORE_INDEX).sum()
    # A sum, not mean * count: a batch whose targets are all padding adds 0, not NaN.
    total = F.cross_entropy(model(inputs).float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX,
                            reduction="sum")
    return total, count


def mask_tokens(
    tokens: torch.Tensor,
    *,
    mask_id: int,
    pad_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of tokens (B, T): pick each non-padding token with probability
    mask_prob; of those, 80% become mask_id, 10% a random token, 10% stay as they are (so the
    encoder cannot learn that only <|mask|> positions matter). Returns (inputs, targets):
    targets hold the original id at picked positions and IGNORE_INDEX elsewhere. At least
    one token per row is picked, so no row is wasted. Draws on the CPU generator (when given)
    and moves the draws to the tokens' device, so a seed gives the same masks on any device."""
    B, T = tokens.shape
    device = tokens.device
    real = (tokens != pad_id).cpu()
    u = torch.rand(B, T, generator=generator)
    picked = (u < mask_prob) & real
    # Guarantee one target per row with real tokens: its most likely-to-be-picked real token.
    first = torch.where(real, u, torch.full_like(u, 2.0)).argmin(dim=1)  # (B,)
    picked[torch.arange(B), first] |= real.any(dim=1)
    action = torch.rand(B, T, generator=generator)
    random_ids = torch.randint(0, vocab_size, (B, T), generator=generator)
    picked, action, random_ids = picked.to(device), action.to(device), random_ids.to(device)
    inputs = tokens.clone()
    inputs[picked & (action < 0.8)] = mask_id
    swap = picked & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    targets = torch.where(picked, tokens, torch.full_like(tokens, IGNORE_INDEX))
    return inputs, targets


def masked_lm_terms(model, rows: torch.Tensor, pad_id: int, mask_id: int,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoencoding: recover the corrupted tokens of each row from the whole row around them."""
    cfg = _cfg(model)
    tokens = rows[:, :-1]  # the same T tokens per row as the other families see
    inputs, targets = mask_tokens(tokens, mask_id=mask_id, pad_id=pad_id, vocab_size=cfg.vocab_size,
                                  mask_prob=cfg.mask_prob, generator=generator)
    return _summed(model(inputs, padding_mask=tokens != pad_id), targets)


def sample_prefix_lengths(batch_size: int, seq_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A prefix length per row, uniform in 1 .. seq_len - 1: every row keeps at least one
    prefix token to read and one token to predict."""
    return torch.randint(1, max(seq_len, 2), (batch_size,), generator=generator)


def prefix_lm_terms(model, rows: torch.Tensor, pad_id: int,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hybrid: read a random prefix of each row in both directions, then predict the rest
    left to right; the prefix itself is not scored (its tokens see each other)."""
    inputs, targets = shift_for_next_token(rows, pad_id)
    B, T = inputs.shape
    prefix = sample_prefix_lengths(B, T, generator).to(rows.device)  # (B,)
    # Target t is the token after input t; inputs below the prefix length are the prefix, and
    # the last prefix input predicts the first token after it, which is the first scored one.
    scored = torch.arange(T, device=rows.device)[None, :] >= (prefix[:, None] - 1)
    targets = targets.masked_fill(~scored, IGNORE_INDEX)
    return _summed(model(inputs, prefix_len=prefix), targets)


def loss_terms(model, rows: torch.Tensor, *, family: str = "causal", pad_id: int, mask_id: int | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed loss, predicted-token count) of one batch of packed rows for the model family
    (`ModelConfig.family`); sums over batches give exact token-weighted means.

    mask_id (masked family) defaults to the model config's. generator (a CPU torch.Generator)
    makes the masked and prefix families' random draws repeatable, e.g. for validation."""
    if family == "causal":
        return causal_lm_terms(model, rows, pad_id)
    if family == "masked":
        mask_id = _cfg(model).mask_id if mask_id is None else mask_id
        if mask_id is None:
            raise ValueError("the masked family needs the id of <|mask|>: set ModelConfig.mask_id or pass "
                             "mask_id (a tokenizer without <|mask|> must be retrained: ownlm tokenizer --force)")
        return masked_lm_terms(model, rows, pad_id, mask_id, generator)
    if family == "prefix":
        return prefix_lm_terms(model, rows, pad_id, generator)
    raise ValueError(f"unknown model family {family!r}; known: causal, masked, prefix")


def sft_terms(model, ids: torch.Tensor, loss_mask: torch.Tensor,
              segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Supervised fine-tuning on rows of packed examples: (summed loss, count) of next-token
    cross entropy on the tokens loss_mask marks (the assistant's), never across examples.

    ids, loss_mask, segments: (B, T + 1); loss_mask[t] says token t is trained on; segments[t]
    is the example token t belongs to (0: padding). Each example attends only to itself and its
    positions start at 0 (Transformer(segments=...)), so a packed row scores what its examples
    score one by one. The first token of an example is never a target (nothing of it precedes)."""
    inputs, seg_in = ids[:, :-1], segments[:, :-1]
    same = segments[:, 1:] == seg_in
    trained = loss_mask[:, 1:].bool() & same & (segments[:, 1:] != 0)
    targets = torch.where(trained, ids[:, 1:], torch.full_like(inputs, IGNORE_INDEX))
    return _summed(model(inputs, segments=seg_in), targets)


def training_loss(model, rows: torch.Tensor, **kwargs) -> torch.Tensor:
    """The mean loss per predicted token of one batch (keyword arguments as `loss_terms`)."""
    total, count = loss_terms(model, rows, **kwargs)
    return total / count.clamp(min=1)


def _cfg(model):
    """The ModelConfig of a model, under DDP (`.module`) and torch.compile (`._orig_mod`) too."""
    while not hasattr(model, "cfg"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
    return model.cfg

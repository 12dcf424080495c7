"""Log-probabilities of a text's own tokens: what an OpenAI-style `echo` + `logprobs` request
returns, and what lm-eval's API models sum for a log-likelihood.

Each token's log-probability and the top alternatives at its position come from one float32
log-softmax, so a token that was the model's first choice has exactly the top value (lm-eval
decides `is_greedy` by comparing the two).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from model.transformer import Transformer


@dataclass(frozen=True)
class TokenScores:
    """One row's scores: for token i >= 1, its log-probability given tokens < i, and the k most
    likely ids there with their log-probabilities (token 0 has nothing before it: None)."""

    token_logprobs: list[float | None]
    top_ids: list[list[int] | None]
    top_logprobs: list[list[float] | None]


@torch.inference_mode()
def score_tokens(model: Transformer, rows: list[list[int]], top_k: int = 1, pad_id: int = 0) -> list[TokenScores]:
    """TokenScores for each row of token ids (each within the model's window). Rows are
    right-padded: under causal attention the padding after a row's tokens never reaches them."""
    device = model.tok_embeddings.weight.device
    width = max(len(r) for r in rows)
    tokens = torch.tensor([list(r) + [pad_id] * (width - len(r)) for r in rows], device=device)  # (B, T)
    hidden = model(tokens, return_hidden=True)  # (B, T, D)
    out = []
    for row, ids in enumerate(rows):
        n = len(ids)
        if n < 2:
            out.append(TokenScores([None] * n, [None] * n, [None] * n))
            continue
        logprobs = torch.log_softmax(model.output(hidden[row, : n - 1]).float(), dim=-1)  # (n-1, V)
        target = torch.tensor(ids[1:], device=device)
        picked = logprobs.gather(-1, target[:, None])[:, 0]  # (n-1,)
        top = logprobs.topk(min(top_k, logprobs.shape[-1]), dim=-1)  # values, indices: (n-1, k)
        out.append(TokenScores([None, *picked.tolist()], [None, *top.indices.tolist()],
                               [None, *top.values.tolist()]))
    return out

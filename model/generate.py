"""Autoregressive generation in gpt-fast's phase-named pieces: sample, prefill,
decode_one_token, decode_n_tokens, generate.

prefill runs the whole prompt once and fills the KV cache; each decoding step then feeds
one token and attends over the cache, so a step costs O(context) instead of a full
forward over the sequence. use_cache=False keeps the full recompute for parity tests and
for benchmarking what the cache buys.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn.functional as F

from model.transformer import KVCache, Transformer

if TYPE_CHECKING:  # only for annotations: the tokenizer module imports `tokenizers`
    from model.tokenizer import Tokenizer


def sample(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next-token ids (...) from logits (..., V). temperature 0 is greedy argmax; otherwise
    sample from softmax(logits / temperature) restricted to the top_k most likely tokens
    and to the nucleus (Holtzman et al. 2019): the fewest tokens whose mass reaches top_p."""
    _check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth_best = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None and top_p < 1.0:
        logits = _nucleus(logits, top_p)
    probs = F.softmax(logits, dim=-1)  # (..., V)
    ids = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return ids.view(probs.shape[:-1])


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    probs = F.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # the most likely token always has 0: kept
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    problems = []
    if not temperature >= 0:
        problems.append(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        problems.append(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        problems.append(f"top_p must be in (0, 1] or None, got {top_p}")
    if problems:
        raise ValueError("; ".join(problems))


@torch.inference_mode()
def prefill(model: Transformer, tokens: torch.Tensor, cache: KVCache, start_pos: int = 0) -> torch.Tensor:
    """Run the prompt tokens (B, T) through the model, filling the cache at start_pos..;
    return the logits at the last position, (B, V)."""
    return model(tokens, cache=cache, start_pos=start_pos)[:, -1]


@torch.inference_mode()
def decode_one_token(model: Transformer, token: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
    """Feed one token per sequence, (B,) or (B, 1), at position pos; return logits (B, V)."""
    return model(token.view(-1, 1), cache=cache, start_pos=pos)[:, -1]


def decode_n_tokens(
    model: Transformer,
    logits: torch.Tensor,
    cache: KVCache | None,
    context: list[int],
    n: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> Iterator[int]:
    """Yield up to n tokens of one sequence, given the logits (1, V) after `context`, the
    ids so far (extended in place). Stops after yielding eos_id. Without a cache every
    step recomputes the whole sequence."""
    device = logits.device
    for i in range(n):
        token = sample(logits, temperature, top_k, top_p, generator)  # (1,)
        token_id = int(token.item())
        context.append(token_id)
        yield token_id
        if token_id == eos_id or i == n - 1:
            return  # no forward for a token nobody will read
        if cache is not None:
            logits = decode_one_token(model, token, cache, pos=len(context) - 1)
        else:
            logits = model(torch.tensor([context], device=device))[:, -1]


def generate_stream(
    model: Transformer,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    seed: int | None = None,
) -> Iterator[int]:
    """generate(), one token at a time as each is decoded (for streaming servers).
    Bad arguments raise here, at the call, not at the first next()."""
    _check_sampling(temperature, top_k, top_p)
    if not prompt_ids:
        raise ValueError("generate needs at least one prompt token (e.g. the end-of-text id)")
    context, n = _fit_window(list(prompt_ids), max_new_tokens, model.cfg.max_seq_len)
    return _stream(model, context, n, temperature, top_k, top_p, eos_id, use_cache, seed)


@torch.inference_mode()  # wraps each resumption of the generator, not the caller's code
def _stream(model, context, n, temperature, top_k, top_p, eos_id, use_cache, seed) -> Iterator[int]:
    if n == 0:
        return
    device = model.tok_embeddings.weight.device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    tokens = torch.tensor([context], device=device)  # (1, P)
    cache = model.make_cache(batch_size=1, max_len=len(context) + n) if use_cache else None
    logits = prefill(model, tokens, cache) if use_cache else model(tokens)[:, -1]  # (1, V)
    yield from decode_n_tokens(
        model, logits, cache, context, n, temperature=temperature, top_k=top_k,
        top_p=top_p, generator=generator, eos_id=eos_id,
    )


def _fit_window(prompt: list[int], max_new_tokens: int, max_seq_len: int) -> tuple[list[int], int]:
    """Make prompt + completion fit in the model's window. The oldest prompt tokens matter
    least for what comes next, so they go first (left truncation, as chat front ends do);
    max_new_tokens itself is capped to leave at least one prompt token."""
    n = max(0, min(max_new_tokens, max_seq_len - 1))
    return prompt[-(max_seq_len - n):], n


def generate(
    model: Transformer,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    seed: int | None = None,
) -> list[int]:
    """The new token ids after prompt_ids: at most max_new_tokens, ending with eos_id when
    the model emits it. temperature 0 is greedy; seed makes sampling repeatable."""
    return list(generate_stream(
        model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        eos_id=eos_id, use_cache=use_cache, seed=seed,
    ))


def generate_text(
    model: Transformer,
    tokenizer: "Tokenizer",
    prompt: str,
    max_new_tokens: int = 256,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: list[str] | None = None,
    use_cache: bool = True,
    seed: int | None = None,
) -> str:
    """The completion of prompt as text: ends at the end-of-text token (not included), at
    the first stop string (not included), or after max_new_tokens."""
    prompt_ids = tokenizer.encode(prompt) or [tokenizer.eot_id]  # an empty prompt starts a document
    ids: list[int] = []
    for token_id in generate_stream(
        model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        eos_id=tokenizer.eot_id, use_cache=use_cache, seed=seed,
    ):
        if token_id == tokenizer.eot_id:
            break
        ids.append(token_id)
        if stop and _find_stop(tokenizer.decode(ids), stop) is not None:
            break
    text = tokenizer.decode(ids)
    cut = _find_stop(text, stop or [])
    return text if cut is None else text[:cut]


def _find_stop(text: str, stop: list[str]) -> int | None:
    """Index of the earliest stop string in text, or None."""
    hits = [i for s in stop if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None

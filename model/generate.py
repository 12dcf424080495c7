"""Autoregressive generation in gpt-fast's phase-named pieces: prefill, decode_one_token,
decode_n_tokens, generate (one prompt), generate_batch (prompts of different lengths,
left-padded into one batch), and their text forms. How each token is picked (greedy,
temperature, top-k, top-p, seed) is one `SamplingParams` (model/sampling.py) for all of them,
applied to the logits by `sample`.

A masked-family encoder has no left-to-right decoder: it writes by filling a <|mask|>
appended to the text, one token at a time (fill_masks_left_to_right, no cache).

prefill runs the whole prompt once and fills the KV cache; each decoding step then feeds
one token and attends over the cache, so a step costs O(context) instead of a full
forward over the sequence. use_cache=False keeps the full recompute for parity tests and
for benchmarking what the cache buys. static_cache=True decodes over a StaticKVCache
(model/kv_cache.py: fixed shapes, the slot a tensor), and compile=True runs those steps
compiled (model/decode_compile.py).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from model.decode_compile import batch_bucket, compiled_decode_step
from model.errors import InputError
from model.kv_cache import StaticKVCache, decode_one_token_static
from model.sampling import GREEDY, SamplingParams
from model.transformer import KVCache, Transformer

if TYPE_CHECKING:  # only for annotations: the tokenizer module imports `tokenizers`
    from model.tokenizer import Tokenizer


def sample(logits: torch.Tensor, params: SamplingParams = GREEDY,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Next-token ids (...) from logits (..., V): greedy at temperature 0; otherwise drawn from
    softmax(logits / temperature) restricted to the top_k most likely tokens and to the nucleus."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k is not None and params.top_k < logits.shape[-1]:
        kth_best = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if params.top_p is not None and params.top_p < 1.0:
        logits = _nucleus(logits, params.top_p)
    probs = F.softmax(logits, dim=-1)  # (..., V)
    ids = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return ids.view(probs.shape[:-1])


class RowSampler:
    """Picks the next token of every row of a batch: one SamplingParams for all rows (`sample`
    on the whole batch), or one per row, as in a server's batch of unrelated requests, where
    each seeded row draws from its own generator so that its text does not depend on which
    other requests shared its batch."""

    def __init__(self, params: SamplingParams | list[SamplingParams], device):
        self.per_row = not isinstance(params, SamplingParams)
        rows = list(params) if self.per_row else [params]
        self.params = rows
        self.generators = [None if p.seed is None else torch.Generator(device=device).manual_seed(p.seed)
                           for p in rows]

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, V) logits -> (B,) token ids."""
        if not self.per_row:
            return sample(logits, self.params[0], self.generators[0])
        if all(p.temperature == 0 for p in self.params):
            return logits.argmax(dim=-1)
        return torch.stack([sample(logits[row], p, g)
                            for row, (p, g) in enumerate(zip(self.params, self.generators))])


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    probs = F.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # the most likely token always has 0: kept
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


@torch.inference_mode()
def prefill(
    model: Transformer,
    tokens: torch.Tensor,
    cache: KVCache,
    start_pos: int = 0,
    *,
    padding_mask: torch.Tensor | None = None,
    prefix_len: int | None = None,
) -> torch.Tensor:
    """Run the prompt tokens (B, T) through the model, filling the cache at start_pos..;
    return the logits at the last position, (B, V). padding_mask (B, T) marks the left
    padding of shorter prompts (False); prefix_len makes the prompt a prefix family model's
    bidirectional prefix."""
    return model(tokens, cache=cache, start_pos=start_pos, padding_mask=padding_mask, prefix_len=prefix_len)[:, -1]


@torch.inference_mode()
def decode_one_token(model: Transformer, token: torch.Tensor, cache: KVCache, pos: int) -> torch.Tensor:
    """Feed one token per sequence, (B,) or (B, 1), at slot pos; return logits (B, V)."""
    return model(token.view(-1, 1), cache=cache, start_pos=pos)[:, -1]


def decode_n_tokens(
    model: Transformer,
    logits: torch.Tensor,
    cache: KVCache | None,
    context: torch.Tensor,
    n: int,
    *,
    padding_mask: torch.Tensor | None = None,
    prefix_len: int | None = None,
    params: SamplingParams = GREEDY,
    generator: torch.Generator | None = None,
    stop_ids: list[int] = (),
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, (B,), up to n times, given the logits (B, V) after
    context (B, L), the ids so far (left-padded where padding_mask is False). Stops once every
    row has emitted one of stop_ids; rows that stopped earlier keep decoding, and the caller
    drops what follows their stop. With a cache each step feeds one token per row at slot
    L, L+1, ...; without one (cache None) every step recomputes the whole sequence."""
    def pick(x):
        return sample(x, params, generator)

    for token, _ in _decode_steps(model, logits, cache, context, n, pick, padding_mask=padding_mask,
                                  prefix_len=prefix_len, stop_ids=stop_ids):
        yield token


def _decode_steps(model, logits, cache, context, n, pick, *, padding_mask=None, prefix_len=None, stop_ids=(),
                  step=decode_one_token_static):
    """decode_n_tokens, yielding (token (B,), the logits (B, V) it was picked from). A
    StaticKVCache is decoded by `step` (decode_one_token_static, or its compiled form)."""
    B, pos = context.shape
    stop = torch.tensor(list(stop_ids), dtype=torch.long, device=logits.device)
    done = torch.zeros(B, dtype=torch.bool, device=logits.device)
    for i in range(n):
        token = pick(logits)  # (B,)
        yield token, logits
        done |= torch.isin(token, stop)
        if i == n - 1 or bool(done.all()):
            return  # no forward for a token nobody will read
        if isinstance(cache, StaticKVCache):
            slot = torch.tensor([pos], device=token.device)
            logits = step(model, token.view(-1, 1), cache, slot)
            cache.advance()
        elif cache is not None:
            logits = decode_one_token(model, token, cache, pos)
        else:
            context = torch.cat([context, token[:, None]], dim=1)
            if padding_mask is not None:
                padding_mask = F.pad(padding_mask, (0, 1), value=True)
            with torch.inference_mode():
                logits = model(context, padding_mask=padding_mask, prefix_len=prefix_len)[:, -1]
        pos += 1


def fill_masks_left_to_right(
    model: Transformer,
    context: torch.Tensor,
    n: int,
    *,
    padding_mask: torch.Tensor | None = None,
    params: SamplingParams = GREEDY,
    generator: torch.Generator | None = None,
    stop_ids: list[int] = (),
) -> Iterator[torch.Tensor]:
    """How a masked-family encoder writes: append <|mask|> to every row, predict it from the
    whole row, put the prediction in its place, repeat (Wang & Cho 2019). Every step re-reads
    the whole sequence, since a bidirectional model's earlier states change with each new
    token: there is no KV cache to keep. Yields (B,) tokens per step like decode_n_tokens."""
    def pick(x):
        return sample(x, params, generator)

    for token, _ in _fill_mask_steps(model, context, n, pick, padding_mask=padding_mask, stop_ids=stop_ids):
        yield token


def _fill_mask_steps(model, context, n, pick, *, padding_mask=None, stop_ids=()):
    B = context.shape[0]
    mask = torch.full((B, 1), model.cfg.mask_id, dtype=context.dtype, device=context.device)
    stop = torch.tensor(list(stop_ids), dtype=torch.long, device=context.device)
    done = torch.zeros(B, dtype=torch.bool, device=context.device)
    for _ in range(n):
        context = torch.cat([context, mask], dim=1)
        if padding_mask is not None:
            padding_mask = F.pad(padding_mask, (0, 1), value=True)
        logits = model(context, padding_mask=padding_mask)[:, -1]  # (B, V): the mask's slot
        token = pick(logits)  # (B,)
        context[:, -1] = token
        yield token, logits
        done |= torch.isin(token, stop)
        if bool(done.all()):
            return


def _fit_window(prompt: list[int], max_new_tokens: int, max_seq_len: int) -> tuple[list[int], int]:
    """Make prompt + completion fit in the model's window. The oldest prompt tokens matter
    least for what comes next, so they go first (left truncation, as chat front ends do);
    max_new_tokens itself is capped to leave at least one prompt token."""
    n = max(0, min(max_new_tokens, max_seq_len - 1))
    return prompt[-(max_seq_len - n):], n


def _check_request(model: Transformer, prompts: list[list[int]]) -> None:
    if model.cfg.family == "masked" and model.cfg.mask_id is None:
        raise InputError("a masked-family model generates by filling a <|mask|> appended to the text, and this "
                         "one's config has no mask_id: set ModelConfig.mask_id to the tokenizer's <|mask|> id")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InputError("generate needs at least one prompt token per prompt (e.g. the end-of-text id)")


def _stop_ids(eos_id: int | list[int] | None) -> list[int]:
    if eos_id is None:
        return []
    return [int(eos_id)] if isinstance(eos_id, int) else [int(i) for i in eos_id]


def _decode_rows(model, prompts, n, params: SamplingParams, stop_ids, use_cache, pad_id=0, **decoding):
    """Left-pad the prompts to one length and yield (B,) tokens per step (decode_n_tokens)."""
    for token, _ in decode_steps(model, prompts, n, params, stop_ids=stop_ids, use_cache=use_cache, pad_id=pad_id,
                                 **decoding):
        yield token


@torch.inference_mode()  # wraps each resumption of the generator, not the caller's code
def decode_steps(
    model: Transformer,
    prompts: list[list[int]],
    n: int,
    params: SamplingParams | list[SamplingParams] = GREEDY,
    *,
    stop_ids: list[int] = (),
    use_cache: bool = True,
    pad_id: int = 0,
    static_cache: bool = False,
    compile: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batched decoding loop under every generate function and the server: left-pad the
    prompts (each non-empty, with width + n within the model's window) to one length and yield,
    up to n times, (token (B,), the logits (B, V) it was picked from), until every row has
    emitted one of stop_ids. params: one SamplingParams for every row, or one per row.
    static_cache: decode over a StaticKVCache of width + n slots; compile: over one of the whole
    window, with the compiled step, the batch padded to a compiled shape (decode_compile)."""
    if n == 0:
        return
    rows = len(prompts)
    compile = compile and use_cache and model.cfg.family != "masked"
    if compile:  # extra rows copy the last one (prompt and sampling), so they stop when it does
        extra = batch_bucket(rows) - rows
        prompts = list(prompts) + [prompts[-1]] * extra
        if not isinstance(params, SamplingParams):
            params = list(params) + [params[-1]] * extra
    for token, logits in _decode_batch(model, prompts, n, params, stop_ids, use_cache, pad_id,
                                       static_cache or compile, compile):
        yield token[:rows], logits[:rows]


def _decode_batch(model, prompts, n, params, stop_ids, use_cache, pad_id, static_cache, compile):
    device = model.tok_embeddings.weight.device
    pick = RowSampler(params, device)
    width = max(len(p) for p in prompts)
    tokens = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)  # (B, P)
    padding_mask = None
    if any(len(p) < width for p in prompts):
        padding_mask = torch.tensor([[False] * (width - len(p)) + [True] * len(p) for p in prompts], device=device)
    # A prefix LM reads the whole prompt bidirectionally; left padding lines every prompt up to end at `width`.
    prefix_len = width if model.cfg.family == "prefix" else None
    if model.cfg.family == "masked":
        yield from _fill_mask_steps(model, tokens, n, pick, padding_mask=padding_mask, stop_ids=stop_ids)
        return
    if not use_cache:
        logits = model(tokens, padding_mask=padding_mask, prefix_len=prefix_len)[:, -1]  # (B, V)
        yield from _decode_steps(model, logits, None, tokens, n, pick, padding_mask=padding_mask,
                                 prefix_len=prefix_len, stop_ids=stop_ids)
        return
    step = decode_one_token_static
    if static_cache:
        weight = model.tok_embeddings.weight
        # A compiled step's shapes do not depend on the request: the cache spans the whole window.
        cache = StaticKVCache(model.cfg, len(prompts), model.cfg.max_seq_len if compile else width + n,
                              weight.device, weight.dtype)
        if compile:
            step = compiled_decode_step(device)
    else:
        cache = model.make_cache(batch_size=len(prompts), max_len=width + n)
    logits = prefill(model, tokens, cache, padding_mask=padding_mask, prefix_len=prefix_len)
    if static_cache:
        cache.begin_decoding(width)
    yield from _decode_steps(model, logits, cache, tokens, n, pick, padding_mask=padding_mask,
                             prefix_len=prefix_len, stop_ids=stop_ids, step=step)


def generate_stream(
    model: Transformer,
    prompt_ids: list[int],
    params: SamplingParams = GREEDY,
    *,
    eos_id: int | list[int] | None = None,
    use_cache: bool = True,
    static_cache: bool = False,
    compile: bool = False,
) -> Iterator[int]:
    """generate(), one token at a time as each is decoded (for streaming servers and chat).
    Bad arguments raise here, at the call, not at the first next(). static_cache and compile:
    how the cached steps run (decode_steps); greedy tokens are the same either way."""
    _check_request(model, [list(prompt_ids)])
    context, n = _fit_window(list(prompt_ids), params.max_new_tokens, model.cfg.max_seq_len)
    stop_ids = _stop_ids(eos_id)
    return _stream_one(_decode_rows(model, [context], n, params, stop_ids, use_cache,
                                    static_cache=static_cache, compile=compile), stop_ids)


def _stream_one(steps: Iterator[torch.Tensor], stop_ids: list[int]) -> Iterator[int]:
    for token in steps:
        token_id = int(token[0])
        yield token_id
        if token_id in stop_ids:
            return


def generate(
    model: Transformer,
    prompt_ids: list[int],
    params: SamplingParams = GREEDY,
    *,
    eos_id: int | list[int] | None = None,
    use_cache: bool = True,
    static_cache: bool = False,
    compile: bool = False,
) -> list[int]:
    """The new token ids after prompt_ids: at most params.max_new_tokens, ending with eos_id
    (or the first of several) when the model emits it."""
    return list(generate_stream(model, prompt_ids, params, eos_id=eos_id, use_cache=use_cache,
                                static_cache=static_cache, compile=compile))


def generate_batch(
    model: Transformer,
    prompts: list[list[int]],
    params: SamplingParams = GREEDY,
    *,
    eos_id: int | list[int] | None = None,
    use_cache: bool = True,
    static_cache: bool = False,
    compile: bool = False,
) -> list[list[int]]:
    """generate() for several prompts of different lengths in one batch: the prompts are
    left-padded, padding is masked out of attention and each row keeps its own positions,
    so greedy decoding gives every row what generate() gives it alone. Each row ends at its
    first eos_id (kept) or after max_new_tokens; the batch stops when every row has ended."""
    prompts = [list(p) for p in prompts]
    _check_request(model, prompts)
    fitted = [_fit_window(p, params.max_new_tokens, model.cfg.max_seq_len) for p in prompts]
    n = fitted[0][1]
    stop_ids = _stop_ids(eos_id)
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for tokens in _decode_rows(model, [c for c, _ in fitted], n, params, stop_ids, use_cache,
                               static_cache=static_cache, compile=compile):
        for row, token_id in enumerate(tokens.tolist()):
            if not done[row]:
                out[row].append(token_id)
                done[row] = token_id in stop_ids
    return out


def generate_text(
    model: Transformer,
    tokenizer: Tokenizer,
    prompt: str,
    params: SamplingParams = GREEDY,
    *,
    stop: list[str] | None = None,
    use_cache: bool = True,
    static_cache: bool = False,
    compile: bool = False,
) -> str:
    """The completion of prompt as text: ends at the end-of-text token (not included), at
    the first stop string (not included), or after params.max_new_tokens."""
    return generate_texts(model, tokenizer, [prompt], params, stop=stop, use_cache=use_cache,
                          static_cache=static_cache, compile=compile)[0]


def generate_texts(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: list[str],
    params: SamplingParams = GREEDY,
    *,
    stop: list[str] | None = None,
    use_cache: bool = True,
    static_cache: bool = False,
    compile: bool = False,
) -> list[str]:
    """generate_text() for several prompts in one batch (see generate_batch): each completion
    ends at end-of-text, at its first stop string, or after max_new_tokens."""
    eot = tokenizer.eot_id
    prompt_ids = [tokenizer.encode(p) or [eot] for p in prompts]  # an empty prompt starts a document
    _check_request(model, prompt_ids)
    fitted = [_fit_window(p, params.max_new_tokens, model.cfg.max_seq_len) for p in prompt_ids]
    ids: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    steps = _decode_rows(model, [c for c, _ in fitted], fitted[0][1], params, [eot], use_cache,
                         static_cache=static_cache, compile=compile)
    for tokens in steps:
        for row, token_id in enumerate(tokens.tolist()):
            if done[row]:
                continue
            if token_id == eot:
                done[row] = True
                continue
            ids[row].append(token_id)
            done[row] = bool(stop) and _find_stop(tokenizer.decode(ids[row]), stop) is not None
        if all(done):
            steps.close()  # every row has ended at a stop string or end-of-text
            break
    texts = [tokenizer.decode(row) for row in ids]
    return [t if (cut := _find_stop(t, stop or [])) is None else t[:cut] for t in texts]


def _find_stop(text: str, stop: list[str]) -> int | None:
    """Index of the earliest stop string in text, or None."""
    hits = [i for s in stop if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None

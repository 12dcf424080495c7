"""The server's engine, on plain torch: generate for a batch of unrelated requests at once
(model.generate.decode_steps, left-padded, one KV cache; compiled steps over a static cache when
asked), each with its own sampling settings,
seed, length, stop strings and logprobs; score a prompt's own tokens (echo); embed.

No Ray here: a Serve replica holds one Engine, and tests drive it directly too.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from model.sampling import SamplingParams


@dataclass(frozen=True)
class Sequence:
    """One choice to generate: a prompt's ids (prompt + max_tokens within the model's window)."""

    prompt_ids: list[int]
    max_tokens: int
    params: SamplingParams
    stop: list[str] = field(default_factory=list)
    """Text that ends the choice (not included)."""
    stop_ids: list[int] = field(default_factory=list)
    """Tokens that end the choice (end-of-text, end of turn; not included in the text)."""
    logprobs: int | None = None
    """Report each generated token's log-probability and this many top alternatives (None: no)."""
    stream: bool = True
    """Hand back each step's piece; False: one piece at the end (one message instead of one per token)."""


@dataclass
class Piece:
    """What one decoding step added to a choice."""

    text: str
    """New text, held back while it might be the start of a stop string or a split character."""
    tokens: list[int]
    logprobs: list[tuple[str, float, dict[str, float]]] | None = None
    """(token text, its log-probability, {top token text: log-probability}) per new token."""
    finish_reason: str | None = None
    """'stop' (a stop string or token) or 'length' (max_tokens), on the last piece."""


def merge(pieces: list[Piece]) -> Piece:
    """Consecutive pieces of one choice as one."""
    logprobs = None if all(p.logprobs is None for p in pieces) else [e for p in pieces for e in p.logprobs or []]
    return Piece("".join(p.text for p in pieces), [t for p in pieces for t in p.tokens], logprobs,
                 next((p.finish_reason for p in reversed(pieces) if p.finish_reason), None))


class _Choice:
    """Tracks one sequence's text as tokens arrive and decides what can be shown."""

    def __init__(self, seq: Sequence, tokenizer):
        self.seq, self.tok = seq, tokenizer
        self.ids: list[int] = []
        self.shown = 0
        self.done = False

    def add(self, token: int, logprob_row: torch.Tensor | None) -> Piece:
        seq = self.seq
        logprobs = None
        if seq.logprobs is not None and logprob_row is not None:
            logprobs = [self._logprob_entry(token, logprob_row)]
        if token in seq.stop_ids:
            return self._finish("stop", [token], logprobs, self.tok.decode(self.ids))
        self.ids.append(token)
        text = self.tok.decode(self.ids)
        cut = _find_stop(text, seq.stop)
        if cut is not None:
            return self._finish("stop", [token], logprobs, text[:cut])
        if len(self.ids) >= seq.max_tokens:
            return self._finish("length", [token], logprobs, text)
        ready = len(text.rstrip("\ufffd")) - _partial_stop(text.rstrip("\ufffd"), seq.stop)
        new = text[self.shown:ready] if ready > self.shown else ""
        self.shown = max(self.shown, ready)
        return Piece(new, [token], logprobs)

    def _finish(self, reason, tokens, logprobs, final_text) -> Piece:
        self.done = True
        new = final_text[self.shown:]
        self.shown = len(final_text)
        return Piece(new, tokens, logprobs, reason)

    def _logprob_entry(self, token: int, row: torch.Tensor):
        top = row.topk(min(self.seq.logprobs, row.shape[-1])) if self.seq.logprobs else None
        alternatives = {} if top is None else {
            self.tok.decode([i]): v for i, v in zip(top.indices.tolist(), top.values.tolist())}
        return self.tok.decode([token]), float(row[token]), alternatives


def _find_stop(text: str, stop: list[str]) -> int | None:
    hits = [i for s in stop if (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def _partial_stop(text: str, stop: list[str]) -> int:
    """Length of the longest end of text that begins some stop string (held back from a stream)."""
    best = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class Engine:
    """A model and its tokenizer, answering batches of requests."""

    def __init__(self, model, tokenizer, compile: bool = False):
        self.model, self.tok = model, tokenizer
        self.window = model.cfg.max_seq_len
        self.compile = compile
        """Decode with the compiled step over a static cache (model/decode_compile.py)."""

    def generate(self, seqs: list[Sequence]) -> Iterator[list[Piece | None]]:
        """Per decoding step, one entry per sequence: what it added, or None (finished, or
        waiting for its group). Sequences whose prompts and lengths do not fit the window
        together run in consecutive groups."""
        from model.generate import decode_steps

        choices = [_Choice(s, self.tok) for s in seqs]
        for group in self._groups(seqs):
            zero = [i for i in group if seqs[i].max_tokens == 0]
            if zero:  # nothing to generate (an echo that only scores the prompt)
                out = [None] * len(seqs)
                for i in zero:
                    choices[i].done = True
                    out[i] = Piece("", [], [] if seqs[i].logprobs is not None else None, "length")
                yield out
                group = [i for i in group if i not in zero]
                if not group:
                    continue
            n = max(seqs[i].max_tokens for i in group)
            stop_ids = sorted({t for i in group for t in seqs[i].stop_ids})
            # decode_steps stops early only when every row emitted a stop id; a row's own end comes from _Choice.
            steps = decode_steps(self.model, [seqs[i].prompt_ids for i in group], n, [seqs[i].params for i in group],
                                 stop_ids=stop_ids if all(seqs[i].stop_ids == stop_ids for i in group) else (),
                                 pad_id=self.tok.pad_id, compile=self.compile)
            want_logprobs = any(seqs[i].logprobs is not None for i in group)
            for tokens, logits in steps:
                logprobs = torch.log_softmax(logits.float(), dim=-1) if want_logprobs else None  # (B, V)
                out: list[Piece | None] = [None] * len(seqs)
                for row, (i, token) in enumerate(zip(group, tokens.tolist())):
                    if not choices[i].done:
                        out[i] = choices[i].add(token, None if logprobs is None else logprobs[row])
                yield out
                if all(choices[i].done for i in group):
                    steps.close()
                    break

    def _groups(self, seqs: list[Sequence]) -> list[list[int]]:
        """Consecutive groups whose longest prompt plus longest completion fit the window."""
        groups: list[list[int]] = []
        width = longest = 0
        for i, s in enumerate(seqs):
            w, m = max(width, len(s.prompt_ids)), max(longest, s.max_tokens)
            if groups and w + m <= self.window:
                groups[-1].append(i)
                width, longest = w, m
            else:
                groups.append([i])
                width, longest = len(s.prompt_ids), s.max_tokens
        return groups

    def score(self, rows: list[list[int]], top_k: int) -> list[dict]:
        """For echo: each prompt token's log-probability and top alternatives, as OpenAI's
        completion logprobs lists (the first token has None)."""
        from model.logprobs import score_tokens

        out = []
        for ids, scores in zip(rows, score_tokens(self.model, rows, top_k=max(top_k, 1), pad_id=self.tok.pad_id)):
            tops = [None if t is None else {self.tok.decode([i]): v for i, v in zip(t, vals)}
                    for t, vals in zip(scores.top_ids, scores.top_logprobs)]
            out.append({"tokens": [self.tok.decode([i]) for i in ids], "token_logprobs": scores.token_logprobs,
                        "top_logprobs": tops if top_k > 0 else [None if t is None else {} for t in tops]})
        return out

    def embed(self, rows: list[list[int]]) -> list[list[float]]:
        from model.embed import embed_ids

        return embed_ids(self.model, rows, pad_id=self.tok.pad_id).cpu().tolist()

"""The engine's pieces in OpenAI's response shapes: completions (with echo and logprobs), chat
completions, their server-sent-event chunks, embeddings, usage."""
from __future__ import annotations

import base64
import json
import struct
import time
import uuid


def request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(payload: dict | str) -> str:
    """One server-sent event: `data: {...}` and a blank line."""
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


class ChoiceText:
    """One choice accumulated from its pieces: text, tokens, logprobs, finish reason."""

    def __init__(self, index: int, prefix: str = "", prefix_logprobs: dict | None = None, want_logprobs: bool = False):
        self.index, self.text, self.tokens, self.finish_reason = index, prefix, 0, None
        self.logprobs = None
        if want_logprobs:
            self.logprobs = {k: list(v) for k, v in (prefix_logprobs or {}).items()} if prefix_logprobs else {
                "tokens": [], "token_logprobs": [], "top_logprobs": []}
            self.logprobs["text_offset"] = _offsets(self.logprobs["tokens"], 0)

    def add(self, piece) -> dict | None:
        """Take a piece; return its logprobs in OpenAI's lists (for a stream chunk), or None."""
        self.tokens += len(piece.tokens)
        self.finish_reason = piece.finish_reason or self.finish_reason
        start = len(self.text)
        self.text += piece.text
        if self.logprobs is None or piece.logprobs is None:
            return None
        chunk = {"tokens": [t for t, _, _ in piece.logprobs], "token_logprobs": [lp for _, lp, _ in piece.logprobs],
                 "top_logprobs": [top for _, _, top in piece.logprobs]}
        chunk["text_offset"] = _offsets(chunk["tokens"], start)
        for key, values in chunk.items():
            self.logprobs[key].extend(values)
        return chunk


def _offsets(tokens: list[str], start: int) -> list[int]:
    out, at = [], start
    for t in tokens:
        out.append(at)
        at += len(t)
    return out


def completion(rid: str, model: str, created: int, choices: list[ChoiceText], prompt_tokens: int) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": c.index, "text": c.text, "logprobs": c.logprobs, "finish_reason": c.finish_reason}
                        for c in sorted(choices, key=lambda c: c.index)],
            "usage": usage(prompt_tokens, sum(c.tokens for c in choices))}


def completion_chunk(rid: str, model: str, created: int, index: int, text: str, logprobs=None,
                     finish_reason=None) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}]}


def chat_completion(rid: str, model: str, created: int, choices: list[ChoiceText], prompt_tokens: int) -> dict:
    return {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": c.index, "message": {"role": "assistant", "content": c.text},
                         "logprobs": None, "finish_reason": c.finish_reason}
                        for c in sorted(choices, key=lambda c: c.index)],
            "usage": usage(prompt_tokens, sum(c.tokens for c in choices))}


def chat_chunk(rid: str, model: str, created: int, index: int, delta: dict, finish_reason=None) -> dict:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def usage_chunk(rid: str, model: str, created: int, obj: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [],
            "usage": usage(prompt_tokens, completion_tokens)}


def embeddings(model: str, vectors: list[list[float]], prompt_tokens: int, encoding: str) -> dict:
    def encode(v):  # base64: little-endian float32, what the openai client asks for and decodes
        return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if encoding == "base64" else v

    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def models(name: str, window: int, created: int) -> dict:
    return {"object": "list", "data": [model_card(name, window, created)]}


def model_card(name: str, window: int, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "ownlm", "max_model_len": window}


def now() -> int:
    return int(time.time())

"""A judge model behind any OpenAI-compatible endpoint (`POST {base_url}/chat/completions`):
vLLM, llama.cpp's server, Ollama, `ownlm serve`, or a hosted API.

Only the standard library talks HTTP here, so the judge works wherever Python does. Two
prompts: grading one conversation on the three conversational metrics (1-5 each), and
picking the better of two answers for the arena (MT-Bench's pairwise format, `[[A]]`,
`[[B]]` or `[[C]]` for a tie).
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass


class JudgeError(RuntimeError):
    """The endpoint failed or answered something that cannot be read as a verdict."""


@dataclass
class ChatClient:
    base_url: str
    """e.g. http://127.0.0.1:8000/v1"""
    model: str
    api_key: str | None = None
    """Sent as a Bearer token; defaults to $OPENAI_API_KEY when set."""
    timeout: float = 120.0

    def chat(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 512) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": temperature,
                           "max_tokens": max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        key = self.api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read().decode())
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as e:
            raise JudgeError(f"judge endpoint {url} failed: {e}") from e
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as e:
            raise JudgeError(f"judge endpoint {url} answered without choices[0].message.content: "
                             f"{str(payload)[:200]}") from e


# ---------------------------------------------------------------- conversations

CONVERSATION_RUBRIC = """You are grading the ASSISTANT in a multi-turn conversation.
Score each quality from 1 (poor) to 5 (excellent):
- coherence: each assistant reply fits the user turn right before it;
- context_awareness: the assistant correctly recalls facts given earlier in the conversation;
- engagement: replies are informative, varied, and ask follow-up questions where useful.
Answer with one JSON object and nothing else, e.g.
{"coherence": 4, "context_awareness": 3, "engagement": 2, "reason": "one sentence"}"""

JUDGE_KEYS = ("coherence", "context_awareness", "engagement")


def format_conversation(turns: list[dict]) -> str:
    return "\n".join(f"{t['role'].upper()}: {t['content']}" for t in turns)


def judge_conversation(client: ChatClient, turns: list[dict]) -> dict[str, float]:
    """{"coherence", "context_awareness", "engagement"} in [0, 1] ((score - 1) / 4), plus "reason"."""
    reply = client.chat([{"role": "system", "content": CONVERSATION_RUBRIC},
                         {"role": "user", "content": format_conversation(turns)}])
    verdict = _first_json_object(reply)
    out = {}
    for key in JUDGE_KEYS:
        try:
            score = float(verdict[key])
        except (KeyError, TypeError, ValueError) as e:
            raise JudgeError(f"judge reply lacks a numeric {key!r}: {reply[:200]!r}") from e
        if not 1 <= score <= 5:
            raise JudgeError(f"judge gave {key}={score}, outside 1..5")
        out[key] = (score - 1) / 4
    out["reason"] = str(verdict.get("reason", ""))
    return out


def _first_json_object(text: str) -> dict:
    start = text.find("{")
    while start >= 0:
        depth = 0
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                try:
                    obj = json.loads(text[start : end + 1])
                except json.JSONDecodeError:
                    break
                if isinstance(obj, dict):
                    return obj
                break
        start = text.find("{", start + 1)
    raise JudgeError(f"judge reply holds no JSON object: {text[:200]!r}")


# ---------------------------------------------------------------- arena

PAIRWISE_PROMPT = """Please act as an impartial judge and evaluate the quality of the responses
provided by two AI assistants to the user question displayed below. Avoid any position bias:
the order in which the responses were presented must not influence your decision, nor their
length. After a short explanation, output your final verdict by strictly following this format:
"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie."""

_VERDICT = re.compile(r"\[\[([ABC])\]\]")


def judge_pair(client: ChatClient, prompt: str, answer_a: str, answer_b: str) -> str:
    """"a", "b" or "tie"."""
    user = (f"[User Question]\n{prompt}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n"
            f"[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
            "[The End of Assistant B's Answer]")
    reply = client.chat([{"role": "system", "content": PAIRWISE_PROMPT}, {"role": "user", "content": user}])
    verdicts = _VERDICT.findall(reply)
    if not verdicts:
        raise JudgeError(f"judge reply has no [[A]], [[B]] or [[C]] verdict: {reply[-200:]!r}")
    return {"A": "a", "B": "b", "C": "tie"}[verdicts[-1]]

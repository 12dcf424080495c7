"""How to pick each next token: one `SamplingParams` for every generation function, command,
config section and request (vLLM and Hugging Face keep one such type too). No torch here, so the
config can build one cheaply; `model.generate.sample` applies it to logits."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from model.errors import InputError


@dataclass(frozen=True)
class SamplingParams:
    """Settings of one generation request; the defaults decode greedily."""

    max_new_tokens: int = 256
    """Longest completion, in tokens (capped so that prompt and completion fit the model's window)."""
    temperature: float = 0.0
    """0 is greedy argmax; otherwise sample from softmax(logits / temperature)."""
    top_k: int | None = None
    """Sample among the k most likely tokens only."""
    top_p: float | None = None
    """Sample within the nucleus (Holtzman et al. 2019): the fewest tokens whose mass reaches top_p."""
    seed: int | None = None
    """Makes sampling repeatable (None: the global RNG)."""

    def __post_init__(self):
        problems = []
        if not self.max_new_tokens >= 0:
            problems.append(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            problems.append(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1] or None, got {self.top_p}")
        if problems:
            raise InputError("; ".join(problems))

    def replace(self, **changes) -> "SamplingParams":
        """A copy with some settings changed (those given as None are left as they are)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


GREEDY = SamplingParams()

"""The base of every config section, and the error a bad config raises."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from model.errors import UsageError


class Section(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(UsageError, ValueError):
    """A config that cannot run; `problems` holds one line per bad key."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        if len(problems) == 1:  # one line: `file: key: what is wrong` (or `file:line:column: ...`)
            only = problems[0]
            super().__init__(only if only.startswith(source) else f"{source}: {only}")
            return
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested sections (and lists of them) as dotted keys: `{"train.lr": 0.003, "data.sources.0.name": ...}`."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                out.update(flatten(x, f"{key}.{i}."))
        else:
            out[key] = v
    return out

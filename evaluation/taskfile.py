"""Labelled task files: `{"input": str, "label": str, "choices"?: [str]}` per line, the one
record of a business task (ticket routing, matching a description to a code).

Both sides of a task read it through here, so that a model is asked exactly what it was
trained on: fine-tuning turns each line into a user turn (the config's template around the
input) and an assistant turn (the label), and the task metric (evaluation/task_metric.py)
prompts with the same user turn and scores the label.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from model.errors import InputError, MissingInput

DEFAULT_TEMPLATE = "{input}"


@dataclass
class Rejects:
    """Lines that could not be used, by reason, with their line numbers (1-based)."""
    lines: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reason: str, line: int) -> None:
        self.lines.setdefault(reason, []).append(line)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.lines.values())

    def summary(self, limit: int = 5) -> str:
        """`2 rejected: not_json (line 3), no_assistant_turn (line 7)`."""
        parts = []
        for reason, lines in sorted(self.lines.items()):
            more = f", ... {len(lines) - limit} more" if len(lines) > limit else ""
            shown = ", ".join(map(str, lines[:limit])) + more
            parts.append(f"{reason} ({'line' if len(lines) == 1 else 'lines'} {shown})")
        return f"{self.total} rejected: " + "; ".join(parts)

    def to_dict(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in sorted(self.lines.items())}


def render_input(template: str, text: str) -> str:
    """The user turn of a classification line: the template with `{input}` filled in."""
    return template.replace("{input}", text)


def check_template(template: str) -> str:
    if "{input}" not in template:
        raise ValueError(f"a classification template must contain {{input}}, got {template!r}")
    return template


def read_lines(path: str | Path):
    """(line number, parsed JSON or None when it is not JSON) for every non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"no data file at {path}")
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError:
                yield n, None


@dataclass(frozen=True)
class LabelledExample:
    input: str
    label: str
    choices: tuple[str, ...] | None = None


def classification_problem(row: dict) -> str | None:
    """Why a {"input", "label", "choices"?} row cannot be used, or None."""
    if not isinstance(row.get("input"), str) or not isinstance(row.get("label"), str) or not row["label"].strip():
        return "bad_classification"
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            return "bad_choices"
        if row["label"] not in choices:
            return "label_not_in_choices"
    return None


def read_task_file(path: str | Path) -> tuple[list[LabelledExample], Rejects]:
    """The usable lines of a labelled file and the rejected ones; raises InputError, naming the
    rejects, when no line is usable."""
    examples, rejects = [], Rejects()
    for n, row in read_lines(path):
        if row is None:
            rejects.add("not_json", n)
            continue
        problem = "not_an_object" if not isinstance(row, dict) else classification_problem(row)
        if problem:
            rejects.add(problem, n)
            continue
        choices = tuple(row["choices"]) if row.get("choices") is not None else None
        examples.append(LabelledExample(row["input"], row["label"], choices))
    if not examples:
        detail = f" ({rejects.summary()})" if rejects.total else " (the file is empty)"
        raise InputError(f"{path} has no usable labelled line{detail}: each line must be "
                         '{"input": str, "label": str} with an optional "choices": [str, ...]')
    return examples, rejects


def label_set(examples: list[LabelledExample]) -> tuple[str, ...]:
    """The distinct labels of a file, in order of first appearance (the choices of lines without their own)."""
    return tuple(dict.fromkeys(e.label for e in examples))

"""A small labelled task built in the tests (support-ticket routing), shared by the fine-tuning
tests and bench/finetune.py: a handful of labels, each signalled by one of its keywords, the
training and test lines in different sentence frames."""
from __future__ import annotations

import json
import random
from pathlib import Path

KEYWORDS = {
    "billing": ["invoice", "payment", "charge", "receipt"],
    "shipping": ["parcel", "delivery", "courier", "package"],
    "login": ["password", "username", "account", "sign-in"],
    "hardware": ["battery", "screen", "keyboard", "charger"],
}
TRAIN_FRAMES = ["my {kw} broke", "help with {kw}", "the {kw} is wrong", "{kw} problem", "{kw}", "a {kw} again",
                "{kw} is bad", "see {kw}", "no {kw} yet", "{kw} failed"]
TEST_FRAMES = ["question about {kw}", "{kw} issue today", "odd {kw}"]
TEMPLATE = "Ticket: {input}"


def lines(frames, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(sorted(KEYWORDS))
        out.append({"input": rng.choice(frames).format(kw=rng.choice(KEYWORDS[label])), "label": label})
    return out


def write_task(folder: Path, n_train: int = 300, n_test: int = 64) -> tuple[Path, Path]:
    """(train file, test file) under folder: classification lines."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / "tickets_train.jsonl", folder / "tickets_test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in lines(TRAIN_FRAMES, n_train, 0)))
    test.write_text("".join(json.dumps(r) + "\n" for r in lines(TEST_FRAMES, n_test, 1)))
    return train, test

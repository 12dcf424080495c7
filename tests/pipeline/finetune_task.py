"""A small labelled task built in the tests (support-ticket routing), shared by the fine-tuning
tests and bench/finetune.py: a handful of labels, each signalled by one of its keywords, the
training and test lines in different sentence frames."""
from __future__ import annotations

import json
import random
from pathlib import Path

KEYWORDS = {
    "billing": ["invoice", "payment"],
    "shipping": ["parcel", "courier"],
    "login": ["password", "username"],
    "hardware": ["battery", "screen"],
}
TRAIN_WORDS = ["my", "the", "help", "broke", "again", "wrong", "please", "now", "bad", "no", "see", "why"]
TEST_WORDS = ["question", "about", "odd", "today", "hello", "still", "strange", "thanks"]
"""Filler words around the keyword: the test file's are none of the training file's."""
TEMPLATE = "Ticket: {input}"


def lines(words: list[str], n: int, seed: int) -> list[dict]:
    """n tickets: a keyword of a random label between up to two filler words on each side."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(sorted(KEYWORDS))
        before = rng.sample(words, rng.randint(0, 2))
        after = rng.sample(words, rng.randint(0, 2))
        out.append({"input": " ".join(before + [rng.choice(KEYWORDS[label])] + after), "label": label})
    return out


def write_task(folder: Path, n_train: int = 300, n_test: int = 64) -> tuple[Path, Path]:
    """(train file, test file) under folder: classification lines."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = folder / "tickets_train.jsonl", folder / "tickets_test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in lines(TRAIN_WORDS, n_train, 0)))
    test.write_text("".join(json.dumps(r) + "\n" for r in lines(TEST_WORDS, n_test, 1)))
    return train, test

"""Shared builders for the evaluation tests: a random `debug` model with a tiny byte-level
BPE tokenizer trained here on inline text, saved as a real checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

TEXT = """\
def add(a, b):
    return a + b

class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()

import os
from pathlib import Path
for i in range(10):
    print(i, len(str(i)))
The json module converts Python objects to and from JSON text.
A tuple is immutable; a list is mutable. Use a dict for key lookup.
"""


@dataclass
class Checkpoint:
    path: Path
    model: object  # model.transformer.Transformer, as loaded back from `path`
    tokenizer: object  # model.tokenizer.Tokenizer


def train_tokenizer(path: Path, vocab_size: int = 400) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from model.tokenizer import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT] * 4, trainer=trainer)
    tok.save(str(path))
    return path


def build_checkpoint(folder: Path, seed: int = 0, **overrides) -> Checkpoint:
    """A randomly initialised `debug` model (plus overrides) saved with its tokenizer."""
    import torch

    from model.checkpoint import load_model, load_tokenizer, save_checkpoint
    from model.config import get_preset
    from model.tokenizer import Tokenizer
    from model.transformer import Transformer

    folder.mkdir(parents=True, exist_ok=True)
    tok_path = train_tokenizer(folder / "tokenizer.json")
    cfg = get_preset("debug", vocab_size=Tokenizer.from_file(tok_path).vocab_size, **overrides)
    torch.manual_seed(seed)
    save_checkpoint(folder / "ckpt", Transformer(cfg), cfg, tokenizer_path=tok_path)
    model, _ = load_model(folder / "ckpt")
    return Checkpoint(folder / "ckpt", model, load_tokenizer(folder / "ckpt"))


@pytest.fixture(scope="session")
def corpus_text() -> str:
    """The text the test tokenizer was trained on."""
    return TEXT


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Checkpoint:
    return build_checkpoint(tmp_path_factory.mktemp("ownlm-eval"))

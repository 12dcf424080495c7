"""Fixtures for model/ tests: a debug-sized model and a tiny byte-level BPE tokenizer."""
from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from model.config import get_preset
from model.tokenizer import SPECIAL_TOKENS

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n",
    "Once upon a time there was a tiny language model that learned to count: 1, 2, 3.",
    "Grüße aus Zürich — naïve café, 東京, emoji 🙂 and tabs\tand  double  spaces.",
] * 20


def train_bpe(vocab_size: int = 400, special_tokens=SPECIAL_TOKENS) -> HFTokenizer:
    """A byte-level BPE like pipeline/tokenize.py trains, on CORPUS."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok


@pytest.fixture(scope="session")
def make_bpe():
    """train_bpe itself: test modules cannot import conftest reliably (tests/ has several)."""
    return train_bpe


@pytest.fixture(scope="session")
def corpus():
    return CORPUS


@pytest.fixture(scope="session")
def tokenizer_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe().save(str(path))
    return path


@pytest.fixture
def debug_cfg():
    return get_preset("debug")


@pytest.fixture
def debug_model(debug_cfg):
    from model.transformer import Transformer

    torch.manual_seed(0)
    return Transformer(debug_cfg).eval()

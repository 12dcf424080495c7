"""Embeddings: unit vectors of mean-pooled final hidden states, the same in any batch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from model.config import get_preset
from model.embed import embed, embed_ids
from model.tokenizer import Tokenizer
from model.transformer import Transformer

TEXTS = ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b\n", "hi", ""]


@pytest.fixture(scope="module")
def tok(tokenizer_file):
    return Tokenizer.from_file(tokenizer_file)


@pytest.mark.parametrize("family", ["causal", "masked", "prefix"])
def test_vectors_are_unit_mean_pooled_hidden_states_whatever_the_batch(tok, family):
    torch.manual_seed(0)
    model = Transformer(get_preset("debug", vocab_size=tok.vocab_size, family=family)).eval()
    vectors = embed(model, tok, TEXTS, batch_size=3)
    assert vectors.shape == (4, 64) and vectors.dtype == torch.float32
    assert_close(vectors.norm(dim=-1), torch.ones(4))
    for text, v in zip(TEXTS, vectors):  # alone, without padding, it is the same vector
        ids = torch.tensor([tok.encode(text) or [tok.eot_id]])
        with torch.no_grad():
            hidden = model(ids, return_hidden=True)[0]
        assert_close(v, F.normalize(hidden.mean(0), dim=0), rtol=1e-5, atol=1e-5)
    assert_close(embed(model, tok, TEXTS[::-1], batch_size=4), vectors.flip(0), rtol=1e-5, atol=1e-5)
    assert (vectors @ vectors.T).fill_diagonal_(0).abs().max() < 0.9999  # texts differ


def test_long_texts_are_cut_to_the_window_and_bad_input_is_refused(tok):
    model = Transformer(get_preset("debug", vocab_size=tok.vocab_size, max_seq_len=16)).eval()
    ids = list(range(10, 40))
    assert_close(embed_ids(model, [ids]), embed_ids(model, [ids[:16]]))
    with pytest.raises(ValueError, match="at least one token"):
        embed_ids(model, [[]])
    with pytest.raises(ValueError, match="batch_size"):
        embed(model, tok, ["x"], batch_size=0)
    assert embed(model, tok, []).shape == (0, 64)
    model.train()
    embed(model, tok, ["x"])
    assert model.training  # the caller's mode comes back

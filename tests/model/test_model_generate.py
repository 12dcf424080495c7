"""Generation: cache parity, stopping, sampling, the context window."""
from __future__ import annotations

import pytest
import torch

from model.config import get_preset
from model.generate import generate, generate_batch, generate_stream, generate_text, generate_texts, sample
from model.sampling import SamplingParams as P
from model.tokenizer import Tokenizer
from model.transformer import Transformer


@pytest.fixture
def peaked_model():
    """A debug model with larger init: peaked logits, so greedy never hinges on a near tie."""
    torch.manual_seed(0)
    return Transformer(get_preset("debug", init_std=0.1)).eval()


PROMPT = [5, 17, 300, 42, 7]


def test_kv_cache_greedy_equals_recompute_token_for_token(peaked_model):
    cached = generate(peaked_model, PROMPT, P(max_new_tokens=32), use_cache=True)
    recomputed = generate(peaked_model, PROMPT, P(max_new_tokens=32), use_cache=False)
    assert len(cached) == 32
    assert cached == recomputed
    assert len(set(cached)) > 1  # a degenerate repeat would make the parity trivial


def test_kv_cache_sampling_equals_recompute_with_a_seed(peaked_model):
    params = P(max_new_tokens=20, temperature=1.0, top_k=50, top_p=0.9, seed=123)
    assert generate(peaked_model, PROMPT, params, use_cache=True) == generate(peaked_model, PROMPT, params,
                                                                               use_cache=False)


def test_stops_at_eos_and_returns_it_last(peaked_model):
    free = generate(peaked_model, PROMPT, P(max_new_tokens=30))
    eos = free[5]
    first = free.index(eos)
    stopped = generate(peaked_model, PROMPT, P(max_new_tokens=30), eos_id=eos)
    assert stopped == free[: first + 1]


def test_respects_max_new_tokens(peaked_model):
    assert len(generate(peaked_model, PROMPT, P(max_new_tokens=7))) == 7
    assert generate(peaked_model, PROMPT, P(max_new_tokens=0)) == []
    assert generate(peaked_model, PROMPT, P(max_new_tokens=7)) == \
        generate(peaked_model, PROMPT, P(max_new_tokens=12))[:7]


def test_long_prompts_are_cut_from_the_left_to_fit_the_window(peaked_model):
    window = peaked_model.cfg.max_seq_len  # 128
    long_prompt = [int(t) for t in torch.randint(0, 4096, (200,), generator=torch.Generator().manual_seed(1))]
    out = generate(peaked_model, long_prompt, P(max_new_tokens=10))
    assert out == generate(peaked_model, long_prompt[-(window - 10):], P(max_new_tokens=10))


def test_fit_window_keeps_the_newest_prompt_tokens_and_one_at_least():
    from model.generate import _fit_window

    assert _fit_window(list(range(10)), 4, max_seq_len=8) == ([6, 7, 8, 9], 4)
    assert _fit_window(list(range(3)), 4, max_seq_len=8) == ([0, 1, 2], 4)
    assert _fit_window(list(range(10)), 50, max_seq_len=8) == ([9], 7)


def test_top_k_one_equals_greedy(peaked_model):
    greedy = generate(peaked_model, PROMPT, P(max_new_tokens=20))
    assert generate(peaked_model, PROMPT, P(max_new_tokens=20, temperature=1.0, top_k=1, seed=0)) == greedy
    assert generate(peaked_model, PROMPT, P(max_new_tokens=20, temperature=5.0, top_k=1, seed=1)) == greedy


def test_seed_makes_sampling_repeatable(peaked_model):
    a = generate(peaked_model, PROMPT, P(max_new_tokens=20, temperature=1.5, seed=7))
    assert a == generate(peaked_model, PROMPT, P(max_new_tokens=20, temperature=1.5, seed=7))
    assert a != generate(peaked_model, PROMPT, P(max_new_tokens=20, temperature=1.5, seed=8))


def test_generation_does_not_leak_inference_mode(peaked_model):
    stream = generate_stream(peaked_model, PROMPT, P(max_new_tokens=3))
    next(stream)
    assert not torch.is_inference_mode_enabled()
    stream.close()


def test_sample_greedy_top_k_and_top_p():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]])
    assert sample(logits).tolist() == [1]
    g = torch.Generator().manual_seed(0)
    draws = {int(sample(logits, P(temperature=1.0, top_k=2), generator=g)) for _ in range(200)}
    assert draws == {1, 3}
    # probs ~ [.03, .64, .09, .24, .01]: top_p=0.5 keeps only the best, 0.8 the best two
    assert {int(sample(logits, P(temperature=1.0, top_p=0.5), generator=g)) for _ in range(100)} == {1}
    assert {int(sample(logits, P(temperature=1.0, top_p=0.8), generator=g)) for _ in range(300)} == {1, 3}
    batch = sample(torch.randn(4, 3, 10), P(temperature=1.0), generator=g)
    assert batch.shape == (4, 3)


@pytest.mark.parametrize("kw", [dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_sampling_settings_fail_when_they_are_made(kw):
    with pytest.raises(ValueError):
        P(**{"temperature": 1.0, **kw})


def test_bad_arguments_fail_at_the_call_not_at_the_first_token(peaked_model):
    with pytest.raises(ValueError, match="at least one prompt token"):
        generate_stream(peaked_model, [], P(max_new_tokens=5))


def test_generate_text_stops_at_a_stop_string(tokenizer_file):
    tok = Tokenizer.from_file(tokenizer_file)
    torch.manual_seed(0)
    model = Transformer(get_preset("debug", vocab_size=tok.vocab_size, init_std=0.1)).eval()
    free = generate_text(model, tok, "The quick", P(max_new_tokens=40))
    assert len(free) >= 4, free
    stop = free[len(free) // 2 : len(free) // 2 + 2]
    cut = generate_text(model, tok, "The quick", P(max_new_tokens=40), stop=[stop, "never-there"])
    assert cut == free[: free.find(stop)]
    assert stop not in cut


# ---- batches of prompts of different lengths ----

PROMPTS = [[5, 17, 300, 42, 7], [9], list(range(100, 120)), [3, 3]]


@pytest.mark.parametrize("family", ["causal", "prefix"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_generation_equals_one_by_one(family, use_cache):
    torch.manual_seed(0)
    model = Transformer(get_preset("debug", init_std=0.1, family=family)).eval()
    alone = [generate(model, p, P(max_new_tokens=16)) for p in PROMPTS]
    assert generate_batch(model, PROMPTS, P(max_new_tokens=16), use_cache=use_cache) == alone
    assert len({tuple(a) for a in alone}) == len(PROMPTS)  # different prompts, different answers


def test_each_row_of_a_batch_stops_at_its_own_eos(peaked_model):
    free = generate_batch(peaked_model, PROMPTS, P(max_new_tokens=20))
    eos = free[0][3]  # the first row emits it early; others may later, or never
    stopped = generate_batch(peaked_model, PROMPTS, P(max_new_tokens=20), eos_id=eos)
    for row, s in zip(free, stopped):
        assert s == (row[: row.index(eos) + 1] if eos in row else row)
    two = generate_batch(peaked_model, PROMPTS, P(max_new_tokens=20), eos_id=[eos, free[1][2]])
    assert all(len(t) <= len(s) for t, s in zip(two, stopped)) and two[1] == free[1][:3]


def test_batched_sampling_is_repeatable_and_top_k_one_is_greedy(peaked_model):
    params = P(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=3)
    assert generate_batch(peaked_model, PROMPTS, params) == generate_batch(peaked_model, PROMPTS, params)
    assert generate_batch(peaked_model, PROMPTS, P(max_new_tokens=12, temperature=2.0, top_k=1, seed=1)) == \
        generate_batch(peaked_model, PROMPTS, P(max_new_tokens=12))


def test_padded_rows_get_the_logits_they_get_alone(peaked_model):
    short, long = torch.tensor([[7, 8, 9]]), torch.tensor([[1, 2, 3, 4, 5, 6]])
    batch = torch.tensor([[0, 0, 0, 7, 8, 9], [1, 2, 3, 4, 5, 6]])
    real = torch.tensor([[False] * 3 + [True] * 3, [True] * 6])
    with torch.no_grad():
        out = peaked_model(batch, padding_mask=real)
        torch.testing.assert_close(out[0, 3:], peaked_model(short)[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[1], peaked_model(long)[0], rtol=1e-5, atol=1e-5)
        assert torch.isfinite(out).all()


def test_generate_texts_batches_prompts_and_cuts_each_at_its_stop(tokenizer_file):
    tok = Tokenizer.from_file(tokenizer_file)
    torch.manual_seed(0)
    model = Transformer(get_preset("debug", vocab_size=tok.vocab_size, init_std=0.1)).eval()
    prompts = ["The quick", "def add(a, b):", ""]
    alone = [generate_text(model, tok, p, P(max_new_tokens=24)) for p in prompts]
    assert generate_texts(model, tok, prompts, P(max_new_tokens=24)) == alone
    stop = alone[1][2:4]
    cut = generate_texts(model, tok, prompts, P(max_new_tokens=24), stop=[stop])
    assert cut == [generate_text(model, tok, p, P(max_new_tokens=24), stop=[stop]) for p in prompts]
    assert cut[1] == alone[1][: alone[1].find(stop)]

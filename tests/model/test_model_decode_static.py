"""The static KV cache and the compiled decoding step give the tokens of the dynamic cache and of
full recompute (greedy, padded batches of every family with a cache)."""
from __future__ import annotations

import warnings

import pytest
import torch

from model.config import get_preset
from model.decode_compile import batch_bucket
from model.generate import generate_batch, prefill
from model.kv_cache import StaticKVCache
from model.sampling import SamplingParams as P
from model.transformer import Transformer

PROMPTS = [[5, 17, 300, 42, 7], [9], [250, 3, 3]]
"""Different lengths: the batch is left-padded, so the static step's key mask does real work."""


def model_of(family: str = "causal", seed: int = 0) -> Transformer:
    """A debug model with larger init: peaked logits, so greedy never hinges on a near tie."""
    torch.manual_seed(seed)
    return Transformer(get_preset("debug", init_std=0.1, family=family)).eval()


def full_recompute_argmax(model: Transformer, prompt: list[int], n: int) -> list[int]:
    """The reference: the whole sequence through the model for every new token, no cache at all."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("family", ["causal", "prefix"])
def test_static_cache_greedy_equals_dynamic_cache_and_full_recompute(family):
    model = model_of(family)
    static = generate_batch(model, PROMPTS, P(max_new_tokens=24), static_cache=True)
    dynamic = generate_batch(model, PROMPTS, P(max_new_tokens=24))
    assert static == dynamic
    if family == "causal":  # a prefix LM's prompt is bidirectional: one-row recompute is not its reference
        assert static == [full_recompute_argmax(model, p, 24) for p in PROMPTS]
    assert all(len(set(row)) > 1 for row in static)  # a degenerate repeat would make the parity trivial


def test_static_cache_sampling_with_a_seed_equals_the_dynamic_cache():
    model = model_of()
    params = P(max_new_tokens=16, temperature=1.0, top_k=50, seed=3)
    assert generate_batch(model, PROMPTS, params, static_cache=True) == generate_batch(model, PROMPTS, params)


def test_static_cache_masks_unwritten_and_padding_slots():
    model = model_of()
    cache = StaticKVCache(model.cfg, batch_size=2, max_len=8)
    with torch.inference_mode():
        prefill(model, torch.tensor([[0, 4, 5], [6, 7, 8]]), cache,
                padding_mask=torch.tensor([[False, True, True], [True, True, True]]))
    cache.begin_decoding(3)
    assert cache.valid.tolist() == [[False, True, True] + [False] * 5, [True] * 3 + [False] * 5]
    assert cache.lengths.tolist() == [2, 3]


def test_batch_buckets_are_powers_of_two():
    assert [batch_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]


def test_compiled_decoding_gives_the_eager_tokens_and_reuses_its_graph():
    """One compile of the debug model (tens of seconds on CPU): a batch of 3 runs at the bucket of 4.
    A later request of other lengths, and another model of the same shapes, reuse that graph and
    get their own eager tokens (the weights are inputs, not constants baked in). A fallback to
    eager would make the parity eager's own, so it fails the test."""
    from torch._dynamo.utils import counters

    model, other = model_of(), model_of(seed=1)
    later = [[1, 2], [3, 4, 5, 6, 7, 8], [9]]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        compiled = generate_batch(model, PROMPTS, P(max_new_tokens=16), compile=True)
        graphs = counters["stats"]["unique_graphs"]
        compiled_later = generate_batch(model, later, P(max_new_tokens=16), compile=True)
        compiled_other = generate_batch(other, PROMPTS, P(max_new_tokens=16), compile=True)
    assert not [w for w in seen if "decoding eagerly" in str(w.message)]
    assert counters["stats"]["unique_graphs"] == graphs
    assert compiled == generate_batch(model, PROMPTS, P(max_new_tokens=16))
    assert compiled_later == generate_batch(model, later, P(max_new_tokens=16))
    assert compiled_other == generate_batch(other, PROMPTS, P(max_new_tokens=16)) != compiled

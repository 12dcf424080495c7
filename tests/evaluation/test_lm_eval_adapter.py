from __future__ import annotations

import pytest
import torch
from lm_eval.api.instance import Instance

from evaluation.lm_eval_adapter import OwnLM


def ll_request(context: str, continuation: str, idx: int = 0) -> Instance:
    return Instance("loglikelihood", doc={}, arguments=(context, continuation), idx=idx)


def direct_score(model, ctx: list[int], cont: list[int], max_len: int) -> tuple[float, bool]:
    """Log p(cont | ctx) straight from the model: one unpadded sequence, left-truncated."""
    window = (ctx + cont)[-(max_len + 1):]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([window[:-1]]))[0].float(), dim=-1)
    picked = logprobs[-len(cont):]  # (n, V): the last n positions predict the continuation
    target = torch.tensor(cont)
    return picked.gather(-1, target[:, None]).sum().item(), bool((picked.argmax(-1) == target).all())


def split_encode(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's HF convention: trailing context spaces join the continuation, and the
    continuation is what the whole encoding has past the context's tokens."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    ctx = tok.encode(stripped)
    return ctx, tok.encode(stripped + continuation)[len(ctx):]


@pytest.fixture(scope="module")
def lm(checkpoint):
    return OwnLM(path=checkpoint.path, batch_size=3)


def test_importing_registers_the_model(checkpoint):
    from lm_eval.api.registry import get_model

    assert get_model("ownlm") is OwnLM
    # What `lm_eval --model ownlm --model_args path=...,max_length=64 --batch_size 4` builds.
    lm = get_model("ownlm").create_from_arg_string(
        f"path={checkpoint.path},max_length=64", {"batch_size": 4, "max_batch_size": None, "device": None})
    assert (lm.batch_size, lm.max_length, lm.device.type) == (4, 64, "cpu")


def test_loglikelihood_matches_the_model_in_request_order(lm, checkpoint, corpus_text):
    model, tok = checkpoint.model, checkpoint.tokenizer
    long_context = corpus_text * 3  # several hundred tokens: must be cut from the left to max_seq_len
    assert len(tok.encode(long_context)) > model.cfg.max_seq_len
    pairs = [
        ("def add(a, b):", " return a + b"),
        (long_context, " the json module"),
        ("A tuple is ", "immutable"),  # trailing space moves onto the continuation
        ("class", " Stack"),
        (long_context[:200], "\n    def pop(self):"),
    ]
    got = lm.loglikelihood([ll_request(c, x, i) for i, (c, x) in enumerate(pairs)])

    assert len(got) == len(pairs)
    for (context, continuation), (score, greedy) in zip(pairs, got):
        ctx, cont = split_encode(tok, context, continuation)
        want_score, want_greedy = direct_score(model, ctx, cont, model.cfg.max_seq_len)
        assert score == pytest.approx(want_score, abs=1e-4)
        assert greedy == want_greedy
    # Different requests give different scores, so a mixed-up order would have shown above.
    assert len({round(s, 4) for s, _ in got}) == len(pairs)


def test_batching_and_padding_do_not_change_scores(checkpoint):
    pairs = [("def add(a, b):", " return a + b"), ("import", " os"), ("for i in range(10):", "\n    print(i)")]
    requests = [ll_request(c, x) for c, x in pairs]
    one = OwnLM.from_model(checkpoint.model, checkpoint.tokenizer, batch_size=1).loglikelihood(requests)
    all_ = OwnLM.from_model(checkpoint.model, checkpoint.tokenizer, batch_size=8).loglikelihood(requests)
    for (a, ga), (b, gb) in zip(one, all_):
        assert a == pytest.approx(b, abs=1e-5) and ga == gb


def test_empty_context_conditions_on_end_of_text(lm, checkpoint):
    tok = checkpoint.tokenizer
    (score, _), = lm.loglikelihood([ll_request("", "import os")])
    want, _ = direct_score(checkpoint.model, [tok.eot_id], tok.encode("import os"), checkpoint.model.cfg.max_seq_len)
    assert score == pytest.approx(want, abs=1e-4)


def test_is_greedy_exactly_when_the_continuation_is_the_argmax(lm, checkpoint):
    from model.generate import generate
    from model.sampling import SamplingParams

    ctx = checkpoint.tokenizer.encode("def push(self, item):")
    greedy = generate(checkpoint.model, ctx, SamplingParams(max_new_tokens=3))
    other = greedy[:-1] + [(greedy[-1] + 1) % checkpoint.model.cfg.vocab_size]
    (s_greedy, is_greedy), (s_other, is_other) = lm._loglikelihood_tokens(
        [(None, ctx, greedy), (None, ctx, other)])
    assert is_greedy is True and is_other is False
    assert s_greedy > s_other


def test_rolling_loglikelihood_of_a_short_text_is_its_total_log_prob(lm, checkpoint):
    model, tok = checkpoint.model, checkpoint.tokenizer
    text = "class Stack:\n    def push(self, item):\n        self.items.append(item)\n"
    ids = [tok.eot_id] + tok.encode(text)
    assert len(ids) - 1 < model.cfg.max_seq_len
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0].float(), dim=-1)
    want = logprobs.gather(-1, torch.tensor(ids[1:])[:, None]).sum().item()

    (got,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert got == pytest.approx(want, abs=1e-3)


def test_rolling_windows_past_max_length(checkpoint, corpus_text):
    """Windows of 16 predicted tokens, each conditioned on its own window only; the last,
    shorter one reads a full 16-token window ending at the text's end."""
    model, tok, width = checkpoint.model, checkpoint.tokenizer, 16
    text = corpus_text[:300]
    tokens = tok.encode(text)
    n = len(tokens)
    assert n > 3 * width and n % width
    ids = [tok.eot_id] + tokens  # ids[j + 1] == tokens[j]
    want = 0.0
    with torch.no_grad():
        for start in range(0, n, width):
            k = min(width, n - start)
            lo = max(0, start + k - width)  # the input window (in ids) ends at start + k
            logprobs = torch.log_softmax(model(torch.tensor([ids[lo : start + k]]))[0].float(), -1)
            targets = torch.tensor(ids[start + 1 : start + k + 1])
            want += logprobs[-k:].gather(-1, targets[:, None]).sum().item()

    lm = OwnLM.from_model(model, tok, batch_size=4, max_length=width)
    (got,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert got == pytest.approx(want, abs=1e-3)


def gen_request(context: str, **gen_kwargs) -> Instance:
    return Instance("generate_until", doc={}, arguments=(context, gen_kwargs), idx=0)


def test_generate_until_stops_at_the_until_string(lm):
    prompt = "def add(a, b):"
    (free,) = lm.generate_until([gen_request(prompt, until=[], max_gen_toks=24)])
    assert len(free) > 8, free
    stop = free[4:7]  # a string the greedy text is known to reach
    cut = free.index(stop)

    calls = []
    forward = lm.model.forward
    lm.model.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        (stopped,) = lm.generate_until([gen_request(prompt, until=[stop], max_gen_toks=24)])
    finally:
        del lm.model.forward
    assert stopped == free[:cut]
    assert len(calls) < 24  # decoding stopped once the stop string appeared


def test_generate_until_greedy_ignores_temperature_without_do_sample(lm):
    prompt = "import "
    (greedy,) = lm.generate_until([gen_request(prompt, until=["\n\n"], max_gen_toks=12)])
    (again,) = lm.generate_until([gen_request(prompt, until=["\n\n"], max_gen_toks=12,
                                              do_sample=False, temperature=0.9)])
    assert again == greedy


def test_generate_until_samples_repeatably_with_a_seed(checkpoint):
    lm = OwnLM.from_model(checkpoint.model, checkpoint.tokenizer, seed=7)
    req = gen_request("for i in", until=[], max_gen_toks=12, do_sample=True, temperature=1.0)
    assert lm.generate_until([req]) == lm.generate_until([req])


def test_needs_a_model():
    with pytest.raises(ValueError, match="checkpoint"):
        OwnLM()

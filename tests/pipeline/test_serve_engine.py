"""The server's engine and request parsing without Ray: a batch of unrelated requests decodes
what each decodes alone (model.generate is the reference), stop strings never leak into a
stream, and bad bodies become OpenAI errors."""
from __future__ import annotations

import pytest

from model.sampling import SamplingParams
from pipeline.serve.engine import Engine, Sequence, _partial_stop
from pipeline.serve.protocol import ApiError, CompletionRequest, parse
from tests.evaluation.conftest import build_checkpoint


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    ckpt = build_checkpoint(tmp_path_factory.mktemp("engine"))
    return Engine(ckpt.model, ckpt.tokenizer)


def run(engine, seqs):
    texts, reasons, tokens = [""] * len(seqs), [None] * len(seqs), [[] for _ in seqs]
    for step in engine.generate(seqs):
        for i, piece in enumerate(step):
            if piece is not None:
                texts[i] += piece.text
                tokens[i] += piece.tokens
                reasons[i] = piece.finish_reason or reasons[i]
    return texts, reasons, tokens


def test_a_mixed_batch_decodes_what_each_request_decodes_alone(engine):
    from model.generate import generate

    tok = engine.tok
    seqs = [Sequence(tok.encode("def add"), 10, SamplingParams(max_new_tokens=10), stop_ids=[tok.eot_id]),
            Sequence(tok.encode("import os\nfor i in"), 4, SamplingParams(max_new_tokens=4, temperature=1.0, seed=3),
                     stop_ids=[tok.eot_id]),
            Sequence(tok.encode("x"), 7, SamplingParams(max_new_tokens=7, temperature=0.7, top_p=0.9, seed=5),
                     stop_ids=[tok.eot_id])]
    _, reasons, tokens = run(engine, seqs)
    for seq, got in zip(seqs, tokens):
        assert got == generate(engine.model, seq.prompt_ids, seq.params, eos_id=tok.eot_id)
    assert reasons == ["length" if len(t) == s.max_tokens else "stop" for t, s in zip(tokens, seqs)]


def test_requests_too_long_to_share_the_window_run_in_turn(engine):
    from model.generate import generate

    window = engine.window
    long_prompt = engine.tok.encode("def add(a, b):\n    return a + b\n" * 20)[: window - 8]
    seqs = [Sequence(long_prompt, 8, SamplingParams(max_new_tokens=8)),
            Sequence(engine.tok.encode("x"), 40, SamplingParams(max_new_tokens=40))]
    assert engine._groups(seqs) == [[0], [1]]
    _, _, tokens = run(engine, seqs)
    assert tokens == [generate(engine.model, s.prompt_ids, s.params) for s in seqs]


def test_stop_strings_end_the_text_and_never_reach_the_stream(engine):
    tok = engine.tok
    prompt = tok.encode("class Stack")
    full, _, _ = run(engine, [Sequence(prompt, 24, SamplingParams(max_new_tokens=24))])
    stop = full[0][6:9]
    assert stop.strip()
    pieces = []
    for step in engine.generate([Sequence(prompt, 24, SamplingParams(max_new_tokens=24), stop=[stop])]):
        if step[0] is not None:
            pieces.append(step[0])
    assert "".join(p.text for p in pieces) == full[0][:full[0].find(stop)]
    assert pieces[-1].finish_reason == "stop"


def test_partial_stop_is_held_back():
    assert _partial_stop("hello wor", ["world"]) == 3
    assert _partial_stop("hello", ["world", "lo!"]) == 2
    assert _partial_stop("hello", ["xyz"]) == 0


def test_generated_logprobs_top_holds_the_greedy_token(engine):
    seq = Sequence(engine.tok.encode("def "), 5, SamplingParams(max_new_tokens=5), logprobs=3)
    entries = [e for step in engine.generate([seq]) if step[0] for e in step[0].logprobs]
    assert len(entries) == 5
    for text, lp, top in entries:
        assert len(top) <= 3 and lp == pytest.approx(max(top.values()))


@pytest.mark.parametrize("body, code", [
    (b'{"model": "m", "prompt": ', "invalid_json"),
    (b'{"model": "m", "prompt": "x", "max_tokens": "ten"}', "invalid_value"),
    (b'{"model": "m", "prompt": "x", "temprature": 1}', "invalid_value"),
    (b'{"model": "m", "prompt": [1, "a"]}', "invalid_value"),
    (b'[1, 2]', None),
])
def test_bad_bodies_are_400s_in_openai_shape(body, code):
    with pytest.raises(ApiError) as e:
        parse(body, CompletionRequest)
    assert e.value.status == 400 and e.value.code == code
    assert set(e.value.body()["error"]) == {"message", "type", "param", "code"}


def test_wrong_type_names_the_field():
    with pytest.raises(ApiError) as e:
        parse(b'{"model": "m", "prompt": "x", "max_tokens": "ten"}', CompletionRequest)
    assert e.value.param == "max_tokens"

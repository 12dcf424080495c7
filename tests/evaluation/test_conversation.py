"""Conversational metrics: definitions on hand-made conversations, offline embedders, the judge."""
from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.conversation import evaluate_conversations, load_conversations, score_conversation
from evaluation.embeddings import HashingEmbedder, make_embedder
from evaluation.judge import ChatClient, JudgeError, judge_conversation
from evaluation.tasks import TASKS_DIR

from judge_server import chat_server


def conv(*pairs, facts=(), id="c"):
    turns = []
    for user, assistant in pairs:
        turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"id": id, "turns": turns, "facts": list(facts)}


GOOD = conv(("My cat Luna likes tuna and sleeping in boxes.", "Luna sounds happy: cats love tuna and boxes. Does Luna play too?"),
            ("She chases string. What food did I say Luna likes?", "You said Luna likes tuna, and string chasing keeps her active."),
            facts=[{"value": "tuna", "introduced": 0, "asked": 2}], id="good")
OFF = conv(("My cat Luna likes tuna and sleeping in boxes.", "The stock market closed higher on Tuesday."),
           ("She chases string. What food did I say Luna likes?", "The stock market closed higher on Tuesday."),
           facts=[{"value": "tuna", "introduced": 0, "asked": 2}], id="off")


def test_metrics_tell_a_good_conversation_from_an_off_topic_repetitive_one():
    emb = HashingEmbedder()
    good, off = score_conversation(GOOD, emb), score_conversation(OFF, emb)
    assert good["coherence"] > off["coherence"]
    assert (good["context_awareness"], off["context_awareness"]) == (1.0, 0.0)
    assert off["diversity"] == pytest.approx(0.0, abs=1e-6)  # the same reply twice
    assert good["question_rate"] == 0.5 and off["question_rate"] == 0.0
    assert good["engagement"] > off["engagement"]
    assert good["engagement"] == pytest.approx(np.mean([good["informativeness"], good["diversity"], 0.5]))


def test_informativeness_counts_new_content_words():
    c = conv(("Tell me about Python.", "Python is a programming language created by Guido van Rossum in 1991."),
             ("Ok.", "Python is a programming language."))
    s = score_conversation(c, HashingEmbedder())
    # First reply: programming, language, created, guido, van, rossum = 6 new words ("python" came
    # with the question; 8 give full credit); the second repeats words already used: nothing new.
    assert s["informativeness"] == pytest.approx((6 / 8 + 0) / 2)


def test_context_awareness_over_a_file_counts_facts_not_conversations():
    emb = HashingEmbedder()
    two_facts = conv(("I live in Oslo and work as a nurse.", "Nice."), ("Where do I live and what is my job?", "You live in Oslo."),
                     facts=[{"value": "Oslo", "introduced": 0, "asked": 2},
                            {"value": "nurse", "introduced": 0, "asked": 2}], id="two")
    out = evaluate_conversations([GOOD, two_facts], emb, progress=False)
    assert out["summary"]["context_awareness"] == pytest.approx(2 / 3)
    assert out["metrics"]["eval/conversation/context_awareness"] == pytest.approx(2 / 3)
    assert all("," not in k and " " not in k for k in out["metrics"])


def test_bad_files_list_every_problem(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([json.dumps({"turns": []}), "not json",
                               json.dumps({"turns": [{"role": "bot", "content": "x"}]}),
                               json.dumps({**GOOD, "facts": [{"value": "x", "introduced": 2, "asked": 0}]})]))
    with pytest.raises(ValueError, match="4 problem") as err:
        load_conversations(path)
    assert "line 2: not JSON" in str(err.value) and "introduced" in str(err.value)


def test_the_bundled_sample_scores(tmp_path):
    convs = load_conversations(TASKS_DIR / "conversations.jsonl")
    out = evaluate_conversations(convs, HashingEmbedder(), progress=False)
    by_id = {c["id"]: c for c in out["conversations"]}
    assert by_id["pet"]["context_awareness"] == 1.0 and by_id["repetitive"]["context_awareness"] == 0.0
    assert by_id["repetitive"]["engagement"] < by_id["pet"]["engagement"]


def test_minilm_runs_offline_and_knows_meaning(monkeypatch):
    """The packaged all-MiniLM-L6-v2 loads with the network refused and ranks a paraphrase
    above an unrelated sentence, which word overlap alone cannot."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    emb = make_embedder("minilm")
    a, para, other = emb.encode(["The kitten is sleeping on the sofa.", "A young cat naps on the couch.",
                                 "The kitten tax is due on the sofa invoice."])
    assert float(a @ para) > float(a @ other)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)


def test_replies_generated_by_a_model(checkpoint):
    out = evaluate_conversations([GOOD], HashingEmbedder(), model=checkpoint.model, tokenizer=checkpoint.tokenizer,
                                 max_new_tokens=8, progress=False)
    turns = out["conversations"][0]["turns"]
    assert [t["role"] for t in turns] == [t["role"] for t in GOOD["turns"]]
    assert [t["content"] for t in turns if t["role"] == "user"] == [t["content"] for t in GOOD["turns"] if t["role"] == "user"]
    assert turns[1]["content"] != GOOD["turns"][1]["content"]  # the model's, not the file's
    emb = make_embedder("ownlm", model=checkpoint.model, tokenizer=checkpoint.tokenizer)
    vecs = emb.encode(["hello", "def add(a, b):"])
    assert vecs.shape == (2, checkpoint.model.cfg.dim)


def test_llm_judge_against_an_openai_compatible_endpoint():
    def reply(body):
        text = body["messages"][-1]["content"]
        good = "You said Luna likes tuna" in text
        return ('Verdict: {"coherence": %d, "context_awareness": %d, "engagement": 3, "reason": "ok"}'
                % ((5, 5) if good else (1, 1)))

    with chat_server(reply) as (url, requests):
        client = ChatClient(url, "judge-7b", api_key="secret")
        out = evaluate_conversations([GOOD, OFF], HashingEmbedder(), judge=client, progress=False)
    assert len(requests) == 2 and requests[0]["path"] == "/v1/chat/completions"
    assert requests[0]["model"] == "judge-7b" and requests[0]["auth"] == "Bearer secret"
    assert "USER: My cat Luna likes tuna" in requests[0]["messages"][-1]["content"]
    judged = {c["id"]: c["judge"] for c in out["conversations"]}
    assert judged["good"]["coherence"] == 1.0 and judged["off"]["coherence"] == 0.0
    assert out["metrics"]["eval/conversation/judge/coherence"] == 0.5
    assert out["metrics"]["eval/conversation/judge/engagement"] == 0.5


def test_judge_replies_that_cannot_be_read_fail_clearly():
    with chat_server(lambda body: "I think it is fine.") as (url, _):
        with pytest.raises(JudgeError, match="no JSON object"):
            judge_conversation(ChatClient(url, "j"), GOOD["turns"])
    with chat_server(lambda body: '{"coherence": 9, "context_awareness": 1, "engagement": 1}') as (url, _):
        with pytest.raises(JudgeError, match="outside 1..5"):
            judge_conversation(ChatClient(url, "j"), GOOD["turns"])
    with pytest.raises(JudgeError, match="failed"):
        ChatClient("http://127.0.0.1:9/v1", "j", timeout=2).chat([{"role": "user", "content": "hi"}])

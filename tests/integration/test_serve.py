"""`ownlm serve` for real: the Serve application on the tests' Ray instance (started once for
this module), driven by the official openai client, by lm-eval's own `local-completions` model,
and by raw HTTP for what clients get wrong. References: the in-process model (generate, embed)
and `ownlm eval`'s lm-eval model on the same checkpoint."""
from __future__ import annotations

import json
import threading

import pytest
import requests

from cluster.local import free_port
from tests.evaluation.conftest import build_checkpoint

pytestmark = pytest.mark.integration

KEY = "test-key-123"
APP = "ownlm-test"


@pytest.fixture(scope="module")
def server(ray_session, tmp_path_factory):
    from ray import serve

    from pipeline.config import ServeConfig
    from pipeline.serve.command import settings_for, start

    ckpt = build_checkpoint(tmp_path_factory.mktemp("serve"))
    cfg = ServeConfig(port=free_port(), api_key=KEY, app_name=APP, max_batch_size=8, batch_wait_timeout_s=0.05,
                      max_tokens=64, max_n=4, model_name="tiny-test", compile=False)
    url = start(cfg, settings_for(cfg, str(ckpt.path)))
    yield {"url": url, "ckpt": ckpt, "cfg": cfg}
    serve.shutdown()


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, timeout=60)


def post(server, path, body, key=KEY, raw=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else json.dumps(body)
    return requests.post(server["url"] + path, data=data, headers={**headers, "Content-Type": "application/json"},
                         timeout=60)


def test_completion_is_the_in_process_greedy_text_with_usage(server, client):
    from model.generate import generate_text
    from model.sampling import SamplingParams

    ckpt = server["ckpt"]
    want = generate_text(ckpt.model, ckpt.tokenizer, "def add", SamplingParams(max_new_tokens=12))
    out = client.completions.create(model="tiny-test", prompt="def add", max_tokens=12, temperature=0)
    assert out.choices[0].text == want
    assert out.usage.prompt_tokens == len(ckpt.tokenizer.encode("def add"))
    assert out.usage.completion_tokens <= 12 and out.usage.total_tokens == out.usage.prompt_tokens + \
        out.usage.completion_tokens


def test_streamed_chat_equals_the_unstreamed_reply(server, client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def add(a, b):"}]
    for sampling in ({"temperature": 0}, {"temperature": 1.0, "seed": 7}):
        whole = client.chat.completions.create(model="tiny-test", messages=messages, max_tokens=16, **sampling)
        chunks = list(client.chat.completions.create(model="tiny-test", messages=messages, max_tokens=16, stream=True,
                                                     **sampling))
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) > 1  # the reply arrived in pieces, not as one block at the end
        assert "".join(pieces) == whole.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert whole.usage.completion_tokens > 0


def test_embeddings_are_the_in_process_vectors(server, client):
    import torch

    from model.embed import embed

    ckpt = server["ckpt"]
    texts = ["import os", "a tuple is immutable"]
    out = client.embeddings.create(model="tiny-test", input=texts)  # the client asks for base64
    got = torch.tensor([d.embedding for d in out.data])
    torch.testing.assert_close(got, embed(ckpt.model, ckpt.tokenizer, texts), atol=1e-5, rtol=1e-5)
    assert out.usage.prompt_tokens == sum(len(ckpt.tokenizer.encode(t)) for t in texts)


def test_n_seed_and_stop(server, client):
    a = client.completions.create(model="tiny-test", prompt=["x = ", "for i"], max_tokens=10, temperature=1.0, n=3,
                                  seed=11)
    b = client.completions.create(model="tiny-test", prompt=["x = ", "for i"], max_tokens=10, temperature=1.0, n=3,
                                  seed=11)
    assert [c.index for c in a.choices] == list(range(6))
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # a seed repeats
    greedy = client.completions.create(model="tiny-test", prompt="class Stack", max_tokens=16, temperature=0)
    text = greedy.choices[0].text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    if stop.strip():
        cut = client.completions.create(model="tiny-test", prompt="class Stack", max_tokens=16, temperature=0,
                                        stop=[stop])
        assert cut.choices[0].text == text[:text.find(stop)] and cut.choices[0].finish_reason == "stop"


def test_echo_logprobs_score_the_prompt_from_one_tensor(server):
    ckpt = server["ckpt"]
    ids = ckpt.tokenizer.encode("def add(a, b):\n    return a + b")
    body = {"model": "tiny-test", "prompt": ids, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0}
    choice = post(server, "/v1/completions", body).json()["choices"][0]
    lp = choice["logprobs"]
    assert len(lp["token_logprobs"]) == len(ids) + 1 and lp["token_logprobs"][0] is None
    assert choice["text"].startswith(ckpt.tokenizer.decode(ids))
    import torch

    with torch.inference_mode():
        ref = torch.log_softmax(ckpt.model(torch.tensor([ids])).float(), -1)[0]  # (T, V)
    for i in range(1, len(ids)):
        assert lp["token_logprobs"][i] == pytest.approx(float(ref[i - 1, ids[i]]), abs=1e-4)
        top = max(lp["top_logprobs"][i].values())
        assert (lp["token_logprobs"][i] == top) == (int(ref[i - 1].argmax()) == ids[i])


def test_lm_eval_local_completions_matches_ownlm_eval(server):
    pytest.importorskip("tenacity", reason="lm-eval's API models need tenacity: pip install -e '.[dev]'")
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    from evaluation.harness import run_lm_eval

    ckpt = server["ckpt"]
    lm = LocalCompletionsAPI(base_url=server["url"] + "/v1/completions", model="tiny-test", auth_token=KEY,
                             tokenizer_backend="remote", max_length=ckpt.model.cfg.max_seq_len, num_concurrent=4)
    import os

    os.environ["OPENAI_API_KEY"] = KEY  # local-completions sends this one as its bearer token
    remote = run_lm_eval(lm, ["ownlm_pyfacts"], limit=8, log_samples=True)
    local = run_lm_eval(str(ckpt.path), ["ownlm_pyfacts"], limit=8, log_samples=True)
    assert remote["metrics"]["eval/ownlm_pyfacts/acc"] == local["metrics"]["eval/ownlm_pyfacts/acc"]
    assert remote["metrics"]["eval/ownlm_pyfacts/acc_norm"] == local["metrics"]["eval/ownlm_pyfacts/acc_norm"]
    by_doc = {s["doc_id"]: s for s in local["samples"]["ownlm_pyfacts"]}
    assert len(by_doc) == 8
    for s in remote["samples"]["ownlm_pyfacts"]:  # filtered_resps: (log-likelihood, is_greedy) per choice
        want = by_doc[s["doc_id"]]["filtered_resps"]
        assert [g for _, g in s["filtered_resps"]] == [g for _, g in want]
        assert [ll for ll, _ in s["filtered_resps"]] == pytest.approx([ll for ll, _ in want], abs=1e-4)


def test_concurrent_requests_are_batched(server):
    from ray import serve

    handle = serve.get_deployment_handle("ModelServer", app_name=APP)
    before = handle.stats.remote().result()
    body = {"model": "tiny-test", "prompt": "def ", "max_tokens": 24, "temperature": 0}
    results = []
    threads = [threading.Thread(target=lambda: results.append(post(server, "/v1/completions", body)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results)
    assert len({r.json()["choices"][0]["text"] for r in results}) == 1  # batching changes no text
    after = handle.stats.remote().result()
    new = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert any(size > 1 and count > 0 for size, count in new.items()), after


@pytest.mark.parametrize("case", ["no key", "wrong key", "malformed json", "wrong type", "unknown field",
                                  "unknown model", "over-long prompt", "n past the limit", "max_tokens past the limit",
                                  "token outside the vocabulary"])
def test_bad_requests_get_openai_errors_and_the_server_keeps_answering(server, case):
    ok = {"model": "tiny-test", "prompt": "def ", "max_tokens": 2}
    window = server["ckpt"].model.cfg.max_seq_len
    response = {
        "no key": lambda: post(server, "/v1/completions", ok, key=None),
        "wrong key": lambda: post(server, "/v1/completions", ok, key="nope"),
        "malformed json": lambda: post(server, "/v1/completions", None, raw='{"model": "tiny-test", "prompt": '),
        "wrong type": lambda: post(server, "/v1/completions", {**ok, "max_tokens": "ten"}),
        "unknown field": lambda: post(server, "/v1/completions", {**ok, "temprature": 0.5}),
        "unknown model": lambda: post(server, "/v1/completions", {**ok, "model": "gpt-5"}),
        "over-long prompt": lambda: post(server, "/v1/completions", {**ok, "prompt": [5] * window}),
        "n past the limit": lambda: post(server, "/v1/completions", {**ok, "n": 5}),
        "max_tokens past the limit": lambda: post(server, "/v1/completions", {**ok, "max_tokens": 65}),
        "token outside the vocabulary": lambda: post(server, "/v1/completions", {**ok, "prompt": [10 ** 6]}),
    }[case]()
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if case in ("no key", "wrong key"):
        assert response.status_code == 401
    assert post(server, "/v1/completions", ok).status_code == 200
    assert requests.get(server["url"] + "/health", timeout=10).status_code == 200  # no key needed


def test_tokenizer_endpoints_and_models(server):
    ckpt = server["ckpt"]
    tokens = post(server, "/tokenize", {"prompt": "def add", "add_special_tokens": False}).json()["tokens"]
    assert tokens == ckpt.tokenizer.encode("def add")
    assert post(server, "/detokenize", {"tokens": tokens}).json()["prompt"] == "def add"
    info = requests.get(server["url"] + "/tokenizer_info", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    assert info["eos_token"] == "<|endoftext|>" and "<|assistant|>" in info["chat_template"]
    models = requests.get(server["url"] + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny-test"]

"""Parity with lm-eval's own `hf` backend on the same model exported to Hugging Face format
(`model.hf.export_hf`): the same loglikelihood per request and the same task accuracy.
lm-eval's `hf` backend needs transformers and accelerate (the dev extra)."""
from __future__ import annotations

import pytest
from lm_eval.api.instance import Instance

from evaluation.harness import run_lm_eval
from evaluation.lm_eval_adapter import OwnLM


@pytest.fixture(scope="module")
def both(checkpoint, tmp_path_factory):
    from lm_eval.models.huggingface import HFLM

    from model.hf import export_hf

    hf_dir = export_hf(checkpoint.path, tmp_path_factory.mktemp("hf") / "export")
    hf = HFLM(pretrained=str(hf_dir), device="cpu", batch_size=4, dtype="float32")
    return OwnLM(path=checkpoint.path, batch_size=3), hf


def test_same_loglikelihood_per_request(both, corpus_text):
    ours, hf = both
    pairs = [("def add(a, b):", " return a + b"), ("import", " os"), ("A tuple is ", "immutable"),
             ("", "class Stack:"), (corpus_text * 3, " the json module"), ("for i in range(10):", "\n    print(i)")]
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    for (a, greedy_a), (b, greedy_b) in zip(ours.loglikelihood(requests), hf.loglikelihood(requests)):
        assert a == pytest.approx(b, abs=1e-4)
        assert greedy_a == greedy_b
    text = "class Stack:\n    def push(self, item):\n        self.items.append(item)\n"
    rolling = [Instance("loglikelihood_rolling", {}, (text,), 0)]
    assert ours.loglikelihood_rolling(rolling)[0] == pytest.approx(hf.loglikelihood_rolling(rolling)[0], abs=1e-4)


def test_same_accuracy_on_a_local_multiple_choice_task(both):
    ours, hf = both
    a = run_lm_eval(ours, ["ownlm_pyfacts", "arc_easy"], data_dir="bundled", limit=16)["results"]
    b = run_lm_eval(hf, ["ownlm_pyfacts", "arc_easy"], data_dir="bundled", limit=16)["results"]
    for task in ("ownlm_pyfacts", "arc_easy"):
        assert a[task]["acc,none"] == b[task]["acc,none"]
        assert a[task]["acc_norm,none"] == b[task]["acc_norm,none"]

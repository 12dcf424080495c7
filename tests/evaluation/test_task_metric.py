"""The task metric (evaluation/task_metric.py): a labelled file scored through lm-eval as two
generated tasks; its accuracy matches ranking the labels' log-likelihoods by hand, and bad lines
are counted with their line numbers."""
import json

import pytest
import torch

from evaluation.task_metric import evaluate_task_file, task_name
from evaluation.taskfile import read_task_file
from model.config import get_preset
from model.errors import InputError
from model.tokenizer import Tokenizer
from model.transformer import Transformer
from tests.model.conftest import train_bpe

TEMPLATE = "Topic of: {input}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    tok = Tokenizer(train_bpe(400))
    model = Transformer(get_preset("debug", vocab_size=tok.vocab_size)).eval()
    path = tmp_path_factory.mktemp("task") / "topics.jsonl"
    rows = [{"input": "the quick brown fox", "label": "animals"}, {"input": "def add(a, b)", "label": "code"},
            {"input": "once upon a time", "label": "story"}, {"input": "lazy dog", "label": "animals"},
            {"input": "return a + b", "label": "code", "choices": ["code", "story"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n"
                    + json.dumps({"input": "x", "label": "z", "choices": ["a"]}) + "\n")
    return tok, model, path


def by_hand(model, tok, path) -> float:
    examples, _ = read_task_file(path)
    labels = list(dict.fromkeys(e.label for e in examples))
    right = 0
    for e in examples:
        context = tok.encode(tok.chat_prompt([{"role": "user", "content": TEMPLATE.replace("{input}", e.input)}]))
        scores = []
        for choice in e.choices or labels:
            cont = tok.encode(choice + "<|end|>")
            ids = torch.tensor([context + cont])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(ids[:, :-1]).float(), -1)[0]
            scores.append(sum(logprobs[len(context) - 1 + i, t].item() for i, t in enumerate(cont)))
        right += (e.choices or labels)[max(range(len(scores)), key=scores.__getitem__)] == e.label
    return right / len(examples)


def test_accuracy_matches_ranking_the_labels_by_hand(setup):
    tok, model, path = setup
    report = evaluate_task_file(model, tok, path, template=TEMPLATE)
    assert set(report["metrics"]) == {"task/topics/acc", "task/topics/exact_match"}
    assert report["metrics"]["task/topics/acc"] == pytest.approx(by_hand(model, tok, path))
    assert 0 <= report["metrics"]["task/topics/exact_match"] <= 1
    assert report["docs"] == 5 and report["rejects"] == {"not_json": [6], "label_not_in_choices": [7]}


def test_an_unusable_file_is_one_error_and_names_are_cleaned(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": 1}\n')
    with pytest.raises(InputError, match=r"bad_classification \(line 1\)"):
        read_task_file(bad)
    assert task_name("dir/my-task.v2.jsonl") == "my_task_v2"

"""Fine-tuning data (pipeline/finetune/data.py): formats detected per line, bad lines counted with
their line numbers, the loss on the assistant's tokens only, and packing that scores exactly
what the examples score one by one."""
import json

import numpy as np
import pytest
import torch

from model.config import get_preset
from model.errors import InputError
from model.objectives import sft_terms
from model.tokenizer import Tokenizer
from model.transformer import Transformer
from pipeline.finetune.data import IDS, MASK, SEGMENT, encode, pack, read_examples
from tests.model.conftest import train_bpe


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(train_bpe(400))


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_the_loss_covers_the_assistant_tokens_only(tok):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "add 1 and 2"},
                {"role": "assistant", "content": "3"}, {"role": "user", "content": "and 4?"},
                {"role": "assistant", "content": "7"}]
    enc = encode(tok, messages, "all")
    assert enc.ids == tok.encode(tok.chat_prompt(messages, add_generation_prompt=False))  # the one template
    trained = tok.decode([i for i, m in zip(enc.ids, enc.mask) if m])
    assert trained == "3<|end|>7<|end|>"
    last = encode(tok, messages, "last")
    assert tok.decode([i for i, m in zip(last.ids, last.mask) if m]) == "7<|end|>"


def test_formats_are_detected_per_line_and_bad_lines_counted(tok, tmp_path):
    path = write(tmp_path / "mixed.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"prompt": "2+2", "completion": "4"},
        {"input": "my invoice", "label": "billing"},
        "this is not json",
        {"messages": [{"role": "user", "content": "no answer"}]},
        {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]},
        {"input": "x", "label": "y", "choices": ["a", "b"]},
        "",
    ])
    examples, rejects = read_examples(path, tok, template="Q: {input}", loss_on="all", max_tokens=128)
    assert len(examples) == 3
    assert rejects.to_dict() == {"not_json": [4], "no_assistant_turn": [5], "unknown_role": [6],
                                 "label_not_in_choices": [7]}
    classification = tok.decode(examples[2].ids)
    assert classification == "<|user|>Q: my invoice<|end|><|assistant|>billing<|end|>"


def test_nothing_usable_is_one_clear_error(tok, tmp_path):
    with pytest.raises(InputError, match="the file is empty"):
        read_examples(write(tmp_path / "empty.jsonl", []), tok, template="{input}", loss_on="all", max_tokens=64)
    with pytest.raises(InputError, match=r"not_json \(lines 1, 2\)"):
        read_examples(write(tmp_path / "bad.jsonl", ["{", "nope"]), tok, template="{input}", loss_on="all",
                      max_tokens=64)


def test_packed_loss_equals_unpacked_loss(tok):
    torch.manual_seed(0)
    examples = [encode(tok, [{"role": "user", "content": f"question {i} " * (1 + i % 3)},
                             {"role": "assistant", "content": f"answer {i}"}], "all") for i in range(7)]
    row_len = 64
    packed, unpacked = pack(examples, row_len, tok.pad_id, True), pack(examples, row_len, tok.pad_id, False)
    assert len(packed) < len(unpacked) == len(examples)
    assert packed[:, SEGMENT].max() > 1  # rows really hold several examples
    model = Transformer(get_preset("debug", vocab_size=tok.vocab_size)).eval()

    def loss(rows):
        rows = torch.as_tensor(rows)
        total, count = sft_terms(model, rows[:, IDS], rows[:, MASK], rows[:, SEGMENT])
        return total / count, count

    (packed_loss, n_packed), (unpacked_loss, n_unpacked) = loss(packed), loss(unpacked)
    assert n_packed == n_unpacked == sum(sum(e.mask[1:]) for e in examples)
    torch.testing.assert_close(packed_loss, unpacked_loss, rtol=1e-5, atol=1e-5)
    # the reference: each example alone, no segments, no padding
    alone_total = sum(torch.nn.functional.cross_entropy(
        model(torch.tensor([e.ids[:-1]]))[0], torch.tensor(e.ids[1:]), reduction="none")[
        torch.tensor(e.mask[1:])].sum() for e in examples)
    torch.testing.assert_close(packed_loss, alone_total / n_packed, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(packed[:, MASK].sum(), unpacked[:, MASK].sum())

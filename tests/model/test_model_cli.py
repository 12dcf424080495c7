"""The model tools as a user runs them: ownlm export / import / embed / generate / chat."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from model.checkpoint import load_model, save_checkpoint
from model.config import get_preset
from model.sampling import SamplingParams
from model.tokenizer import Tokenizer
from model.transformer import Transformer
from pipeline.cli import main


@pytest.fixture
def ckpt(tmp_path, tokenizer_file):
    cfg = get_preset("debug", vocab_size=Tokenizer.from_file(tokenizer_file).vocab_size, init_std=0.1)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", Transformer(cfg), cfg, tokenizer_path=tokenizer_file)
    return tmp_path / "ckpt"


def run(*argv, root):
    return main([*argv, "--root", str(root)])


def test_export_then_import_gives_the_same_model(ckpt, tmp_path, capsys):
    assert run("export", str(ckpt), "--format", "hf", "--output", str(tmp_path / "hf"), root=tmp_path) == 0
    assert "from_pretrained" in capsys.readouterr().out
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "llama"
    assert run("import", str(tmp_path / "hf"), "--output", str(tmp_path / "back"), root=tmp_path) == 0
    assert "imported" in capsys.readouterr().out
    (a, _), (b, _) = load_model(ckpt), load_model(tmp_path / "back")
    tokens = torch.randint(0, 400, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(a(tokens), b(tokens))
    assert run("import", str(tmp_path), "--output", str(tmp_path / "x"), root=tmp_path) == 1
    assert "no config.json" in capsys.readouterr().err


def test_embed_writes_json_lines_or_an_array(ckpt, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("The quick brown fox\n\ndef add(a, b):\n")
    assert run("embed", "--model", str(ckpt), "--input", str(texts), root=tmp_path) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["The quick brown fox", "def add(a, b):"]
    assert all(abs(np.linalg.norm(r["embedding"]) - 1) < 1e-5 for r in rows)
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": r["text"]}) for r in rows) + "\n")
    assert run("embed", "--model", str(ckpt), "--input", str(jsonl), "--output", str(tmp_path / "e.npy"),
               root=tmp_path) == 0
    array = np.load(tmp_path / "e.npy")
    assert array.shape == (2, 64) and np.allclose(array, [r["embedding"] for r in rows], atol=1e-6)
    jsonl.write_text('{"txt": 1}\n')
    assert run("embed", "--model", str(ckpt), "--input", str(jsonl), root=tmp_path) == 1
    assert "no string 'text' field" in capsys.readouterr().err


def test_generate_prints_the_prompt_and_its_greedy_completion(ckpt, tmp_path, capsys):
    from model.checkpoint import load_tokenizer
    from model.generate import generate_text

    assert run("generate", "--model", str(ckpt), "--prompt", "The quick", "--set", "generate.temperature=0",
               "--set", "generate.max_new_tokens=12", root=tmp_path) == 0
    model, _ = load_model(ckpt)
    expected = "The quick" + generate_text(model, load_tokenizer(ckpt), "The quick",
                                           SamplingParams(max_new_tokens=12))
    assert capsys.readouterr().out == expected + "\n"


def test_chat_reads_messages_from_stdin_and_answers_in_the_assistant_role(ckpt, tmp_path, capsys, monkeypatch):
    from model.checkpoint import load_tokenizer
    from model.generate import generate
    from model.tokenizer import chat_prompt

    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n\n/reset\nhello\n/exit\nnever read\n"))
    assert run("chat", "--model", str(ckpt), "--system", "Be brief.", "--temperature", "0",
               "--max-new-tokens", "8", root=tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    replies = [line.removeprefix("assistant> ") for line in out if line.startswith("assistant> ")]
    assert len(replies) == 2 and replies[0] == replies[1]  # /reset forgets the first exchange
    model, _ = load_model(ckpt)
    tok = load_tokenizer(ckpt)
    prompt = tok.encode(chat_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]))
    ids = generate(model, prompt, SamplingParams(max_new_tokens=8), eos_id=[tok.eot_id, tok.end_of_turn_id])
    ids = [i for i in ids if i not in (tok.eot_id, tok.end_of_turn_id)]
    assert "\n".join(out).startswith("assistant> " + tok.decode(ids))

"""The tokenizer wrapper: exact round trips, special tokens, fingerprints."""
from __future__ import annotations

import json

import pytest

from model.tokenizer import EOT, MASK, PAD, ROLE_TOKENS, SPECIAL_TOKENS, Tokenizer, chat_prompt

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces  ",
    "def f(x):\n\treturn x ** 2  # comment\n",
    "Grüße, naïve café, 東京, Ελληνικά, emoji 🙂🚀, zero-width\u200bjoiner",
    "never seen in training: zyxwvut QQQ 12345",
    "",
]


@pytest.fixture(scope="module")
def tok(tokenizer_file):
    return Tokenizer.from_file(tokenizer_file)


@pytest.mark.parametrize("text", TEXTS)
def test_decode_of_encode_gives_the_text_back(tok, text):
    ids = tok.encode(text)
    assert all(isinstance(i, int) for i in ids)
    assert tok.decode(ids) == text


def test_special_tokens_have_ids_and_encode_adds_none(tok):
    assert SPECIAL_TOKENS == [EOT, PAD, *ROLE_TOKENS, MASK]  # new tokens go last: old ids stay put
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    assert None not in ids.values() and len(set(ids.values())) == len(SPECIAL_TOKENS)
    assert tok.eot_id == ids[EOT] and tok.pad_id == ids[PAD] and tok.mask_id == ids[MASK]
    assert tok.end_of_turn_id == ids["<|end|>"]
    plain = tok.encode("hello")
    assert tok.eot_id not in plain and tok.pad_id not in plain
    # A chat template written as text maps role markers to their single ids.
    assert tok.encode("<|user|>hi<|end|>") == [ids["<|user|>"], *tok.encode("hi"), ids["<|end|>"]]
    assert tok.decode([tok.eot_id]) == EOT
    assert tok.decode([tok.eot_id, *plain], skip_special_tokens=True) == "hello"


def test_encode_batch_equals_encode_each(tok):
    assert tok.encode_batch(TEXTS) == [tok.encode(t) for t in TEXTS]


def test_vocab_size_counts_special_tokens(tok, corpus):
    assert tok.vocab_size == 400
    assert max(tok.encode(" ".join(corpus[:4]))) < tok.vocab_size


def test_fingerprint_survives_re_saving_and_tracks_content(tok, make_bpe, tmp_path):
    assert len(tok.fingerprint) == 64
    pretty, compact = tmp_path / "pretty.json", tmp_path / "compact.json"
    tok.backend.save(str(pretty), pretty=True)
    compact.write_text(tok.backend.to_str())
    assert Tokenizer.from_file(pretty).fingerprint == Tokenizer.from_file(compact).fingerprint == tok.fingerprint
    other = tmp_path / "other.json"
    make_bpe(vocab_size=380).save(str(other))
    assert Tokenizer.from_file(other).fingerprint != tok.fingerprint


def test_a_tokenizer_without_eot_or_pad_is_refused(make_bpe, tmp_path):
    path = tmp_path / "no_specials.json"
    make_bpe(vocab_size=300, special_tokens=["<|user|>"]).save(str(path))
    with pytest.raises(ValueError, match=r"lacks the special tokens \['<\|endoftext\|>', '<\|pad\|>'\]"):
        Tokenizer.from_file(path)


def test_missing_or_malformed_files_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        Tokenizer.from_file(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(ValueError, match="not a Hugging Face tokenizers JSON"):
        Tokenizer.from_file(bad)


def test_tokenizers_trained_before_the_mask_token_have_no_mask_id(make_bpe, tmp_path):
    path = tmp_path / "old.json"
    make_bpe(vocab_size=300, special_tokens=[EOT, PAD, *ROLE_TOKENS]).save(str(path))
    old = Tokenizer.from_file(path)
    assert old.mask_id is None and old.eot_id == 0


def test_chat_prompt_writes_turns_in_role_tokens(tok):
    text = chat_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert text == "<|system|>Be brief.<|end|><|user|>hi<|end|><|assistant|>"
    ids = tok.encode(text)
    assert ids[0] == tok.token_to_id("<|system|>") and ids[-1] == tok.token_to_id("<|assistant|>")
    assert chat_prompt([{"role": "user", "content": "x"}], add_generation_prompt=False) == "<|user|>x<|end|>"
    with pytest.raises(ValueError, match="message 0"):
        chat_prompt([{"role": "bot", "content": "x"}])

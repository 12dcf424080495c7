"""Hugging Face Llama checkpoints: the same logits in transformers as in ours, both ways (fp32),
tokenizer files that AutoTokenizer reads, and refusals for what ours cannot represent.
Every model is built here at random: nothing is downloaded."""
from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

from model.checkpoint import CheckpointError, load_model, load_tokenizer, save_checkpoint
from model.config import get_preset
from model.hf import (
    HFFormatError,
    config_from_hf,
    export_hf,
    half_to_interleaved,
    import_hf,
    interleaved_to_half,
)
from model.tokenizer import EOT, MASK, PAD, SPECIAL_TOKENS, Tokenizer, chat_prompt
from model.transformer import Transformer

transformers = pytest.importorskip("transformers", reason="the parity tests need transformers (the dev extra)")

TOKENS = torch.randint(0, 400, (2, 19), generator=torch.Generator().manual_seed(0))


def random_ownlm(cfg, seed=0):
    """Random weights with norms away from one, so a mixed-up norm or head would show."""
    torch.manual_seed(seed)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    return model


def hf_logits(path, tokens):
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path)).eval()  # the dtype config.json names
    assert hf.dtype == torch.float32
    with torch.no_grad():
        return hf(tokens).logits


@pytest.mark.parametrize("tied", [True, False])
def test_exported_checkpoint_gives_our_logits_in_transformers(tmp_path, tokenizer_file, tied):
    # debug: 4 query heads over 2 k/v heads, so the rotary permutation of wk is tested with GQA
    cfg = get_preset("debug", vocab_size=400, tie_embeddings=tied, rope_theta=5000.0, norm_eps=1e-6)
    model = random_ownlm(cfg)
    save_checkpoint(tmp_path / "ckpt", model, cfg, tokenizer_path=tokenizer_file)
    out = export_hf(tmp_path / "ckpt", tmp_path / "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= {p.name for p in out.iterdir()}
    with torch.no_grad():
        ours = model(TOKENS)
    assert_close(hf_logits(out, TOKENS), ours, rtol=1e-4, atol=1e-4)


def test_exported_tokenizer_loads_in_autotokenizer_with_our_ids_and_chat_template(tmp_path, tokenizer_file):
    cfg = get_preset("debug", vocab_size=400)
    save_checkpoint(tmp_path / "ckpt", Transformer(cfg), cfg, tokenizer_path=tokenizer_file)
    export_hf(tmp_path / "ckpt", tmp_path / "hf")
    ours = Tokenizer.from_file(tokenizer_file)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    text = "def add(a, b):\n    return a + b  # Grüße"
    assert hf_tok(text)["input_ids"] == ours.encode(text)
    assert hf_tok.eos_token == EOT and hf_tok.pad_token == PAD and hf_tok.mask_token == MASK
    messages = [{"role": "user", "content": "hi"}]
    assert hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == chat_prompt(messages)
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [ours.eot_id, ours.end_of_turn_id]


def random_hf_llama(tmp_path, tied: bool, **extra):
    config = transformers.LlamaConfig(
        vocab_size=400, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=96, rms_norm_eps=1e-6, tie_word_embeddings=tied,
        **extra,
    )
    torch.manual_seed(1)
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.1)
    hf.save_pretrained(str(tmp_path / "hf"))
    return hf


@pytest.mark.parametrize("tied", [True, False])
def test_imported_llama_gives_its_logits_in_ours(tmp_path, tied):
    hf = random_hf_llama(tmp_path, tied, rope_theta=20000.0) if transformers.__version__ < "5" else \
        random_hf_llama(tmp_path, tied, rope_parameters={"rope_type": "default", "rope_theta": 20000.0})
    report = import_hf(tmp_path / "hf", tmp_path / "ckpt")
    assert report["tokenizer"] is False and report["added_tokens"] == []
    model, cfg = load_model(tmp_path / "ckpt")
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim, cfg.max_seq_len) == (64, 2, 4, 2, 160, 96)
    assert cfg.rope_theta == 20000.0 and cfg.tie_embeddings == tied and cfg.family == "causal"
    with torch.no_grad():
        assert_close(model(TOKENS), hf(TOKENS).logits, rtol=1e-4, atol=1e-4)


LLAMA3_ROPE = {"factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
"""With head_dim 16 and theta 10000 the pairs' turns within 32 positions are 5.1, 1.6, 0.5, ...:
one pair kept, one interpolated, the rest slowed, so every branch of the scaling counts."""


def test_llama31_rope_scaling_imports_and_exports_with_the_same_logits(tmp_path, tokenizer_file):
    rope = {"rope_type": "llama3", **LLAMA3_ROPE}
    hf = random_hf_llama(tmp_path, False, rope_theta=10000.0, rope_scaling=rope) if transformers.__version__ < "5" \
        else random_hf_llama(tmp_path, False, rope_parameters={**rope, "rope_theta": 10000.0})
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    model, cfg = load_model(tmp_path / "ckpt")
    assert cfg.rope_scaling == LLAMA3_ROPE
    tokens = torch.randint(0, 400, (2, 90), generator=torch.Generator().manual_seed(0))  # past the original 32
    with torch.no_grad():
        expected = hf(tokens).logits
        assert_close(model(tokens), expected, rtol=1e-4, atol=1e-4)
        plain = Transformer(config_from_hf({**json.loads((tmp_path / "hf" / "config.json").read_text()),
                                            "rope_scaling": None, "rope_parameters": None}))
        plain.load_state_dict(model.state_dict())
        assert (plain(tokens) - expected).abs().max() > 1e-2  # the scaling matters here
    save_checkpoint(tmp_path / "ours", model, cfg, tokenizer_path=tokenizer_file)
    export_hf(tmp_path / "ours", tmp_path / "again")
    assert_close(hf_logits(tmp_path / "again", tokens), expected, rtol=1e-4, atol=1e-4)


def test_import_then_export_gives_back_the_same_tensors(tmp_path):
    random_hf_llama(tmp_path, tied=False)
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    export_hf(tmp_path / "ckpt", tmp_path / "again")
    from safetensors.torch import load_file

    first, again = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert first.keys() == again.keys()
    for k in first:
        assert torch.equal(first[k], again[k]), k


def test_rotary_permutation_is_inverted_exactly():
    w = torch.randn(4 * 16, 64)
    assert torch.equal(half_to_interleaved(interleaved_to_half(w, 4), 4), w)
    # Head 0's pair (row 0, row 1) becomes (row 0, row hd/2) in the half layout.
    half = interleaved_to_half(w, 4)
    assert torch.equal(half[0], w[0]) and torch.equal(half[8], w[1]) and torch.equal(half[1], w[2])


def test_import_adds_our_special_tokens_to_a_foreign_tokenizer_and_grows_the_vocab(tmp_path, make_bpe):
    random_hf_llama(tmp_path, tied=True)
    foreign = make_bpe(vocab_size=400, special_tokens=["<s>", "</s>"])  # a Llama-style tokenizer, 400 ids
    foreign.save(str(tmp_path / "hf" / "tokenizer.json"))
    report = import_hf(tmp_path / "hf", tmp_path / "ckpt")
    assert report["added_tokens"] == SPECIAL_TOKENS
    model, cfg = load_model(tmp_path / "ckpt")
    tok = load_tokenizer(tmp_path / "ckpt")
    assert cfg.vocab_size == tok.vocab_size == 400 + len(SPECIAL_TOKENS)
    assert cfg.mask_id == tok.mask_id == 400 + SPECIAL_TOKENS.index(MASK)
    emb = model.tok_embeddings.weight
    assert_close(emb[tok.eot_id], emb[:400].mean(0))  # new rows start at the mean of the old
    text = "The quick brown fox"
    assert tok.encode(text) == foreign.encode(text, add_special_tokens=False).ids  # old ids unchanged


def test_features_ours_lacks_are_refused_by_name(tmp_path):
    base = dict(model_type="llama", vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=2)
    assert config_from_hf(base).n_kv_heads == 2
    with pytest.raises(HFFormatError) as e:
        config_from_hf({**base, "model_type": "gpt2", "attention_bias": True,
                        "rope_scaling": {"rope_type": "yarn", "factor": 8.0}})
    for needle in ("model_type is 'gpt2'", "attention_bias", "rope type 'yarn'"):
        assert needle in str(e.value)
    with pytest.raises(HFFormatError) as e:
        config_from_hf({**base, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    for needle in ("low_freq_factor", "original_max_position_embeddings"):
        assert needle in str(e.value)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        import_hf(tmp_path, tmp_path / "out")


def test_only_the_causal_family_exports(tmp_path):
    cfg = get_preset("debug", family="prefix")
    save_checkpoint(tmp_path / "ckpt", Transformer(cfg), cfg)
    with pytest.raises(CheckpointError, match="only the causal family exports"):
        export_hf(tmp_path / "ckpt", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()

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
    CHAT_TEMPLATE,
    HFFormatError,
    chat_template,
    config_from_hf,
    export_hf,
    half_to_interleaved,
    import_hf,
    interleaved_to_half,
)
from model.tokenizer import EOT, MASK, PAD, ROLE_TOKENS, Tokenizer, chat_prompt
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


def random_hf_llama(tmp_path, tied: bool, vocab_size=400, **extra):
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
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
    assert report["tokenizer"] is False and report["roles"] == {} and report["missing"] == []
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


# ---- import keeps the model; special tokens are added only explicitly ----

def bpe_512(special_tokens):
    """A byte-level BPE with exactly 512 ids (a corpus of random words has enough merges)."""
    import random

    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))) for _ in range(300)]
    corpus = [" ".join(rng.choice(words) for _ in range(30)) for _ in range(200)]
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=512, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    assert tok.get_vocab_size(with_added_tokens=True) == 512
    return tok


LLAMA_CHAT = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"


def hf_llama_512(tmp_path, tied: bool, tokenizer: str):
    """A random Llama with a 512-id tokenizer. tokenizer "own": Llama-style <s> </s> <pad> (ids 0, 1,
    2), a post-processor that prepends <s>, a chat template, saved by transformers; "none": a bare
    tokenizer.json with no special token at all."""
    from tokenizers import processors

    rope = {"rope_theta": 20000.0} if transformers.__version__ < "5" else \
        {"rope_parameters": {"rope_type": "default", "rope_theta": 20000.0}}
    ids = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2) if tokenizer == "own" else \
        dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    hf = random_hf_llama(tmp_path, tied, vocab_size=512, **rope, **ids)
    if tokenizer == "own":
        backend = bpe_512(["<s>", "</s>", "<pad>"])
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
        fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                                    pad_token="<pad>")
        fast.chat_template = LLAMA_CHAT
        fast.save_pretrained(str(tmp_path / "hf"))
    else:
        bpe_512([]).save(str(tmp_path / "hf" / "tokenizer.json"))
    return hf


def fp32_model(path):
    kw = {"dtype": torch.float32} if transformers.__version__ >= "5" else {"torch_dtype": torch.float32}
    return transformers.AutoModelForCausalLM.from_pretrained(str(path), **kw).eval()


SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "tie_word_embeddings", "max_position_embeddings", "rms_norm_eps",
              "bos_token_id", "eos_token_id", "pad_token_id")
ROPE_KEYS = ("rope_parameters",) if transformers.__version__ >= "5" else ("rope_theta", "rope_scaling")
TEXTS = ["hello world", "abc def ghij klmno", "  two spaces\tand a tab", "Grüße 🙂"]
CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


@pytest.mark.parametrize("tied,tokenizer", [(True, "own"), (False, "none"), (False, "own")])
def test_import_then_export_gives_back_the_same_model_and_tokenizer(tmp_path, tied, tokenizer):
    original = hf_llama_512(tmp_path, tied, tokenizer)
    report = import_hf(tmp_path / "hf", tmp_path / "ckpt")
    assert report["config"].vocab_size == 512 and report["tokenizer"] is True

    model, cfg = load_model(tmp_path / "ckpt")
    tok = load_tokenizer(tmp_path / "ckpt")
    assert cfg.vocab_size == tok.vocab_size == 512 and cfg.tie_embeddings == tied and cfg.mask_id is None
    assert (tmp_path / "ckpt" / "tokenizer.json").read_bytes() == (tmp_path / "hf" / "tokenizer.json").read_bytes()
    if tokenizer == "own":  # roles mapped onto its own tokens, nothing added
        assert {r: t for r, t in report["roles"].items() if t} == {"eot": "</s>", "pad": "<pad>", "bos": "<s>"}
        assert (tok.eot_id, tok.pad_id, tok.bos_id) == (1, 2, 0)
        assert report["missing"] == ["system", "user", "assistant", "end_of_turn", "mask"]
    else:
        assert set(report["roles"].values()) == {None} and report["missing"] == list(tok.roles)[:-1]
        with pytest.raises(ValueError, match=r"end-of-text \(eot\).*add_special_tokens"):  # MissingSpecialTokens
            tok.eot_id
    with pytest.raises(ValueError, match=r"end-of-turn \(end_of_turn\)"):
        tok.chat_prompt(CHAT)
    assert tok.end_of_turn_id is None

    export_hf(tmp_path / "ckpt", tmp_path / "again")
    first = transformers.AutoConfig.from_pretrained(str(tmp_path / "hf")).to_dict()
    again = transformers.AutoConfig.from_pretrained(str(tmp_path / "again")).to_dict()
    for key in SHAPE_KEYS + ROPE_KEYS:
        assert again.get(key) == first.get(key), key
    assert again["vocab_size"] == 512
    exported = fp32_model(tmp_path / "again")
    tokens = torch.randint(0, 512, (2, 23), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert_close(exported(tokens).logits, original(tokens).logits, rtol=0, atol=1e-5)
        assert_close(model(tokens), original(tokens).logits, rtol=1e-4, atol=1e-4)

    hf_first = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    hf_again = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "again"))
    assert len(hf_again) == len(hf_first) == 512
    for text in TEXTS:
        assert hf_again(text)["input_ids"] == hf_first(text)["input_ids"], text
        assert tok.encode(text) == hf_first(text, add_special_tokens=False)["input_ids"], text
    assert (hf_again.eos_token, hf_again.pad_token, hf_again.bos_token) == \
        (hf_first.eos_token, hf_first.pad_token, hf_first.bos_token)
    if tokenizer == "own":
        assert hf_first(TEXTS[0])["input_ids"][0] == 0  # its post-processor's <s>, kept
        assert hf_again.apply_chat_template(CHAT, tokenize=False) == hf_first.apply_chat_template(CHAT, tokenize=False)


def test_tokenizer_roles_map_onto_its_own_tokens_and_missing_ones_are_named(make_bpe, tokenizer_file):
    from model.tokenizer import OWN_TOKENS, TOKEN_ROLES, MissingSpecialTokens

    backend = make_bpe(vocab_size=300, special_tokens=["<s>", "</s>"])
    with pytest.raises(ValueError, match="lacks the special tokens"):
        Tokenizer(backend)  # ownlm's own tokens are required when no roles are given, as before
    tok = Tokenizer(backend, roles={"eot": "</s>", "bos": "<s>"})
    assert (tok.eot_id, tok.bos_id, tok.mask_id, tok.end_of_turn_id) == (1, 0, None, None)
    assert tok.missing() == ["pad", "system", "user", "assistant", "end_of_turn", "mask"]
    with pytest.raises(MissingSpecialTokens, match=r"padding a batch needs .*padding \(pad\).*\['<\|pad\|>'\]"):
        tok.pad_id
    with pytest.raises(ValueError, match="does not have"):
        Tokenizer(backend, roles={"eot": "<|endoftext|>"})
    with pytest.raises(ValueError, match="unknown tokenizer roles"):
        Tokenizer(backend, roles={"eos": "</s>"})
    own = Tokenizer.from_file(tokenizer_file)  # ownlm's own: every role, chat prompts as before
    assert own.roles == {**OWN_TOKENS, "bos": None} and list(own.roles) == list(TOKEN_ROLES)
    assert own.missing() == [] and own.chat_prompt(CHAT) == chat_prompt(CHAT)
    # chat roles mapped onto other tokens: the prompt and the exported chat template use them
    marks = {"system": "[S]", "user": '<u "x">', "assistant": "[A]", "end_of_turn": "[E]"}
    backend.add_special_tokens(list(marks.values()))
    chat = Tokenizer(backend, roles={"eot": "</s>", **marks})
    messages = [{"role": "system", "content": "be"}, *CHAT]
    assert chat.chat_prompt(messages) == '[S]be[E]<u "x">hi[E][A]hello[E][A]'
    jinja2 = pytest.importorskip("jinja2")
    rendered = jinja2.Template(chat_template(chat.roles)).render(messages=messages, add_generation_prompt=True)
    assert rendered == chat.chat_prompt(messages)
    assert chat_template(own.roles) == CHAT_TEMPLATE and chat_template(tok.roles) is None


@pytest.mark.parametrize("tied", [True, False])
def test_add_special_tokens_grows_the_model_explicitly_and_records_it(tmp_path, tied):
    from model.checkpoint import add_special_tokens, read_metadata

    original = hf_llama_512(tmp_path, tied, "own")
    import_hf(tmp_path / "hf", tmp_path / "ckpt")
    before, _ = load_model(tmp_path / "ckpt")
    old_tok = load_tokenizer(tmp_path / "ckpt")

    report = add_special_tokens(tmp_path / "ckpt", [*ROLE_TOKENS, MASK, "</s>"])  # </s> is there: skipped
    added = [*ROLE_TOKENS, MASK]
    assert report["added"] == added and report["ids"] == {t: 512 + i for i, t in enumerate(added)}
    assert (report["old_vocab_size"], report["vocab_size"]) == (512, 517)

    model, cfg = load_model(tmp_path / "ckpt")
    tok = load_tokenizer(tmp_path / "ckpt")
    assert cfg.vocab_size == tok.vocab_size == 517 and cfg.tie_embeddings == tied
    assert cfg.mask_id == tok.mask_id == 516
    emb, old_emb = model.tok_embeddings.weight, before.tok_embeddings.weight
    assert emb.shape == (517, 64) and torch.equal(emb[:512], old_emb)  # old rows bit-identical
    assert_close(emb[512:], old_emb.mean(0).expand(5, -1))  # new rows: the mean of the old
    if tied:
        assert model.output.weight is model.tok_embeddings.weight
    else:
        head, old_head = model.output.weight, before.output.weight
        assert head.shape == (517, 64) and torch.equal(head[:512], old_head)
        assert_close(head[512:], old_head.mean(0).expand(5, -1))
    with torch.no_grad():  # the old vocabulary's logits are untouched
        assert torch.equal(model(TOKENS)[..., :512], before(TOKENS))

    meta = read_metadata(tmp_path / "ckpt")
    (resize,) = meta["vocab_resizes"]
    assert resize["added"] == added and (resize["old_vocab_size"], resize["vocab_size"]) == (512, 517)
    assert resize["previous_tokenizer_fingerprint"] == old_tok.fingerprint != tok.fingerprint
    assert meta["tokenizer_fingerprint"] == tok.fingerprint
    assert meta["tokenizer_roles"]["user"] == "<|user|>" and meta["tokenizer_roles"]["eot"] == "</s>"
    assert tok.missing() == [] and (tok.eot_id, tok.pad_id) == (1, 2)
    for text in TEXTS:
        assert tok.encode(text) == old_tok.encode(text)  # old ids unchanged
    assert tok.encode_chat(CHAT) == [513, *tok.encode("hi"), 515, 514, *tok.encode("hello"), 515, 514]

    again = add_special_tokens(tmp_path / "ckpt", ROLE_TOKENS)  # nothing new: nothing written
    assert again["added"] == [] and len(read_metadata(tmp_path / "ckpt")["vocab_resizes"]) == 1

    export_hf(tmp_path / "ckpt", tmp_path / "grown")  # the grown model still exports, with the new tokens
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "grown"))
    assert hf_tok.convert_tokens_to_ids(added) == list(range(512, 517))
    assert hf_tok.eos_token == "</s>" and hf_tok("<|user|>hi", add_special_tokens=False)["input_ids"][0] == 513
    exported = fp32_model(tmp_path / "grown")
    assert exported.config.vocab_size == 517
    with torch.no_grad():
        assert_close(exported(TOKENS).logits[..., :512], original(TOKENS).logits, rtol=1e-4, atol=1e-4)


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

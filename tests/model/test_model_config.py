"""ModelConfig: presets, validation, (de)serialization, closed-form counts."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from model.config import PRESETS, ModelConfig, count_params, flops_per_token, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_param_count_formula_matches_the_module(name):
    from model.transformer import Transformer

    cfg = PRESETS[name]
    with torch.device("meta"):  # shapes only: the 8b model costs no memory
        model = Transformer(cfg)
    unique = sum(p.numel() for p in model.parameters())
    assert count_params(cfg) == unique == model.num_params()
    assert count_params(cfg, include_embeddings=False) == unique - cfg.vocab_size * cfg.dim


def test_preset_sizes_are_what_their_names_promise():
    millions = {name: count_params(cfg) / 1e6 for name, cfg in PRESETS.items()}
    assert millions["debug"] < 1
    assert 3 <= millions["tiny"] <= 6
    assert 100 <= count_params(PRESETS["124m"], include_embeddings=False) / 1e6 <= 130
    assert 300 <= millions["350m"] <= 400
    assert 1000 <= millions["1b"] <= 1400
    assert 3000 <= millions["3b"] <= 3400
    assert 7900 <= millions["8b"] <= 8100  # Llama-3-8B: 8.03B


def test_every_preset_is_valid_and_documented_fields_exist():
    for name, cfg in PRESETS.items():
        assert cfg.problems() == [], name
    assert {f.name for f in dataclasses.fields(ModelConfig)} == {
        "vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "multiple_of",
        "max_seq_len", "rope_theta", "rope_scaling", "norm_eps", "tie_embeddings", "init_std",
        "family", "mask_prob", "mask_id", "activation_checkpointing",
    }
    # Every field has a docstring under it (the config is the documentation).
    import inspect

    source = inspect.getsource(ModelConfig)
    for f in dataclasses.fields(ModelConfig):
        assert re.search(rf"^    {f.name}: .*\n    \"\"\"", source, re.M), f"{f.name} has no docstring"


def test_families_and_their_settings_are_validated():
    assert get_preset("debug", family="masked", mask_id=6).family == "masked"
    problems = ModelConfig(dim=64, n_layers=1, n_heads=4, family="encoder", mask_prob=1.5,
                           activation_checkpointing="yes").problems()
    text = "\n".join(problems)
    assert "family must be one of causal, masked, prefix, got 'encoder'" in text
    assert "mask_prob must be a fraction in (0, 1)" in text
    assert "activation_checkpointing must be true or false" in text
    assert ModelConfig(dim=64, n_layers=1, n_heads=4, vocab_size=100, mask_id=100).problems() == [
        "mask_id (100) must be below vocab_size (100): use the id of <|mask|> in the model's tokenizer"
    ]


def test_configs_saved_before_the_family_fields_still_load():
    old = {k: v for k, v in get_preset("debug").to_dict().items()
           if k not in ("family", "mask_prob", "mask_id", "activation_checkpointing")}
    cfg = ModelConfig.from_dict(old)
    assert cfg.family == "causal" and cfg.mask_id is None and not cfg.activation_checkpointing


def test_flops_match_the_reference_benchmark_formula():
    cfg = PRESETS["124m"]  # the shape of shared/bench/ref_gpt.py, untied head
    n_ref = count_params(cfg) - cfg.vocab_size * cfg.dim  # ref_gpt: all params minus emb.weight
    assert flops_per_token(cfg, 1024) == 6 * n_ref + 12 * cfg.n_layers * cfg.dim * 1024
    # A tied head is still a matmul: the same shape costs the same FLOPs tied or not.
    tied = dataclasses.replace(cfg, tie_embeddings=True)
    assert flops_per_token(tied, 1024) == flops_per_token(cfg, 1024)


def test_llama_ffn_rule_and_head_dim():
    cfg = ModelConfig(dim=4096, n_layers=1, n_heads=32, multiple_of=256)
    assert cfg.resolved_ffn_dim == 11008  # Llama-2-7B's hidden width
    assert cfg.head_dim == 128 and cfg.resolved_n_kv_heads == 32
    assert get_preset("debug").resolved_ffn_dim == 192  # int(8*64/3)=170, rounded up to 64s
    assert get_preset("8b").resolved_ffn_dim == 14336  # explicit ffn_dim wins


def test_problems_lists_every_problem_with_its_fix():
    cfg = ModelConfig(dim=100, n_layers=2, n_heads=3, n_kv_heads=2)
    problems = cfg.problems()
    assert any("dim (100) must be divisible by n_heads (3)" in p for p in problems)
    assert any("n_heads (3) must be divisible by n_kv_heads (2)" in p for p in problems)
    assert len(problems) == 2
    with pytest.raises(ValueError) as e:
        cfg.validate()
    assert "dim (100)" in str(e.value) and "n_kv_heads (2)" in str(e.value)


def test_rope_scaling_is_validated():
    good = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert ModelConfig(dim=64, n_layers=1, n_heads=4, rope_scaling=good).problems() == []
    for bad, needle in (({"factor": 8.0}, "exactly factor"), ({**good, "factor": -1}, "factor must be positive"),
                        ({**good, "high_freq_factor": 0.5}, "must exceed low_freq_factor")):
        problems = ModelConfig(dim=64, n_layers=1, n_heads=4, rope_scaling=bad).problems()
        assert len(problems) == 1 and needle in problems[0], problems


def test_problems_reports_bad_sizes_all_at_once():
    cfg = ModelConfig(vocab_size=0, dim=-8, n_layers=0, n_heads=2, norm_eps=0.0, max_seq_len="1k")
    text = "\n".join(cfg.problems())
    for needle in ("vocab_size must be positive", "dim must be positive", "n_layers must be positive",
                   "norm_eps must be positive", "max_seq_len must be an integer"):
        assert needle in text
    odd_heads = ModelConfig(dim=12, n_layers=1, n_heads=4).problems()
    assert odd_heads == [
        "head_dim = dim / n_heads = 3 must be even for rotary embeddings "
        "(they rotate pairs of channels): change dim or n_heads"
    ]


def test_dict_round_trip_and_unknown_keys():
    cfg = get_preset("tiny", vocab_size=1000)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown ModelConfig keys \['dimm'\]"):
        ModelConfig.from_dict({**cfg.to_dict(), "dimm": 3})
    with pytest.raises(ValueError, match="missing required keys"):
        ModelConfig.from_dict({"dim": 64})


def test_get_preset_copies_validates_and_rejects_unknowns():
    cfg = get_preset("debug", n_layers=3)
    assert cfg.n_layers == 3 and PRESETS["debug"].n_layers == 2  # the registry is untouched
    cfg.dim = 1
    assert PRESETS["debug"].dim == 64
    with pytest.raises(ValueError, match="unknown model preset 'huge'.*debug"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown ModelConfig override keys"):
        get_preset("debug", layers=3)
    with pytest.raises(ValueError, match="must be divisible by n_heads"):
        get_preset("debug", n_heads=5)


def test_config_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, model.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

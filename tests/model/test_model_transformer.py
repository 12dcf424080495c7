"""The decoder: causality, GQA, the KV cache, training, activation checkpointing."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from model.config import get_preset
from model.transformer import Transformer, apply_rotary_emb, attend, attention_mask, lm_loss, precompute_rope


def test_logits_shape_and_dtype(debug_model, debug_cfg):
    tokens = torch.randint(0, debug_cfg.vocab_size, (3, 10))
    logits = debug_model(tokens)
    assert logits.shape == (3, 10, debug_cfg.vocab_size) and logits.dtype == torch.float32


def test_changing_a_future_token_never_changes_earlier_logits(debug_model, debug_cfg):
    tokens = torch.randint(0, debug_cfg.vocab_size, (2, 24))
    t = 13
    changed = tokens.clone()
    changed[:, t] = (changed[:, t] + 1) % debug_cfg.vocab_size
    before, after = debug_model(tokens), debug_model(changed)
    assert_close(before[:, :t], after[:, :t], rtol=0, atol=0)
    assert not torch.allclose(before[:, t:], after[:, t:])  # the change is visible from t on


def test_grouped_query_attention_shapes(debug_cfg):
    model = Transformer(debug_cfg)
    attn = model.layers[0].attn
    hd = debug_cfg.head_dim
    assert attn.wq.weight.shape == (debug_cfg.n_heads * hd, debug_cfg.dim)
    assert attn.wk.weight.shape == attn.wv.weight.shape == (debug_cfg.n_kv_heads * hd, debug_cfg.dim)
    cache = model.make_cache(batch_size=2, max_len=16)
    assert cache[0].k.shape == (2, debug_cfg.n_kv_heads, 16, hd)
    assert len(cache.layers) == debug_cfg.n_layers


def reference_attention(q, k, v, allowed):
    """Textbook softmax(QK^T / sqrt(hd) + mask) V, k/v heads repeated per group; allowed (B, T, S)."""
    n_rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, T, S)
    return scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1) @ v


def textbook_mask(B, T, start_pos, causal=True, prefix=None, valid=None):
    """Who may look where, one (query, key) pair at a time."""
    S = start_pos + T
    allowed = torch.zeros(B, T, S, dtype=torch.bool)
    for b in range(B):
        for i in range(T):
            for j in range(S):
                sees = (not causal) or j <= start_pos + i or (prefix is not None and j < prefix[b])
                if valid is not None:
                    sees = (sees and bool(valid[b, j])) or j == start_pos + i  # padding sees only itself
                allowed[b, i, j] = sees
    return allowed


MASK_CASES = {  # name: (T, start_pos, attention_mask kwargs)
    "training": (7, 0, {}),
    "decode": (1, 9, {}),
    "chunked prefill": (4, 6, {}),
    "encoder": (7, 0, dict(causal=False)),
    "prefix": (7, 0, dict(prefix_len=torch.tensor([3, 5]))),
    "left padding": (7, 0, dict(key_valid=torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7]).bool())),
    "padded decode": (1, 6, dict(key_valid=torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7]).bool())),
    "padded encoder": (5, 0, dict(causal=False, key_valid=torch.tensor([[1, 1, 1, 0, 0], [1] * 5]).bool())),
}


@pytest.mark.parametrize("case", sorted(MASK_CASES))
@pytest.mark.parametrize("use_sdpa_gqa", [True, False])
def test_attention_masks_match_the_textbook(case, use_sdpa_gqa):
    from model.transformer import SDPA_HAS_GQA

    if use_sdpa_gqa and not SDPA_HAS_GQA:
        pytest.skip("SDPA has no enable_gqa before torch 2.5")
    T, start_pos, kw = MASK_CASES[case]
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, T, 8, generator=g)
    k, v = torch.randn(2, 2, start_pos + T, 8, generator=g), torch.randn(2, 2, start_pos + T, 8, generator=g)
    mask, is_causal = attention_mask(T, start_pos, **kw)
    got = attend(q, k, v, mask, is_causal, use_sdpa_gqa=use_sdpa_gqa)
    allowed = textbook_mask(2, T, start_pos, kw.get("causal", True), kw.get("prefix_len"), kw.get("key_valid"))
    assert_close(got, reference_attention(q, k, v, allowed))
    assert torch.isfinite(got).all()  # padding rows too: a NaN there would reach real tokens


def test_masks_take_the_fast_paths_when_they_can():
    assert attention_mask(8) == (None, True)  # SDPA's own causal triangle
    assert attention_mask(1, 12) == (None, False)  # one decoding step sees every key
    assert attention_mask(8, causal=False) == (None, False)
    assert attention_mask(1, 12, prefix_len=4) == (None, False)


def test_rope_rotates_pairs_and_keeps_norms():
    cos, sin = precompute_rope(head_dim=8, max_seq_len=5, theta=10000.0)
    x = torch.randn(1, 5, 2, 8)
    y = apply_rotary_emb(x, cos, sin)
    assert_close(y.norm(dim=-1), x.norm(dim=-1))  # a rotation
    assert_close(y[:, 0], x[:, 0])  # position 0: angle 0
    # pair 0 of position 1 turns by exactly 1 radian (theta^0 = 1)
    c, s = math.cos(1.0), math.sin(1.0)
    x0, x1 = x[0, 1, :, 0], x[0, 1, :, 1]
    assert_close(y[0, 1, :, 0], x0 * c - x1 * s)
    assert_close(y[0, 1, :, 1], x0 * s + x1 * c)


def test_kv_cache_forward_equals_full_forward(debug_model, debug_cfg):
    tokens = torch.randint(0, debug_cfg.vocab_size, (2, 20))
    full = debug_model(tokens)
    cache = debug_model.make_cache(batch_size=2, max_len=20)
    pieces = [debug_model(tokens[:, :6], cache, 0), debug_model(tokens[:, 6:15], cache, 6)]  # prefill x2
    pieces += [debug_model(tokens[:, i : i + 1], cache, i) for i in range(15, 20)]  # decode
    assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_positions_past_the_window_or_the_cache_fail_clearly(debug_model, debug_cfg):
    with pytest.raises(ValueError, match="max_seq_len=128"):
        debug_model(torch.zeros(1, 129, dtype=torch.long))
    cache = debug_model.make_cache(batch_size=1, max_len=8)
    with pytest.raises(ValueError, match="make a larger cache"):
        debug_model(torch.zeros(1, 4, dtype=torch.long), cache, start_pos=6)


def test_init_scales_residual_projections_by_depth():
    cfg = get_preset("tiny")
    model = Transformer(cfg)
    std = model.layers[0].attn.wq.weight.std().item()
    out_std = model.layers[0].attn.wo.weight.std().item()
    assert abs(std - 0.02) < 0.002
    assert abs(out_std - 0.02 / math.sqrt(2 * cfg.n_layers)) < 0.001
    assert model.output.weight is model.tok_embeddings.weight  # tied in the tiny preset
    untied = Transformer(get_preset("debug", tie_embeddings=False))
    assert untied.output.weight is not untied.tok_embeddings.weight


def test_lm_loss_ignores_masked_targets_in_float32():
    logits = torch.randn(2, 3, 11).to(torch.bfloat16)
    targets = torch.tensor([[1, 2, -100], [4, -100, 6]])
    loss = lm_loss(logits, targets)
    keep = targets != -100
    expected = F.cross_entropy(logits.float()[keep], targets[keep])
    assert loss.dtype == torch.float32
    assert_close(loss, expected)


def test_a_tiny_model_overfits_a_fixed_batch(debug_cfg):
    torch.manual_seed(0)
    model = Transformer(debug_cfg)
    batch = torch.randint(0, debug_cfg.vocab_size, (4, 33))
    inputs, targets = batch[:, :-1], batch[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = lm_loss(model(inputs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.9 * math.log(debug_cfg.vocab_size)  # starts near uniform
    assert losses[-1] < 0.1 * losses[0], losses[::10]


def test_activation_checkpointing_gives_the_same_loss_and_grads(debug_cfg):
    torch.manual_seed(0)
    plain = Transformer(debug_cfg)
    ckpt = copy.deepcopy(plain)
    ckpt.enable_activation_checkpointing()
    assert ckpt.activation_checkpointing and not plain.activation_checkpointing
    assert Transformer(debug_cfg, activation_checkpointing=True).activation_checkpointing
    batch = torch.randint(0, debug_cfg.vocab_size, (2, 17))
    losses = []
    for model in (plain, ckpt):
        model.train()
        loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
        loss.backward()
        losses.append(loss)
    assert_close(losses[0], losses[1])
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert_close(p.grad, q.grad, msg=name)


def test_activation_checkpointing_actually_recomputes(debug_cfg, monkeypatch):
    import model.transformer as transformer

    calls = []
    real = transformer.checkpoint
    monkeypatch.setattr(transformer, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = Transformer(debug_cfg, activation_checkpointing=True).train()
    model(torch.zeros(1, 4, dtype=torch.long))
    assert len(calls) == debug_cfg.n_layers
    with torch.no_grad():  # nothing to save for backward: checkpointing would only cost time
        model(torch.zeros(1, 4, dtype=torch.long))
    assert len(calls) == debug_cfg.n_layers


def test_bf16_weights_keep_float32_rope_after_init_rope(debug_model):
    debug_model.to(torch.bfloat16)
    debug_model.init_rope()
    assert debug_model.rope_cos.dtype == torch.float32
    logits = debug_model(torch.zeros(1, 4, dtype=torch.long))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()

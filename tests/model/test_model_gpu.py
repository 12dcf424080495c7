"""The same model on a CUDA device: bf16 autocast training and cached decoding.
Skipped without a GPU (run with `-m gpu` on a GPU box)."""
from __future__ import annotations

import pytest
import torch

from model.config import get_preset
from model.generate import generate
from model.transformer import Transformer, lm_loss

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_bf16_autocast_training_step_on_cuda():
    torch.manual_seed(0)
    cfg = get_preset("debug")
    model = Transformer(cfg, activation_checkpointing=True).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = torch.randint(0, cfg.vocab_size, (4, 65), device="cuda")
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_cached_generation_matches_recompute_on_cuda():
    torch.manual_seed(0)
    model = Transformer(get_preset("debug", init_std=0.1)).cuda().eval()
    prompt = [5, 17, 300, 42, 7]
    assert generate(model, prompt, 24, use_cache=True) == generate(model, prompt, 24, use_cache=False)


def test_batched_prompts_of_different_lengths_on_cuda():
    from model.generate import generate_batch

    torch.manual_seed(0)
    model = Transformer(get_preset("debug", init_std=0.1)).cuda().eval()
    prompts = [[5, 17, 300, 42, 7], [9], list(range(100, 120))]
    assert generate_batch(model, prompts, 16) == [generate(model, p, 16) for p in prompts]


@pytest.mark.parametrize("family", ["masked", "prefix"])
def test_other_families_train_under_bf16_autocast_on_cuda(family):
    from model.objectives import training_loss

    torch.manual_seed(0)
    model = Transformer(get_preset("debug", family=family, mask_id=6)).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = torch.randint(7, 4096, (4, 65), device="cuda")
    losses = []
    for _ in range(20):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = training_loss(model, batch, family=family, pad_id=1, generator=torch.Generator().manual_seed(0))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]

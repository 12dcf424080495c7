"""The three families: who attends to whom, what each objective scores, and that the masked
and prefix families learn what their attention lets them see."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from model.config import get_preset
from model.generate import generate, generate_batch
from model.objectives import IGNORE_INDEX, loss_terms, mask_tokens, training_loss
from model.sampling import SamplingParams
from model.transformer import Transformer

PAD, MASK = 1, 2


def changed_at(tokens, t, vocab):
    out = tokens.clone()
    out[:, t] = (out[:, t] + 1) % vocab
    return out


def test_the_masked_family_sees_both_ways():
    torch.manual_seed(0)
    model = Transformer(get_preset("debug", family="masked")).eval()
    tokens = torch.randint(3, 4096, (2, 16))
    before, after = model(tokens), model(changed_at(tokens, 12, 4096))
    assert not torch.allclose(before[:, :12], after[:, :12])  # earlier positions see the later change


def test_the_prefix_family_is_bidirectional_inside_the_prefix_and_causal_after():
    torch.manual_seed(0)
    model = Transformer(get_preset("debug", family="prefix")).eval()
    tokens = torch.randint(3, 4096, (2, 16))
    base = model(tokens, prefix_len=8)
    inside = model(changed_at(tokens, 6, 4096), prefix_len=8)
    assert not torch.allclose(base[:, :6], inside[:, :6])  # position 6 is seen by the prefix before it
    after = model(changed_at(tokens, 11, 4096), prefix_len=8)
    assert_close(base[:, :11], after[:, :11], rtol=0, atol=0)  # nothing sees a later token past the prefix
    assert_close(model(tokens), model(tokens, prefix_len=0))  # no prefix: a causal decoder
    per_row = model(tokens, prefix_len=torch.tensor([8, 3]))
    assert_close(per_row[0], base[0]) and assert_close(per_row[1], model(tokens, prefix_len=3)[1])
    with pytest.raises(ValueError, match="prefix_len is for the prefix family"):
        Transformer(get_preset("debug"))(tokens, prefix_len=4)


def test_bert_masking_picks_15_percent_and_corrupts_80_10_10():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(10, 1000, (200, 100), generator=g)
    tokens[:, 90:] = PAD
    inputs, targets = mask_tokens(tokens, mask_id=MASK, pad_id=PAD, vocab_size=1000, mask_prob=0.15, generator=g)
    picked = targets != IGNORE_INDEX
    assert not picked[:, 90:].any() and torch.equal(inputs[:, 90:], tokens[:, 90:])  # padding is left alone
    assert torch.equal(targets[picked], tokens[picked]) and picked.any(dim=1).all()
    assert abs(picked.float().mean().item() / 0.9 - 0.15) < 0.01
    n = picked.sum().item()
    masked = (inputs == MASK) & picked
    kept = (inputs == tokens) & picked
    swapped = picked & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    assert abs(kept.sum().item() / n - 0.1) < 0.02  # (a random swap that hits the same id counts here)
    assert abs(swapped.sum().item() / n - 0.1) < 0.02
    assert torch.equal(inputs[~picked], tokens[~picked])
    again = mask_tokens(tokens, mask_id=MASK, pad_id=PAD, vocab_size=1000, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(again, mask_tokens(
        tokens, mask_id=MASK, pad_id=PAD, vocab_size=1000, generator=torch.Generator().manual_seed(5))))


def test_every_row_gets_a_target_even_when_short():
    tokens = torch.tensor([[5, 6, PAD, PAD], [PAD] * 4])
    _, targets = mask_tokens(tokens, mask_id=MASK, pad_id=PAD, vocab_size=10, mask_prob=0.01,
                             generator=torch.Generator().manual_seed(0))
    assert (targets[0] != IGNORE_INDEX).sum() == 1 and (targets[1] == IGNORE_INDEX).all()


def test_prefix_loss_scores_only_the_tokens_after_the_prefix(monkeypatch):
    import model.objectives as objectives

    torch.manual_seed(0)
    model = Transformer(get_preset("debug", family="prefix"))
    rows = torch.randint(3, 4096, (2, 9))
    monkeypatch.setattr(objectives, "sample_prefix_lengths", lambda b, t, g=None: torch.tensor([3, 6]))
    total, count = loss_terms(model, rows, family="prefix", pad_id=PAD)
    assert count == (8 - 3 + 1) + (8 - 6 + 1)  # rows[p..8] of each row
    logits = model(rows[:, :-1], prefix_len=torch.tensor([3, 6]))
    want = sum(F.cross_entropy(logits[b, p - 1:], rows[b, p:], reduction="sum") for b, p in ((0, 3), (1, 6)))
    assert_close(total, want)


def test_loss_terms_take_the_mask_id_from_the_config_under_wrappers():
    torch.manual_seed(0)
    rows = torch.randint(3, 100, (2, 9))

    class Wrapped(torch.nn.Module):  # DDP keeps the model under .module
        def __init__(self, m):
            super().__init__()
            self.module = m

        def forward(self, *a, **k):
            return self.module(*a, **k)

    model = Transformer(get_preset("debug", vocab_size=100, family="masked", mask_id=MASK))
    kw = dict(family="masked", pad_id=PAD, generator=torch.Generator().manual_seed(0))
    by_config = loss_terms(Wrapped(model), rows, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    assert_close(by_config, loss_terms(model, rows, mask_id=MASK, **kw))
    unset = Transformer(get_preset("debug", vocab_size=100, family="masked"))
    with pytest.raises(ValueError, match="needs the id of <\\|mask\\|>"):
        loss_terms(unset, rows, family="masked", pad_id=PAD)
    with pytest.raises(ValueError, match="unknown model family 'seq2seq'"):
        loss_terms(model, rows, family="seq2seq", pad_id=PAD)


def test_a_masked_model_needs_its_mask_id_to_generate():
    with pytest.raises(ValueError, match="has no mask_id"):
        generate(Transformer(get_preset("debug", family="masked")), [5, 6], SamplingParams(max_new_tokens=3))


# ---- learning: a copy task whose answer lies to the right ----

VOCAB, HALF = 64, 8


def copy_rows(n, g):
    """[r_1..r_8, r_1..r_8, r_1]: the first half's tokens reappear later in the row."""
    first = torch.randint(8, VOCAB, (n, HALF), generator=g)
    return torch.cat([first, first, first[:, :1]], dim=1)  # (n, 2 * HALF + 1): T + 1 for the objectives


def train(family, steps=150, seed=0):
    """One layer is enough to copy from a fixed offset. One thread: a model this small gains
    nothing from more, and a busy machine costs a multi-threaded loop far more."""
    torch.manual_seed(seed)
    cfg = get_preset("debug", vocab_size=VOCAB, n_layers=1, family=family, mask_id=MASK, mask_prob=0.3)
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            loss = training_loss(model, copy_rows(64, g), family=family, pad_id=PAD, generator=g)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def masked_model():
    return train("masked")


def test_masked_family_fills_a_token_from_the_right_which_a_causal_model_cannot(masked_model):
    g = torch.Generator().manual_seed(123)
    rows = copy_rows(256, g)[:, :-1]  # (256, 16)
    where = torch.randint(0, HALF, (256,), generator=g)  # a first-half position per row
    truth = rows[torch.arange(256), where]

    masked = masked_model
    corrupted = rows.clone()
    corrupted[torch.arange(256), where] = MASK
    with torch.no_grad():
        filled = masked(corrupted)[torch.arange(256), where].argmax(-1)
    masked_acc = (filled == truth).float().mean().item()

    causal = train("causal")
    with torch.no_grad():  # the causal model's guess for position i comes from position i - 1
        logits = causal(rows)[torch.arange(256), (where - 1).clamp(min=0)]
    guessed = (logits.argmax(-1) == truth)[where > 0].float().mean().item()

    assert masked_acc > 0.9, masked_acc
    assert guessed < 0.15, guessed  # first-half tokens are random given their past: ~1/56


def test_prefix_family_learns_to_continue_its_prefix():
    model = train("prefix")
    g = torch.Generator().manual_seed(7)
    rows = copy_rows(16, g)
    prompts = [r[:HALF + 1].tolist() for r in rows]  # the first half and the start of the copy
    out = generate_batch(model, prompts, SamplingParams(max_new_tokens=HALF - 1))
    accuracy = (torch.tensor(out) == rows[:, HALF + 1:2 * HALF]).float().mean().item()
    assert accuracy > 0.9, accuracy


def test_masked_family_writes_by_filling_an_appended_mask(masked_model):
    g = torch.Generator().manual_seed(9)
    rows = copy_rows(16, g)
    prompts = [r[:HALF + 2].tolist() for r in rows]
    out = generate_batch(masked_model, prompts, SamplingParams(max_new_tokens=HALF - 2))
    accuracy = (torch.tensor(out) == rows[:, HALF + 2:2 * HALF]).float().mean().item()
    assert accuracy > 0.8, accuracy
    alone = [generate(masked_model, p, SamplingParams(max_new_tokens=HALF - 2)) for p in prompts[:4]]
    assert alone == out[:4]  # alone or batched

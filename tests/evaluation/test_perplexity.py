"""Held-out loss over row batches: perplexity, bits per byte, per source, the unigram baseline,
the masked-LM loss. The rows are built here; reading them from packed shards is pipeline's
(tests/pipeline/test_pack.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.perplexity import masked_lm_loss, perplexity, unigram_loss

SEQ_LEN = 16


def random_rows(model, pad_id: int, n: int = 5, pad_tail: int = 6, seed: int = 0, low: int = 2) -> np.ndarray:
    """n random rows of SEQ_LEN + 1 ids from `low` up; the very last row ends in padding."""
    rng = np.random.default_rng(seed)
    data = rng.integers(low, model.cfg.vocab_size, size=(n, SEQ_LEN + 1)).astype(np.int64)
    if pad_tail:
        data[-1, -pad_tail:] = pad_id
    return data


def batches(rows: np.ndarray, size: int) -> list[np.ndarray]:
    return [rows[i: i + size] for i in range(0, len(rows), size)]


def hand_loss(model, data: np.ndarray, pad_id: int) -> tuple[float, int]:
    """Mean cross entropy over every non-pad target of all rows, in one go."""
    rows = torch.as_tensor(data, dtype=torch.long)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    with torch.no_grad():
        logits = model(inputs).float()
    mask = targets != pad_id
    loss = F.cross_entropy(logits[mask], targets[mask])
    return loss.item(), int(mask.sum())


def test_perplexity_is_the_token_weighted_mean_without_padding(checkpoint):
    model, pad = checkpoint.model, checkpoint.tokenizer.pad_id
    data = random_rows(model, pad)
    expected, n_tokens = hand_loss(model, data, pad)

    out = perplexity(model, {"": batches(data, 2)}, pad)  # batches of 2, 2, 1 rows

    assert out["tokens"] == n_tokens == data.shape[0] * SEQ_LEN - 6
    assert out["batches"] == 3
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    assert out["bits_per_token"] == pytest.approx(expected / math.log(2), rel=1e-5)
    # The padded, short last batch must weigh its tokens, not a third of the total.
    batch_means = [hand_loss(model, data[i : i + 2], pad)[0] for i in range(0, len(data), 2)]
    assert abs(np.mean(batch_means) - out["loss"]) > 1e-6


def test_perplexity_counts_padding_out(checkpoint):
    """Scoring the pad targets as if they were tokens gives a different loss and count."""
    model, pad = checkpoint.model, checkpoint.tokenizer.pad_id
    data = random_rows(model, pad, pad_tail=SEQ_LEN)
    out = perplexity(model, {"": [data]}, pad)
    rows = torch.as_tensor(data, dtype=torch.long)
    with torch.no_grad():
        with_pad = F.cross_entropy(model(rows[:, :-1]).float().flatten(0, 1), rows[:, 1:].flatten()).item()
    assert out["tokens"] == data.shape[0] * SEQ_LEN - SEQ_LEN
    assert out["loss"] != pytest.approx(with_pad, rel=1e-4)


def test_restores_training_mode(checkpoint):
    rows = random_rows(checkpoint.model, checkpoint.tokenizer.pad_id)
    checkpoint.model.train()
    try:
        perplexity(checkpoint.model, {"": [rows]}, checkpoint.tokenizer.pad_id)
        assert checkpoint.model.training
    finally:
        checkpoint.model.eval()


def test_rows_longer_than_the_model_fail_clearly(checkpoint):
    width = checkpoint.model.cfg.max_seq_len + 2
    rows = np.full((2, width), 5, dtype=np.int64)
    with pytest.raises(ValueError, match="max_seq_len"):
        perplexity(checkpoint.model, {"": [rows]}, checkpoint.tokenizer.pad_id)


def test_nothing_to_score_is_an_error(checkpoint):
    with pytest.raises(ValueError, match="no tokens"):
        perplexity(checkpoint.model, {"web": []}, checkpoint.tokenizer.pad_id)


# ---- per source, bits per byte ----

def test_each_source_is_scored_on_its_own_rows(checkpoint):
    model, pad = checkpoint.model, checkpoint.tokenizer.pad_id
    data = {"web": random_rows(model, pad, 3, pad_tail=0, seed=1), "code": random_rows(model, pad, 2, pad_tail=0)}
    out = perplexity(model, {name: batches(rows, 2) for name, rows in data.items()}, pad)
    assert set(out["sources"]) == {"code", "web"}
    for name, rows in data.items():
        expected, n = hand_loss(model, rows, pad)
        assert out["sources"][name]["loss"] == pytest.approx(expected, rel=1e-5)
        assert out["sources"][name]["tokens"] == n
    both, n = hand_loss(model, np.concatenate(list(data.values())), pad)
    assert out["loss"] == pytest.approx(both, rel=1e-5) and out["tokens"] == n


def test_token_byte_lengths_of_a_byte_level_bpe(checkpoint):
    from evaluation.perplexity import token_byte_lengths

    tok = checkpoint.tokenizer
    lengths = token_byte_lengths(tok)
    assert lengths[tok.eot_id] == 0 and lengths[tok.pad_id] == 0
    text = "def pop(self):\n    return self.items.pop()  # héllo ✓"
    ids = tok.encode(text)
    assert int(lengths[ids].sum()) == len(text.encode("utf-8"))


def test_bits_per_byte_is_the_text_nll_over_its_bytes(checkpoint):
    from evaluation.perplexity import token_byte_lengths

    model, tok = checkpoint.model, checkpoint.tokenizer
    rows = random_rows(model, tok.pad_id, 3, pad_tail=0, low=7)  # clear of the special tokens' ids
    rows[0, 5] = tok.eot_id  # a document boundary: in the loss, not in the bytes
    out = perplexity(model, {"prose": [rows]}, tok.pad_id, tokenizer=tok)

    lengths = token_byte_lengths(tok)
    inputs, targets = torch.as_tensor(rows[:, :-1]), torch.as_tensor(rows[:, 1:])
    with torch.no_grad():
        nll = F.cross_entropy(model(inputs).float().flatten(0, 1), targets.flatten(), reduction="none")
    nbytes = torch.as_tensor(lengths)[targets.flatten()]
    expected = nll[nbytes > 0].sum().item() / math.log(2) / nbytes.sum().item()
    assert out["bits_per_byte"] == pytest.approx(expected, rel=1e-5)
    assert out["bytes"] == int(nbytes.sum())
    assert out["sources"]["prose"]["bits_per_byte"] == pytest.approx(expected, rel=1e-5)
    assert out["tokens"] == rows[:, 1:].size  # the end-of-text target still counts as a token


# ---- the baselines ----

def test_unigram_loss_is_the_cross_entropy_of_train_frequencies_with_add_one():
    pad = 0
    train = np.array([[1, 2, 2, 3], [1, 2, 0, 0]])  # targets 2,2,3 and 2,0,0 (pads)
    val = np.array([[1, 3, 2, 4]])  # targets 3, 2, 4 (4 never seen in training)
    counts = np.ones(5)  # ids 0..4 seen anywhere
    counts[[2, 3]] += [3, 1]
    counts[pad] = 0
    p = counts / counts.sum()
    expected = -(np.log(p[3]) + np.log(p[2]) + np.log(p[4])) / 3
    # batches of any size give the same answer
    assert unigram_loss([train], [val], pad) == pytest.approx(expected, rel=1e-12)
    assert unigram_loss(batches(train, 1), batches(val, 1), pad) == pytest.approx(expected, rel=1e-12)


def test_masked_lm_loss_is_repeatable_and_counts_masked_tokens_only(checkpoint):
    from model.objectives import loss_terms

    model, tok = checkpoint.model, checkpoint.tokenizer
    rows = random_rows(model, tok.pad_id, 4, pad_tail=0, low=7)
    a = masked_lm_loss(model, batches(rows, 2), tok.pad_id, tok.mask_id, seed=3)
    assert a == masked_lm_loss(model, batches(rows, 2), tok.pad_id, tok.mask_id, seed=3)
    g = torch.Generator().manual_seed(3)
    total = count = 0.0
    for b in batches(rows, 2):
        loss, n = loss_terms(model, torch.as_tensor(b), family="masked", pad_id=tok.pad_id, mask_id=tok.mask_id,
                             generator=g)
        total, count = total + float(loss), count + float(n)
    assert a == pytest.approx(total / count, rel=1e-6)

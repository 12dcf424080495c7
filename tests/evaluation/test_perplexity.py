from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.perplexity import perplexity
from pipeline.packed import Manifest

SEQ_LEN = 16


def write_tokens(folder, model, pad_id: int, eot_id: int = 0, rows=(3, 2), pad_tail: int = 6):
    """A val split of two shards of random rows; the very last row ends in padding."""
    rng = np.random.default_rng(0)
    vocab = model.cfg.vocab_size
    data = rng.integers(2, vocab, size=(sum(rows), SEQ_LEN + 1)).astype(np.int32)
    data[-1, -pad_tail:] = pad_id
    (folder / "val").mkdir(parents=True)
    files, start = [], 0
    for i, n in enumerate(rows):
        name = f"val/shard-{i:05d}.npy"
        np.save(folder / name, data[start : start + n])
        files.append(name)
        start += n
    Manifest(seq_len=SEQ_LEN, dtype="int32", eot_id=eot_id, pad_id=pad_id, tokenizer_fingerprint="test",
             splits={"val": {"files": files, "rows": len(data), "tokens": int((data != pad_id).sum()),
                             "documents": 1}}).write(folder)
    return data


def hand_loss(model, data: np.ndarray, pad_id: int) -> tuple[float, int]:
    """Mean cross entropy over every non-pad target of all rows, in one go."""
    rows = torch.as_tensor(data, dtype=torch.long)
    inputs, targets = rows[:, :-1], rows[:, 1:]
    with torch.no_grad():
        logits = model(inputs).float()
    mask = targets != pad_id
    loss = F.cross_entropy(logits[mask], targets[mask])
    return loss.item(), int(mask.sum())


def test_perplexity_is_the_token_weighted_mean_without_padding(tmp_path, checkpoint):
    model, pad = checkpoint.model, checkpoint.tokenizer.pad_id
    data = write_tokens(tmp_path, model, pad)
    expected, n_tokens = hand_loss(model, data, pad)

    out = perplexity(model, tmp_path, split="val", batch_size=2)  # batches of 2, 2, 1 rows

    assert out["tokens"] == n_tokens == data.shape[0] * SEQ_LEN - 6
    assert out["batches"] == 3
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
    assert out["bits_per_token"] == pytest.approx(expected / math.log(2), rel=1e-5)
    # The padded, short last batch must weigh its tokens, not a third of the total.
    batch_means = [hand_loss(model, data[i : i + 2], pad)[0] for i in range(0, len(data), 2)]
    assert abs(np.mean(batch_means) - out["loss"]) > 1e-6


def test_perplexity_counts_padding_out(tmp_path, checkpoint):
    """Scoring the pad targets as if they were tokens gives a different loss and count."""
    model, pad = checkpoint.model, checkpoint.tokenizer.pad_id
    data = write_tokens(tmp_path, model, pad, pad_tail=SEQ_LEN)
    out = perplexity(model, tmp_path, batch_size=8)
    rows = torch.as_tensor(data, dtype=torch.long)
    with torch.no_grad():
        with_pad = F.cross_entropy(model(rows[:, :-1]).float().flatten(0, 1), rows[:, 1:].flatten()).item()
    assert out["tokens"] == data.shape[0] * SEQ_LEN - SEQ_LEN
    assert out["loss"] != pytest.approx(with_pad, rel=1e-4)


def test_max_batches_caps_the_work(tmp_path, checkpoint):
    write_tokens(tmp_path, checkpoint.model, checkpoint.tokenizer.pad_id)
    out = perplexity(checkpoint.model, tmp_path, batch_size=2, max_batches=1)
    assert out["batches"] == 1 and out["tokens"] == 2 * SEQ_LEN


def test_restores_training_mode(tmp_path, checkpoint):
    write_tokens(tmp_path, checkpoint.model, checkpoint.tokenizer.pad_id)
    checkpoint.model.train()
    try:
        perplexity(checkpoint.model, tmp_path, max_batches=1)
        assert checkpoint.model.training
    finally:
        checkpoint.model.eval()


def test_rows_longer_than_the_model_fail_clearly(tmp_path, checkpoint):
    write_tokens(tmp_path, checkpoint.model, checkpoint.tokenizer.pad_id)
    m = Manifest.read(tmp_path)
    Manifest(**{**m.__dict__, "seq_len": checkpoint.model.cfg.max_seq_len + 1}).write(tmp_path)
    with pytest.raises(ValueError, match="max_seq_len"):
        perplexity(checkpoint.model, tmp_path)


def test_missing_split_names_the_ones_there(tmp_path, checkpoint):
    write_tokens(tmp_path, checkpoint.model, checkpoint.tokenizer.pad_id)
    with pytest.raises(KeyError, match="val"):
        perplexity(checkpoint.model, tmp_path, split="test")


# ---- per source, bits per byte ----

def write_sources(folder, model, pad_id: int, sources: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """A val split packed per source (as pipeline/tokenize.py writes it): source -> its rows."""
    rng = np.random.default_rng(seed)
    vocab = model.cfg.vocab_size
    data, files_by_source, all_files, start = {}, {}, [], 0
    for s, (name, n) in enumerate(sources.items()):
        rows = rng.integers(7, vocab, size=(n, SEQ_LEN + 1)).astype(np.int32)
        data[name] = rows
        rel = f"val/{name}/shard-0.npy"
        (folder / "val" / name).mkdir(parents=True)
        np.save(folder / rel, rows)
        files_by_source[name] = {"files": [rel], "rows": n, "tokens": int(rows.size), "documents": 1}
        all_files.append(rel)
    Manifest(seq_len=SEQ_LEN, dtype="int32", eot_id=0, pad_id=pad_id, tokenizer_fingerprint="test",
             splits={"val": {"files": all_files, "rows": sum(sources.values()),
                             "tokens": sum(int(r.size) for r in data.values()), "documents": 2,
                             "sources": files_by_source}}).write(folder)
    return data


def test_each_source_is_scored_on_its_own_rows(tmp_path, checkpoint):
    model, pad = checkpoint.model, checkpoint.tokenizer.pad_id
    data = write_sources(tmp_path, model, pad, {"web": 3, "code": 2})
    out = perplexity(model, tmp_path, batch_size=2)
    assert set(out["sources"]) == {"code", "web"}
    for name, rows in data.items():
        expected, n = hand_loss(model, rows, pad)
        assert out["sources"][name]["loss"] == pytest.approx(expected, rel=1e-5)
        assert out["sources"][name]["tokens"] == n
    both, n = hand_loss(model, np.concatenate(list(data.values())), pad)
    assert out["loss"] == pytest.approx(both, rel=1e-5) and out["tokens"] == n
    # max_batches caps each source, not the split: one batch of 2 rows from each.
    capped = perplexity(model, tmp_path, batch_size=2, max_batches=1)
    assert {s: v["rows"] for s, v in capped["sources"].items()} == {"web": 2, "code": 2}


def test_token_byte_lengths_of_a_byte_level_bpe(checkpoint):
    from evaluation.perplexity import token_byte_lengths

    tok = checkpoint.tokenizer
    lengths = token_byte_lengths(tok)
    assert lengths[tok.eot_id] == 0 and lengths[tok.pad_id] == 0
    text = "def pop(self):\n    return self.items.pop()  # héllo ✓"
    ids = tok.encode(text)
    assert int(lengths[ids].sum()) == len(text.encode("utf-8"))


def test_bits_per_byte_is_the_text_nll_over_its_bytes(tmp_path, checkpoint):
    from evaluation.perplexity import token_byte_lengths

    model, tok = checkpoint.model, checkpoint.tokenizer
    data = write_sources(tmp_path, model, tok.pad_id, {"prose": 3})
    rows = data["prose"].astype(np.int64)
    rows[0, 5] = tok.eot_id  # a document boundary: in the loss, not in the bytes
    np.save(tmp_path / "val/prose/shard-0.npy", rows.astype(np.int32))
    out = perplexity(model, tmp_path, tokenizer=tok)

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

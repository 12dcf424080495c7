"""Training helpers alone: the schedule, the optimizer groups, and the resumable shuffled order."""
import json

import numpy as np
import pytest
import torch

from model.objectives import shift_for_next_token
from pipeline.packed import Manifest, PackedSplit
from pipeline.train.data import Position, ShuffledBatches
from pipeline.train.schedule import build_optimizer, lr_at


def test_lr_warmup_then_cosine_to_floor():
    kw = dict(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(110, **kw) == pytest.approx(0.1)
    lrs = [lr_at(s, **kw) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_weight_decay_only_on_matrices():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and [p.dim() for p in decay["params"]] == [2]
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])


def make_tokens(tmp_path, n_rows=50, seq_len=8, shards=3):
    rows = np.arange(n_rows * (seq_len + 1), dtype=np.uint16).reshape(n_rows, seq_len + 1)
    files = []
    for i, part in enumerate(np.array_split(rows, shards)):
        (tmp_path / "train").mkdir(exist_ok=True)
        np.save(tmp_path / f"train/shard-{i}.npy", part)
        files.append(f"train/shard-{i}.npy")
    Manifest(seq_len=seq_len, dtype="uint16", eot_id=0, pad_id=1, tokenizer_fingerprint="x",
             splits={"train": {"files": files, "rows": n_rows}}).write(tmp_path)
    return rows


def test_packed_split_reads_rows_across_shards(tmp_path):
    rows = make_tokens(tmp_path)
    split = PackedSplit(tmp_path, "train")
    assert len(split) == 50
    idx = np.array([0, 17, 33, 49, 16])
    np.testing.assert_array_equal(split.rows(idx), rows[idx])
    inputs, targets = shift_for_next_token(torch.tensor([[5, 6, 1, 1]]), pad_id=1)
    assert inputs.tolist() == [[5, 6, 1]] and targets.tolist() == [[6, -100, -100]]


def test_workers_see_disjoint_rows_and_every_row_once_per_epoch(tmp_path):
    make_tokens(tmp_path, n_rows=48)
    split = PackedSplit(tmp_path, "train")
    loaders = [ShuffledBatches(split, batch_size=4, rank=r, world_size=3, seed=7) for r in range(3)]
    seen = []
    pos = Position()
    for _ in range(loaders[0].steps_per_epoch):
        for loader in loaders:
            seen += [int(r[0]) for r in loader.batch(pos)]
        pos = loaders[0].advance(pos)
    assert pos == Position(epoch=1, row=0)
    assert sorted(seen) == sorted(int(r[0]) for r in split.rows(np.arange(48)))
    # a new epoch reshuffles
    first = [int(r[0]) for r in loaders[0].batch(Position(0, 0))]
    again = [int(r[0]) for r in loaders[0].batch(Position(1, 0))]
    assert first != again


def test_resume_from_a_position_gives_the_same_batches(tmp_path):
    make_tokens(tmp_path, n_rows=40)
    split = PackedSplit(tmp_path, "train")

    def run(start: Position, n: int, loader):
        out, pos = [], start
        for _ in range(n):
            out.append(loader.batch(pos).tolist())
            pos = loader.advance(pos)
        return out, pos

    straight, _ = run(Position(), 12, ShuffledBatches(split, 4, 1, 2, seed=3))
    first, pos = run(Position(), 5, ShuffledBatches(split, 4, 1, 2, seed=3))
    saved = json.loads(json.dumps(pos.__dict__))  # what a checkpoint stores
    rest, _ = run(Position(**saved), 7, ShuffledBatches(split, 4, 1, 2, seed=3))  # a fresh process
    assert first + rest == straight


def test_too_little_data_is_a_clear_error(tmp_path):
    make_tokens(tmp_path, n_rows=5)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShuffledBatches(PackedSplit(tmp_path, "train"), batch_size=4, rank=0, world_size=2, seed=0)


def test_mixture_weights_repeat_and_subsample_sources():
    from pipeline.train.data import epoch_size, mixture_order

    rows = {"web": np.arange(0, 100), "code": np.arange(100, 140), "books": np.arange(140, 150)}
    weights = {"web": 0.5, "code": 2.0}
    order = mixture_order(rows, weights, seed=1, epoch=0)
    assert len(order) == epoch_size(rows, weights) == 50 + 80 + 10
    counts = np.bincount(order, minlength=150)
    assert np.all(counts[100:140] == 2)          # code twice
    assert np.all(counts[140:150] == 1)          # unnamed sources weigh 1
    web = counts[:100]
    assert web.sum() == 50 and set(web) <= {0, 1}  # half of web, no repeats
    again = np.bincount(mixture_order(rows, weights, seed=1, epoch=1), minlength=150)[:100]
    assert not np.array_equal(web, again)        # another half next epoch
    np.testing.assert_array_equal(order, mixture_order(rows, weights, seed=1, epoch=0))

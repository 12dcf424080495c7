"""FSDP2 on 2 CPU workers (gloo) without Ray: meta-device init that gives one process's weights
while each rank holds half, an imported Hugging Face model loaded into the shards, the loss
curve of one process, and resuming a run on another number of workers (2 -> 1, 1 -> 2) at the
same losses and the same rows.

Each case spawns fresh processes in one gloo group (pipeline.train.session.spawn_local); the
workers write what they saw to files that the test compares."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from model.config import ModelConfig, get_preset
from pipeline.train.session import LocalSession, spawn_local

SEED = 7
BLOCK = 1000  # values per init block: small, so shards cut through blocks and span several


# ---- model level: init, memory per rank, a Hugging Face import ----

def _shard_and_init(rank, world, out, cfg_dict, hf_ckpt, tokens):
    import model.init
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from model.checkpoint import load_config
    from model.transformer import Transformer
    from pipeline.train import parallel

    model.init.BLOCK_ELEMENTS = BLOCK
    with torch.device("meta"):
        m = Transformer(ModelConfig.from_dict(cfg_dict))
    m = parallel.parallelize(m, strategy="fsdp2", device=torch.device("cpu"), world=world, dtype=None)
    parallel.init_weights(m, SEED)
    assert m.output.weight is m.tok_embeddings.weight  # the tied head stays the embedding
    local = sum(p.to_local().numel() * p.element_size() for p in m.parameters())
    full = get_model_state_dict(m, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        torch.save(full, out / "init.pt")
    (out / f"bytes_{rank}.json").write_text(json.dumps(local))

    with torch.device("meta"):
        hf = Transformer(load_config(hf_ckpt))
    hf = parallel.parallelize(hf, strategy="fsdp2", device=torch.device("cpu"), world=world, dtype=None)
    parallel.load_weights(hf, hf_ckpt, rank=rank)
    with torch.no_grad():
        logits = hf.eval()(tokens)
    if rank == 0:
        torch.save(logits, out / "logits.pt")


def test_meta_init_gives_one_process_weights_half_per_rank_and_imports_load_into_shards(tmp_path, monkeypatch):
    import transformers

    import model.init
    from model.checkpoint import load_model
    from model.hf import import_hf
    from model.transformer import Transformer

    # odd row counts: the two shards are uneven, as with a real vocabulary
    cfg = get_preset("debug", vocab_size=1001, ffn_dim=136)
    hf_config = transformers.LlamaConfig(vocab_size=301, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         tie_word_embeddings=False)
    torch.manual_seed(1)
    hf_model = transformers.LlamaForCausalLM(hf_config).eval()
    with torch.no_grad():
        for p in hf_model.parameters():
            p.normal_(0, 0.1) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    hf_model.save_pretrained(str(tmp_path / "hf"))
    import_hf(tmp_path / "hf", tmp_path / "imported")
    tokens = torch.randint(0, 301, (2, 12), generator=torch.Generator().manual_seed(0))

    spawn_local(_shard_and_init, 2, tmp_path, cfg.to_dict(), tmp_path / "imported", tokens)

    monkeypatch.setattr(model.init, "BLOCK_ELEMENTS", BLOCK)
    one = Transformer(cfg)  # one process, its weights whole
    one.init_weights(SEED)
    sharded = torch.load(tmp_path / "init.pt")
    assert set(sharded) == set(one.state_dict())
    for name, w in one.state_dict().items():
        torch.testing.assert_close(sharded[name], w, rtol=0, atol=0, msg=name)
    whole = sum(p.numel() * p.element_size() for p in one.parameters())
    for rank in (0, 1):
        held = json.loads((tmp_path / f"bytes_{rank}.json").read_text())
        assert 0.45 * whole <= held <= 0.55 * whole, (rank, held, whole)

    plain, _ = load_model(tmp_path / "imported")
    with torch.no_grad():
        assert_close(torch.load(tmp_path / "logits.pt"), plain(tokens), rtol=1e-5, atol=1e-5)
        assert_close(torch.load(tmp_path / "logits.pt"), hf_model(tokens).logits, rtol=1e-4, atol=1e-4)


# ---- the training loop: one process's loss curve, and resuming on another number of workers ----

@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    from test_train_loop import write_packed_tokens

    return write_packed_tokens(tmp_path_factory.mktemp("sharded"))


def _fit(rank, world, job, folder, resume_from, out):
    """Fit the job on this worker; record rank 0's loss per step and every rank's rows per step."""
    from pipeline.train.loop import TrainJob, Trainer

    folder.mkdir(parents=True, exist_ok=True)
    if resume_from is not None and rank == 0 and not any(folder.glob("checkpoint_*")):
        shutil.copytree(resume_from, folder / "checkpoint_0")
    torch.distributed.barrier()
    trainer = Trainer(TrainJob(**job), LocalSession(folder, rank=rank, world=world))
    losses, rows = {}, {}
    read = trainer.loader.batch

    def batch(pos):
        loader = trainer.loader
        start = pos.row + loader.rank * loader.batch_size
        rows.setdefault(trainer.progress.step + 1, []).extend(
            int(i) for i in loader.order(pos.epoch)[start:start + loader.batch_size])
        return read(pos)

    log = trainer._log

    def record(metrics):
        if "train/loss" in metrics:
            losses[trainer.progress.step] = metrics["train/loss"]
        log(metrics)

    trainer.loader.batch, trainer._log = batch, record
    trainer.fit()
    (out / f"rows_{rank}.json").write_text(json.dumps(rows))
    if rank == 0:
        (out / "losses.json").write_text(json.dumps(losses))


def _fit_all(rank, world, runs):
    for run in runs:
        _fit(rank, world, *run)


def fit(tmp_path, world, runs: dict) -> dict:
    """Fit {name: (job, checkpoint to resume from or None)} in turn on `world` workers; returns
    {name: ({step: loss}, {step: sorted rows of all workers}, the run's checkpoints)}.

    Two workers are spawned processes; one is this process in a gloo group of its own (a fresh
    process costs seconds of imports on a busy machine)."""
    from dataclasses import asdict

    todo = []
    for name, (job, resume_from) in runs.items():
        (tmp_path / f"{name}-out").mkdir()
        todo.append((asdict(job), tmp_path / name, resume_from, tmp_path / f"{name}-out"))
    if world == 1:
        port = _free_port()
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        try:
            _fit_all(0, 1, todo)
        finally:
            torch.distributed.destroy_process_group()
    else:
        spawn_local(_fit_all, world, todo)
    results = {}
    for name in runs:
        out = tmp_path / f"{name}-out"
        losses = {int(k): v for k, v in json.loads((out / "losses.json").read_text()).items()}
        rows: dict[int, list] = {}
        for rank in range(world):
            for step, ids in json.loads((out / f"rows_{rank}.json").read_text()).items():
                rows.setdefault(int(step), []).extend(ids)
        results[name] = (losses, {k: sorted(v) for k, v in rows.items()}, LocalSession(tmp_path / name).checkpoints())
    return results


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_job(tokens, tmp_path, **train):
    from test_train_loop import make_job as loop_job

    settings = {"strategy": "fsdp2", "max_steps": 4, "log_every": 1, "checkpoint_every": 2, "eval_every": 2,
                "eval_batches": 1, "warmup_steps": 1, **train}
    return loop_job(tokens, tmp_path, **settings)


def test_fsdp2_follows_one_process_and_resumes_on_another_number_of_workers(tokens, tmp_path):
    # one process: 4 rows x 2 accumulated micro-steps; two workers: 4 rows each, the same 8 rows a step
    one_job = make_job(tokens, tmp_path, num_workers=1, batch_size=4, grad_accum_steps=2)
    two_job = make_job(tokens, tmp_path, num_workers=2, batch_size=4)
    one_losses, one_rows, one_ckpts = fit(tmp_path, 1, {"one": (one_job, None)})["one"]
    two = fit(tmp_path, 2, {"two": (two_job, None),
                            # 1 -> 2: one process's step-2 checkpoint on two workers
                            "one-to-two": (one_job, one_ckpts[0])})
    two_losses, two_rows, two_ckpts = two["two"]
    assert sorted(one_losses) == [1, 2, 3, 4]
    assert two_rows == one_rows
    for step, loss in one_losses.items():
        assert two_losses[step] == pytest.approx(loss, rel=1e-4), step
    assert json.loads((two_ckpts[0] / "dcp.json").read_text())  # a distributed checkpoint, at step 2

    r_losses, r_rows, _ = two["one-to-two"]
    assert sorted(r_losses) == [3, 4] and r_rows == {s: one_rows[s] for s in (3, 4)}
    for step in (3, 4):
        assert r_losses[step] == pytest.approx(one_losses[step], rel=1e-4), step

    # 2 -> 1: the step-2 checkpoint of two workers, on one (the same config: the lost worker's rows
    # are read as a second micro-step)
    r_losses, r_rows, _ = fit(tmp_path, 1, {"two-to-one": (two_job, two_ckpts[0])})["two-to-one"]
    assert sorted(r_losses) == [3, 4] and r_rows == {s: two_rows[s] for s in (3, 4)}
    for step in (3, 4):
        assert r_losses[step] == pytest.approx(two_losses[step], rel=1e-4), step


def test_every_row_of_an_epoch_is_read_once_across_a_change_of_workers(tmp_path):
    from pipeline.train.data import Position, ShuffledBatches
    from test_train_pieces import make_tokens

    from pipeline.packed import PackedSplit

    make_tokens(tmp_path, n_rows=48)
    split = PackedSplit(tmp_path, "train")
    two = [ShuffledBatches(split, 4, r, 2, seed=3) for r in range(2)]
    one = ShuffledBatches(split, 4, 0, 1, seed=3)
    seen, pos = [], Position()
    for _ in range(3):  # 3 steps on two workers, then the rest of the epoch on one
        seen += [i for loader in two for i in loader.order(0)[pos.row + loader.rank * 4:][:4]]
        pos = two[0].advance(pos)
    while pos.epoch == 0:
        seen += list(one.order(0)[pos.row:pos.row + 4])
        pos = one.advance(pos)
    assert sorted(seen) == list(range(48)) and np.array_equal(seen, one.order(0))

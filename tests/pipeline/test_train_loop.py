"""The training loop's logic in one plain process (LocalSession: world size 1, no Ray):
metrics and progress lines, checkpoints that resume exactly, gradient accumulation, epochs,
early stopping, and the stop on a non-finite loss."""
import json
import math

import numpy as np
import pytest
import torch

from model.checkpoint import load_model
from model.tokenizer import Tokenizer
from pipeline.config import TokenizerConfig, load_config
from pipeline.packed import Manifest
from pipeline.tokenize.tokenizer import train_tokenizer
from pipeline.train.launch import build_job
from pipeline.train.loop import STOP_EARLY, STOP_NON_FINITE, Trainer
from pipeline.train.session import LocalSession
from tests.integration.test_tokenize import write_curated

SEQ_LEN = 32


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    return write_packed_tokens(tmp_path_factory.mktemp("loop"))


def write_packed_tokens(d, n_docs=160):
    """Packed rows of real text (a BPE trained on it) under d/tokens, without Ray: 1 in 10
    documents held out for validation. Returns the tokens folder."""
    texts = write_curated(d / "curated", n_docs=n_docs)
    train_tokenizer(d / "curated", d / "tok", TokenizerConfig(vocab_size=400))
    return pack_texts(list(texts.values()), d / "tok", d / "tokens", SEQ_LEN)


def pack_texts(texts: list[str], tokenizer_dir, out, seq_len: int):
    """The texts joined by end-of-text and cut into rows of seq_len + 1 under `out` (a packed
    tokens folder with its manifest and tokenizer), 1 in 10 documents held out for validation."""
    tok = Tokenizer.from_file(tokenizer_dir / "tokenizer.json")
    splits = {}
    for split, keep in (("train", lambda i: i % 10), ("val", lambda i: not i % 10)):
        stream = [t for i, text in enumerate(texts) if keep(i) for t in tok.encode(text) + [tok.eot_id]]
        n = len(stream) // (seq_len + 1)
        (out / split).mkdir(parents=True)
        np.save(out / split / "shard-0.npy", np.array(stream[:n * (seq_len + 1)], np.uint16).reshape(n, -1))
        splits[split] = {"files": [f"{split}/shard-0.npy"], "rows": n}
    Manifest(seq_len=seq_len, dtype="uint16", eot_id=tok.eot_id, pad_id=tok.pad_id,
             tokenizer_fingerprint=tok.fingerprint, splits=splits).write(out)
    (out / "tokenizer.json").write_bytes((tokenizer_dir / "tokenizer.json").read_bytes())
    return out


def make_job(tokens, tmp_path, tracking=False, **train):
    settings = {**dict(num_workers=1, batch_size=8, max_steps=6, warmup_steps=2, lr=3e-3, log_every=2,
                       eval_every=3, checkpoint_every=3, eval_batches=2), **train}
    sets = ["model.preset=debug", f"tokenize.seq_len={SEQ_LEN}", f"tracking.enabled={str(tracking).lower()}",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"] + [f"train.{k}={v}" for k, v in settings.items()]
    cfg = load_config(None, sets, root=str(tmp_path))
    run_id = None
    if tracking:
        from mlflow import MlflowClient

        client = MlflowClient(cfg.tracking_uri)
        run_id = client.create_run(client.create_experiment("loop-test")).info.run_id
    return build_job(cfg, tokens, run_id)


def weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_metrics_progress_lines_and_checkpoints(tokens, tmp_path, capsys):
    from mlflow import MlflowClient

    job = make_job(tokens, tmp_path, tracking=True, peak_flops=1e12)
    session = LocalSession(tmp_path / "ckpt")
    summary = Trainer(job, session).fit()
    assert summary["step"] == 6 and summary["stopped"] is None
    # reports go to Ray Train only with validations: at 3 and 6, each with a checkpoint
    assert [(m["step"], ckpt is not None) for m, ckpt in session.reports] == [(3, True), (6, True)]
    last = session.reports[-1][0]
    assert last["val/perplexity"] == pytest.approx(math.exp(last["val/loss"]))
    lines = [line for line in capsys.readouterr().out.splitlines() if "| loss" in line]
    assert len(lines) == 3  # steps 2, 4, 6
    assert all(f"| {word}" in lines[0] for word in ("ppl ", "lr ", "gnorm ", "mfu ", "mem ")), lines[0]
    assert " tok/s |" in lines[0] and "| eta " in lines[0]
    assert "val_loss" in lines[2] and "eta" not in lines[2]

    client = MlflowClient(job.tracking_uri)
    names = ["train/loss", "train/perplexity", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/mfu",
             "train/peak_memory_gb", "val/loss"]
    history = {n: client.get_metric_history(job.run_id, n) for n in names}
    assert [m.step for m in history["train/loss"]] == [2, 4, 6]
    assert [m.step for m in history["val/loss"]] == [3, 6]
    mfu = history["train/mfu"][-1].value
    tok_s = history["train/tokens_per_s"][-1].value
    from model.config import ModelConfig, flops_per_token

    expected = tok_s * flops_per_token(ModelConfig.from_dict(job.model), SEQ_LEN) / 1e12
    assert mfu == pytest.approx(expected, rel=1e-6)
    assert history["train/peak_memory_gb"][-1].value > 0.05

    # the checkpoint is a plain model checkpoint with the whole training state
    model, _ = load_model(session.checkpoints()[-1])
    state = torch.load(session.checkpoints()[-1] / "train_state.pt", weights_only=False)
    assert state["step"] == 6 and state["position"] == {"epoch": 0, "row": 6 * 8}
    assert set(state) >= {"optimizer", "rng", "best_val", "schedule", "placement", "tokens_seen"}
    assert len(state["rng"]) == 1 and set(state["rng"][0]) >= {"torch", "numpy", "python"}


def test_resume_from_a_checkpoint_continues_exactly(tokens, tmp_path):
    job = make_job(tokens, tmp_path, checkpoint_every=2)
    straight = LocalSession(tmp_path / "straight")
    run = Trainer(job, straight)
    run.fit()
    # a fresh process that finds only the step-2 checkpoint ends with the same weights and metrics
    resumed = LocalSession(tmp_path / "resumed")
    (tmp_path / "resumed").mkdir()
    import shutil

    shutil.copytree(straight.checkpoints()[0], tmp_path / "resumed" / "checkpoint_0")
    again = Trainer(job, resumed)
    assert again.progress.step == 2
    again.fit()
    for name, w in weights(run).items():
        torch.testing.assert_close(weights(again)[name], w, rtol=0, atol=0)
    assert resumed.reports[-1][0]["train/loss"] == straight.reports[-1][0]["train/loss"]
    assert resumed.reports[-1][0]["val/loss"] == straight.reports[-1][0]["val/loss"]


def test_gradient_accumulation_matches_the_bigger_batch(tokens, tmp_path):
    big = Trainer(make_job(tokens, tmp_path, batch_size=8, max_steps=3), LocalSession(tmp_path / "a"))
    accumulated = Trainer(make_job(tokens, tmp_path, batch_size=4, grad_accum_steps=2, max_steps=3),
                          LocalSession(tmp_path / "b"))
    for step in range(3):
        loss_big, norm_big, _ = big.train_step(lr=3e-3)
        loss_acc, norm_acc, _ = accumulated.train_step(lr=3e-3)
        assert loss_acc == pytest.approx(loss_big, rel=1e-5) and norm_acc == pytest.approx(norm_big, rel=1e-4)
    # positions count rows: both read the same 24
    assert big.progress.position.row == accumulated.progress.position.row == 24


def test_epochs_bound_the_budget_and_end_with_a_validation(tokens, tmp_path):
    session = LocalSession(tmp_path / "ckpt")
    trainer = Trainer(make_job(tokens, tmp_path, epochs=1, max_steps=1000, eval_every=1000, checkpoint_every=1000),
                      session)
    steps_per_epoch = trainer.loader.steps_per_epoch
    assert trainer.total_steps == steps_per_epoch < 1000
    summary = trainer.fit()
    assert summary["step"] == steps_per_epoch
    assert [m["step"] for m, _ in session.reports] == [steps_per_epoch]  # epoch end == the end: one report
    assert trainer.progress.position.epoch == 1


def test_early_stopping_ends_on_a_checkpoint_and_stays_stopped(tokens, tmp_path, capsys):
    session = LocalSession(tmp_path / "ckpt")
    job = make_job(tokens, tmp_path, lr=1e-7, warmup_steps=0, max_steps=50, eval_every=2, checkpoint_every=100,
                   early_stopping_patience=2, early_stopping_min_delta=0.01)
    summary = Trainer(job, session).fit()
    # validation at 2 sets the best; 4 and 6 do not improve it by 0.01: stop at 6, on a checkpoint
    assert summary["stopped"] == STOP_EARLY and summary["step"] == 6
    assert [(m["step"], ckpt is not None) for m, ckpt in session.reports] == [(2, False), (4, False), (6, True)]
    assert "early stopping at step 6" in capsys.readouterr().out
    again = Trainer(job, session)  # a rerun of the same run does not train on
    assert again.fit()["step"] == 6 and len(session.reports) == 3


def test_non_finite_loss_stops_before_the_optimizer_step(tokens, tmp_path, monkeypatch):
    import pipeline.train.loop

    trainer = Trainer(make_job(tokens, tmp_path, max_steps=5), LocalSession(tmp_path / "ckpt"))
    real = pipeline.train.loop.loss_terms
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        total, count = real(*args, **kwargs)
        return (total * float("nan") if len(calls) == 3 else total), count

    monkeypatch.setattr(pipeline.train.loop, "loss_terms", poisoned)
    trainer.train_step(lr=1e-3)
    trainer.train_step(lr=1e-3)
    before = weights(trainer)
    summary = trainer.fit()
    assert summary["stopped"] == STOP_NON_FINITE and summary["step"] == 2
    assert "non-finite loss or gradients at step 3" in summary["error"] and "train.lr" in summary["error"]
    for name, w in before.items():
        assert torch.equal(weights(trainer)[name], w), name


def test_validation_skips_a_batch_with_nothing_to_predict(tokens, tmp_path):
    import shutil

    from pipeline.packed import PackedSplit
    from pipeline.train.loop import validate

    model = Trainer(make_job(tokens, tmp_path), LocalSession(tmp_path / "ckpt")).model
    shutil.copytree(tokens, tmp_path / "tokens")
    split = PackedSplit(tmp_path / "tokens", "val")
    rows = split.rows(np.arange(len(split)))

    def val_loss(batch_size):
        return validate(model, PackedSplit(tmp_path / "tokens", "val"), batch_size=batch_size, max_batches=99,
                        rank=0, world=1, device=torch.device("cpu"), pad_id=split.pad_id)

    clean = val_loss(len(rows))
    # append an end-of-text row followed by padding, alone in the last batch: it counts for nothing
    padded = np.concatenate([rows, np.full((1, SEQ_LEN + 1), split.pad_id)])
    padded[-1, 0] = json.loads((tokens / "manifest.json").read_text())["eot_id"]
    np.save(tmp_path / "tokens" / "val" / "shard-0.npy", padded.astype(np.uint16))
    manifest = Manifest.read(tmp_path / "tokens")
    manifest.splits["val"]["rows"] += 1
    manifest.write(tmp_path / "tokens")
    assert val_loss(len(rows)) == pytest.approx(clean, rel=1e-9)


def test_the_best_or_the_last_checkpoint_becomes_the_model_and_divergence_is_an_error(tokens, tmp_path):
    from types import SimpleNamespace

    from ray.train import Checkpoint

    from model.checkpoint import load_train_state
    from pipeline.train.launch import TrainError, finish

    session = LocalSession(tmp_path / "ckpt")
    summary = Trainer(make_job(tokens, tmp_path, max_steps=6, checkpoint_every=2), session).fit()
    kept = [(Checkpoint.from_directory(str(ckpt)), m) for m, ckpt in session.reports if ckpt is not None]
    assert [m["step"] for _, m in kept] == [2, 4, 6]
    kept[1][1]["val/loss"] = -1.0  # pretend step 4 validated best
    result = SimpleNamespace(return_value=summary, best_checkpoints=kept, checkpoint=kept[-1][0],
                             metrics=kept[-1][1])
    best = finish(result, "best", tmp_path / "best")
    assert best["final/step"] == 4 and best["step"] == 6 and load_train_state(tmp_path / "best")["step"] == 4
    last = finish(result, "last", tmp_path / "last")
    assert last["final/step"] == 6 and load_train_state(tmp_path / "last")["step"] == 6
    load_model(tmp_path / "best")
    diverged = SimpleNamespace(**{**vars(result), "return_value": {"stopped": STOP_NON_FINITE, "error": "boom at 3"}})
    with pytest.raises(TrainError, match="boom at 3"):
        finish(diverged, "best", tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.fixture
def one_rank_group(tmp_path):
    """A gloo process group of one rank in this process: what FSDP2 needs to shard, even across one."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_fsdp2_distributed_checkpoint_resumes_exactly_and_exports(tokens, tmp_path, one_rank_group):
    from pipeline.train.checkpoints import is_distributed_checkpoint

    job = make_job(tokens, tmp_path, strategy="fsdp2", checkpoint_every=2)
    straight = LocalSession(tmp_path / "straight")
    run = Trainer(job, straight)
    run.fit()
    first = straight.checkpoints()[0]
    assert is_distributed_checkpoint(first) and (first / "dcp" / ".metadata").is_file()
    assert not (first / "model.safetensors").exists()  # nothing gathered into one file while training
    (tmp_path / "resumed").mkdir()
    import shutil

    shutil.copytree(first, tmp_path / "resumed" / "checkpoint_0")
    again = Trainer(job, LocalSession(tmp_path / "resumed"))
    assert again.progress.step == 2
    again.fit()

    def full(trainer):
        return {k: v.full_tensor() for k, v in trainer.model.state_dict().items()}

    for name, w in full(run).items():
        torch.testing.assert_close(full(again)[name], w, rtol=0, atol=0)
    # exported as a plain checkpoint: the same weights, loadable by model/ alone
    from pipeline.train.checkpoints import export_model

    export_model(straight.checkpoints()[-1], tmp_path / "model")
    model, _ = load_model(tmp_path / "model")
    for name, w in full(run).items():
        torch.testing.assert_close(model.state_dict()[name], w, rtol=0, atol=0)

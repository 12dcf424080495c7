"""Ray Train end to end on tiny data: 2 DDP workers learn, checkpoint, and a rerun resumes."""
import json

import pytest
import torch

from model.checkpoint import load_model, load_train_state
from pipeline.config import TokenizeConfig, TokenizerConfig, load_config
from pipeline.tokenize import tokenize_and_pack, train_tokenizer
from pipeline.train.launch import TrainError, build_job, run_train
from tests.integration.test_tokenize import write_curated

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tokens(ray_session, tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    write_curated(d / "curated", n_docs=200)
    train_tokenizer(d / "curated", d / "tok", TokenizerConfig(vocab_size=400))
    tokenize_and_pack(d / "curated", d / "tok", d / "tokens", TokenizeConfig(seq_len=32, val_fraction=0.1))
    return d


def train_cfg(root, **train):
    sets = ["model.preset=debug", "tokenize.seq_len=32", "tracking.enabled=false", "train.warmup_steps=2",
            "train.lr=3e-3"] + [f"train.{k}={v}" for k, v in train.items()]
    return load_config(None, sets, root=str(root))


def test_two_workers_train_checkpoint_and_resume(tokens, tmp_path):
    cfg = train_cfg(tmp_path, max_steps=12, log_every=4, eval_every=6, checkpoint_every=6)
    metrics = run_train(cfg, tokens / "tokens", tmp_path / "model", tmp_path / "runs", "t1")
    assert metrics["step"] == 12
    first_val = metrics["val/loss"]
    model, mcfg = load_model(tmp_path / "model")
    assert mcfg.vocab_size <= 400 and mcfg.n_layers == 2
    state = load_train_state(tmp_path / "model")
    assert state["step"] == 12 and state["position"]["step_in_epoch"] + state["position"]["epoch"] > 0
    # the same run name with a larger budget continues from step 12 instead of starting over
    cfg = train_cfg(tmp_path, max_steps=18, log_every=3, eval_every=6, checkpoint_every=6)
    metrics = run_train(cfg, tokens / "tokens", tmp_path / "model", tmp_path / "runs", "t1")
    assert load_train_state(tmp_path / "model")["step"] == 18
    assert metrics["val/loss"] < first_val
    # a random model is near log(vocab); the trained one is far below
    assert metrics["val/loss"] < torch.log(torch.tensor(float(mcfg.vocab_size))).item() - 1.0


def test_tokens_must_carry_their_own_tokenizer(tokens, tmp_path):
    import shutil

    shutil.copytree(tokens / "tokens", tmp_path / "tokens")
    manifest = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    manifest["tokenizer_fingerprint"] = "0" * 64
    (tmp_path / "tokens" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainError, match="another tokenizer"):
        build_job(train_cfg(tmp_path, max_steps=3), tmp_path / "tokens", run_id=None)
    (tmp_path / "tokens" / "tokenizer.json").unlink()
    with pytest.raises(TrainError, match="must hold the tokenizer"):
        build_job(train_cfg(tmp_path, max_steps=3), tmp_path / "tokens", run_id=None)

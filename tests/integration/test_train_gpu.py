"""The trainer on a CUDA device: bf16 (autocast under DDP, a mixed-precision policy under FSDP2),
torch.compile, FSDP2 with CPU offload, NCCL, and MFU from the device table.
Skipped without a GPU (run with `-m gpu` on a GPU box)."""
import math

import pytest
import torch

from model.checkpoint import load_model
from pipeline.config import load_config
from pipeline.train.launch import run_train
from tests.pipeline.test_train_loop import SEQ_LEN, write_packed_tokens

pytestmark = [
    pytest.mark.integration,
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def tokens(ray_session, tmp_path_factory):
    return write_packed_tokens(tmp_path_factory.mktemp("gpu-tok"))


@pytest.mark.parametrize("strategy, extra", [("ddp", ["train.compile=true"]),
                                             ("fsdp2", ["train.cpu_offload=true"])])
def test_one_gpu_worker_trains_in_bf16(tokens, tmp_path, strategy, extra):
    sets = ["model.preset=debug", f"tokenize.seq_len={SEQ_LEN}", "tracking.enabled=false", "train.use_gpu=true",
            "train.num_workers=1", f"train.strategy={strategy}", "train.max_steps=30", "train.warmup_steps=3",
            "train.log_every=10", "train.eval_every=15", "train.checkpoint_every=15", "train.lr=3e-3", *extra]
    cfg = load_config(None, sets, root=str(tmp_path))
    metrics = run_train(cfg, tokens, tmp_path / "model", tmp_path / "runs", f"gpu-{strategy}")
    model, mcfg = load_model(tmp_path / "model")
    assert metrics["step"] == 30 and metrics["val/loss"] < math.log(mcfg.vocab_size) - 1.0
    assert metrics["train/peak_memory_gb"] > 0
    if any(name in torch.cuda.get_device_name() for name in ("H100", "H200", "A100")):
        assert 0 < metrics["train/mfu"] < 1

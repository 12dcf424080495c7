"""The train section's checks, the metric helpers, fault injection and the cluster definitions (no Ray)."""
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import ConfigError, load_config
from pipeline.train.faults import KILL_WORKER, KillWorker, forwarded_env
from pipeline.train.metrics import PEAK_FLOPS, Window, device_peak_flops, mfu, progress_line
from pipeline.train.parallel import compute_dtype

REPO = Path(__file__).resolve().parents[2]


def problems(*sets):
    with pytest.raises(ConfigError) as e:
        load_config(None, list(sets))
    return e.value.problems


def test_inconsistent_train_settings_are_named_with_their_fix():
    found = " ".join(problems("train.cpu_offload=true", "train.resources_per_worker={CPU: 2}"))
    assert "train.cpu_offload needs train.strategy: fsdp2" in found
    assert "train.cpu_offload needs train.use_gpu: true" in found
    assert "train.resources_per_worker: CPU come from train.cpus_per_worker" in found
    assert any(p.startswith("train.strategy:") for p in problems("train.strategy=zero3"))
    assert any(p.startswith("train.final_checkpoint:") for p in problems("train.final_checkpoint=first"))
    cfg = load_config(None, ["train.strategy=fsdp2", "train.use_gpu=true", "train.cpu_offload=true",
                             "train.epochs=2.5", "train.early_stopping_patience=3"])
    assert cfg.train.strategy == "fsdp2" and cfg.train.epochs == 2.5


def test_every_train_key_is_documented():
    from pipeline.config import TrainConfig

    source = (REPO / "pipeline" / "config" / "train.py").read_text()
    body = source[source.index("class TrainConfig"):]
    for name in TrainConfig.model_fields:
        if name in ("beta1", "beta2"):  # documented together under weight_decay
            continue
        after = body[body.index(f"    {name}:"):].splitlines()[1].strip()
        assert after.startswith('"""'), f"train.{name} has no docstring"
    doc = (REPO / "docs" / "training.md").read_text()
    missing = [n for n in TrainConfig.model_fields if f"`{n}`" not in doc]
    assert not missing, f"docs/training.md does not mention {missing}"


def test_mixed_precision_is_bf16_on_gpus_only_when_automatic():
    assert compute_dtype("auto", torch.device("cpu")) is None
    assert compute_dtype("auto", torch.device("cuda", 0)) is torch.bfloat16
    assert compute_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert compute_dtype("fp32", torch.device("cuda", 0)) is None


def test_mfu_and_the_peak_table():
    # 1000 tokens/s x 6e9 FLOPs per token on 2 devices of 1e13 FLOP/s each: 30%
    assert mfu(1000, 6e9, 1e13, 2) == pytest.approx(0.3)
    assert mfu(1000, 6e9, None, 2) is None
    assert device_peak_flops(torch.device("cpu")) is None
    assert device_peak_flops(torch.device("cpu"), configured=2e12) == 2e12
    table = dict(PEAK_FLOPS)
    assert table["H100"] == table["H200"] == 989e12 and table["A100"] == 312e12
    # a more specific name comes before the name it contains, or it could never match
    names = [name for name, _ in PEAK_FLOPS]
    for i, name in enumerate(names):
        assert not any(earlier in name for earlier in names[:i]), name


def test_window_metrics_and_the_progress_line():
    w = Window()
    w.add(loss=2.0, grad_norm=1.0, seconds=0.5, tokens=1000)
    w.add(loss=3.0, grad_norm=3.0, seconds=1.5, tokens=1000)
    m = w.metrics(mean_loss=2.5, lr=1e-3, epoch=0.5, flops_per_token=1e6, peak_flops=1e9, world=1,
                  peak_memory=2_000_000_000)
    assert m["train/tokens_per_s"] == 1000 and m["train/step_time_s"] == 1.0
    assert m["train/grad_norm"] == 2.0 and m["train/perplexity"] == pytest.approx(12.1825, rel=1e-4)
    assert m["train/mfu"] == pytest.approx(1.0) and m["train/peak_memory_gb"] == 2.0
    line = progress_line(20, 300, {**m, "val/loss": 2.25}, eta_s=250)
    assert line == ("[train] step  20/300 | ep 0.50 | loss 2.5000 | ppl 12.2 | val_loss 2.2500 | lr 1.00e-03 | "
                    "gnorm 2.00 | 1,000 tok/s | mfu 100.0% | mem 2.00 GB | eta 4m10s")
    assert "eta" not in progress_line(300, 300, m, eta_s=0)


def test_fault_injection_kills_the_worker_once(tmp_path):
    marker = tmp_path / "killed"
    assert KillWorker.from_env({}) is None
    plan = KillWorker.from_env({KILL_WORKER: f"1:5:{marker}"})
    assert plan == KillWorker(rank=1, step=5, marker=marker)
    assert forwarded_env({KILL_WORKER: "x", "OWNLM_FAULT_OTHER": "y", "PATH": "/bin"}) == {
        KILL_WORKER: "x", "OWNLM_FAULT_OTHER": "y"}
    code = (f"from pipeline.train.faults import KillWorker; k = KillWorker.from_env(); "
            f"k.after_step(0, 5); k.after_step(1, 4); k.after_step(1, 5); print('survived')")
    env = {KILL_WORKER: f"1:5:{marker}", "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    assert first.returncode == -9 and "survived" not in first.stdout  # SIGKILL at rank 1, step 5
    assert marker.read_text().startswith("rank 1 killed itself after step 5")
    again = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and "survived" in again.stdout  # the marker is there: once only


def test_the_kuberay_job_runs_a_valid_ownlm_train_with_token_auth():
    job = yaml.safe_load((REPO / "cluster" / "kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["rayClusterSpec"]["authOptions"]["mode"] == "token"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["ownlm", "train"]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    cfg = load_config(None, sets)  # the overrides in the example are valid keys and values
    assert cfg.cluster.address == "auto" and cfg.train.use_gpu
    gpus = sum(int(g["replicas"]) * int(g["template"]["spec"]["containers"][0]["resources"]["limits"]
                                        ["nvidia.com/gpu"]) for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"])
    assert gpus == cfg.train.num_workers  # one GPU per worker


def test_the_cluster_launcher_starts_every_node_with_token_auth():
    launcher = yaml.safe_load((REPO / "cluster" / "ray-cluster.aws.yaml").read_text())
    assert launcher["head_node_type"] in launcher["available_node_types"]
    for command in launcher["head_start_ray_commands"][1:] + launcher["worker_start_ray_commands"][1:]:
        assert command.startswith("RAY_AUTH_MODE=token ") and "ray start" in command
    assert "~/.ray/auth_token" in launcher["file_mounts"]


def test_compile_is_in_place_and_keeps_the_checkpoint_keys():
    from model.config import get_preset
    from model.transformer import Transformer
    from pipeline.train.parallel import parallelize

    plain = Transformer(get_preset("debug"))
    model = parallelize(Transformer(get_preset("debug")), strategy="ddp", device=torch.device("cpu"), world=1,
                        dtype=None, compile=True)
    assert model._compiled_call_impl is not None  # nn.Module.compile: the module itself, not a wrapper
    assert list(model.state_dict()) == list(plain.state_dict())

"""Ray Train end to end on tiny data: workers learn, checkpoint and resume; DDP and FSDP2 follow the
loss curve of one process; a killed worker process costs nothing but time."""
import json
import re
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_model, load_train_state
from pipeline.config import load_config
from pipeline.train.launch import TrainError, build_job, run_train
from tests.pipeline.test_train_loop import SEQ_LEN, write_packed_tokens

pytestmark = pytest.mark.integration

# Loss curves of the same global batch split differently differ only by float32 reduction order
# (sums over 8 rows vs 2 x 4 rows, gradient all-reduce, FSDP2's reduce-scatter): about 2e-7
# relative over these 8 steps on CPU; 1e-5 leaves room and still catches any real difference
# (a wrong shard, a missed gradient sync or a different batch moves the loss by 1e-3 or more).
CURVE_RTOL = 1e-5


@pytest.fixture(scope="module")
def tokens(ray_session, tmp_path_factory):
    return write_packed_tokens(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def train_cfg(root, tracking_uri=None, **train):
    sets = ["model.preset=debug", f"tokenize.seq_len={SEQ_LEN}", "train.warmup_steps=2", "train.lr=3e-3",
            f"tracking.enabled={'true' if tracking_uri else 'false'}", f"tracking.uri={tracking_uri or 'null'}"]
    return load_config(None, sets + [f"train.{k}={v}" for k, v in train.items()], root=str(root))


def new_run(cfg) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(cfg.tracking_uri)
    exp = client.get_experiment_by_name("train-test") or client.get_experiment(client.create_experiment("train-test"))
    return client.create_run(exp.experiment_id).info.run_id


def curve(cfg, run_id, name="train/loss") -> dict[int, float]:
    """step -> value logged to MLflow by rank 0 (the last value when a step was logged twice)."""
    from mlflow import MlflowClient

    return {m.step: m.value for m in sorted(MlflowClient(cfg.tracking_uri).get_metric_history(run_id, name),
                                             key=lambda m: m.timestamp)}


def test_tokens_must_carry_their_own_tokenizer(tokens, tmp_path):
    import shutil

    shutil.copytree(tokens, tmp_path / "tokens")
    manifest = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    manifest["tokenizer_fingerprint"] = "0" * 64
    (tmp_path / "tokens" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TrainError, match="another tokenizer"):
        build_job(train_cfg(tmp_path, max_steps=3), tmp_path / "tokens", run_id=None)
    (tmp_path / "tokens" / "tokenizer.json").unlink()
    with pytest.raises(TrainError, match="must hold the tokenizer"):
        build_job(train_cfg(tmp_path, max_steps=3), tmp_path / "tokens", run_id=None)


# ---- parity and fault tolerance: one schedule, one global batch of 8 sequences

PARITY = dict(max_steps=8, log_every=1, eval_every=4, checkpoint_every=4, eval_batches=2)


@pytest.fixture(scope="module")
def one_process(tokens, mlflow_uri, tmp_path_factory):
    """The reference: the same loop in one plain process (no Ray, no process group), batch 8."""
    from pipeline.train.loop import Trainer
    from pipeline.train.session import LocalSession

    root = tmp_path_factory.mktemp("one")
    cfg = train_cfg(root, mlflow_uri, num_workers=1, batch_size=8, **PARITY)
    run_id = new_run(cfg)
    threads = torch.get_num_threads()
    summary = Trainer(build_job(cfg, tokens, run_id), LocalSession(root / "ckpt")).fit()
    torch.set_num_threads(threads)  # the loop set this process's torch threads to cpus_per_worker
    return cfg, run_id, summary


@pytest.fixture(scope="module")
def ddp(tokens, mlflow_uri, tmp_path_factory):
    """Two DDP workers of batch 4 through Ray Train, uninterrupted."""
    root = tmp_path_factory.mktemp("ddp")
    cfg = train_cfg(root, mlflow_uri, num_workers=2, batch_size=4, strategy="ddp", **PARITY)
    run_id = new_run(cfg)
    metrics = run_train(cfg, tokens, root / "model", root / "runs", "ddp", run_id=run_id)
    return cfg, run_id, metrics, root


def test_ddp_and_fsdp2_follow_the_loss_curve_of_one_process(tokens, one_process, ddp, mlflow_uri, tmp_path):
    ref_cfg, ref_run, _ = one_process
    reference = curve(ref_cfg, ref_run)
    assert list(reference) == list(range(1, 9)) and reference[8] < reference[1] - 0.5

    ddp_cfg, ddp_run, ddp_metrics, _ = ddp
    fsdp_cfg = train_cfg(tmp_path, mlflow_uri, num_workers=2, batch_size=4, strategy="fsdp2", **PARITY)
    fsdp_run = new_run(fsdp_cfg)
    fsdp_metrics = run_train(fsdp_cfg, tokens, tmp_path / "model", tmp_path / "runs", "fsdp2", run_id=fsdp_run)
    for name, (cfg, run_id) in {"ddp": (ddp_cfg, ddp_run), "fsdp2": (fsdp_cfg, fsdp_run)}.items():
        got = curve(cfg, run_id)
        assert list(got) == list(reference), name
        for step, loss in reference.items():
            assert got[step] == pytest.approx(loss, rel=CURVE_RTOL), (name, step)
        assert curve(cfg, run_id, "val/loss")[8] == pytest.approx(curve(ref_cfg, ref_run, "val/loss")[8],
                                                                  rel=CURVE_RTOL), name
    # FSDP2's distributed checkpoint comes out as a plain model that model/ loads on its own: the
    # trained weights themselves, which score exactly the validation loss the workers reported
    from pipeline.packed import PackedSplit
    from pipeline.train.loop import validate

    assert fsdp_metrics["final/step"] == 8 and load_train_state(tmp_path / "model")["step"] == 8
    model, _ = load_model(tmp_path / "model")
    val = validate(model, PackedSplit(tokens, "val"), batch_size=8, max_batches=2, rank=0, world=1,
                   device=torch.device("cpu"))
    assert val == pytest.approx(fsdp_metrics["val/loss"], rel=1e-6)
    assert fsdp_metrics["val/loss"] == pytest.approx(ddp_metrics["val/loss"], rel=CURVE_RTOL)


# A worker lost right after a checkpoint used to take the checkpoint with it: its report still sat in the
# worker's queue, which Ray Train's controller collects every 2 s, and the restart began at step 0. Rank 0
# holds the DDP checkpoint, rank 1 only its part of the report: losing either lost the round.
@pytest.mark.parametrize("rank,step", [(1, 5), (0, 7)], ids=["rank1-right-after-the-checkpoint", "rank0-3-steps-later"])
def test_a_killed_worker_process_restarts_from_the_last_checkpoint(rank, step, tokens, ddp, mlflow_uri, tmp_path,
                                                                    monkeypatch):
    from collections import Counter

    from mlflow import MlflowClient

    ddp_cfg, ddp_run, ddp_metrics, _ = ddp
    cfg = train_cfg(tmp_path, mlflow_uri, num_workers=2, batch_size=4, strategy="ddp", max_failures=1, **PARITY)
    run_id = new_run(cfg)
    marker = tmp_path / "killed"
    # the worker SIGKILLs its own process right after `step`; the last checkpoint is at step 4
    monkeypatch.setenv("OWNLM_FAULT_KILL_WORKER", f"{rank}:{step}:{marker}")
    metrics = run_train(cfg, tokens, tmp_path / "model", tmp_path / "runs", "killed", run_id=run_id)
    assert marker.read_text().startswith(f"rank {rank} killed itself after step {step}")
    logged = Counter(m.step for m in MlflowClient(cfg.tracking_uri).get_metric_history(run_id, "train/loss"))
    # the first attempt logged steps 1 .. step-1 (it died before logging `step`), the restart 5 .. 8: resumed at 4
    assert logged == {s: 1 + (5 <= s < step) for s in range(1, 9)}
    assert metrics["step"] == ddp_metrics["step"] == 8
    assert metrics["train/loss"] == pytest.approx(ddp_metrics["train/loss"], rel=1e-6)
    assert metrics["val/loss"] == pytest.approx(ddp_metrics["val/loss"], rel=1e-6)
    resumed, straight = curve(cfg, run_id), curve(ddp_cfg, ddp_run)
    for s in range(5, 9):
        assert resumed[s] == pytest.approx(straight[s], rel=1e-6), s
    assert "resuming from step 4, attempt 2 of 2" in (tmp_path / "runs" / "killed" / "failures.log").read_text()


# ---- what `ownlm train` prints when a worker is lost: one line per event, no traceback

CLI_SETTINGS = ["model.preset=debug", f"tokenize.seq_len={SEQ_LEN}", "tracking.enabled=false", "train.num_workers=2",
                "train.batch_size=4", "train.strategy=ddp", "train.warmup_steps=2", "train.lr=3e-3",
                *[f"train.{k}={v}" for k, v in PARITY.items()]]
WORKER = r"worker (\d) \(pid \d+ on \S+\) lost: its process was killed \(SIGKILL, the OOM killer\) or crashed"


# A forwarded line starts with its process: "(RayTrainWorker pid=12146)", colored; the driver's own have none.
FORWARDED = re.compile(r"^(?:\x1b\[[\d;]*m)?\((\w+) pid=")


def train_output(out: str) -> str:
    """What the driver, Ray Train's controller and workers and the raylet printed. Ray Train's helper actors
    are left out: on a host with a second Ray instance (a shared CI machine) its PlacementGroupCleaner finds
    two clusters for the state API and its monitor thread dies with a traceback, in every run."""
    return "\n".join(line for line in out.splitlines()
                     if not (m := FORWARDED.match(line)) or m[1] in ("TrainController", "RayTrainWorker"))


def ownlm_train(ray_session, tokens, root, kill: str, *settings: str):
    """`ownlm train` in a subprocess on the session's Ray (its driver prints what the workers and Ray Train's
    controller print, as for a user), with a worker that SIGKILLs itself: (returncode, stdout + stderr)."""
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "pipeline.cli", "train", "--data", str(tokens), "--output", str(root / "model"),
            "--root", str(root), "--set", f"cluster.address={ray_session.get_runtime_context().gcs_address}",
            *[x for kv in [*CLI_SETTINGS, *settings] for x in ("--set", kv)]]
    proc = subprocess.run(args, env={**os.environ, "OWNLM_FAULT_KILL_WORKER": f"{kill}:{root / 'killed'}"},
                          capture_output=True, text=True, timeout=400)
    return proc.returncode, train_output(proc.stdout + proc.stderr)


def test_a_recovered_worker_loss_is_one_line(ray_session, tokens, ddp, tmp_path):
    from pipeline.packed import PackedSplit
    from pipeline.train.loop import validate

    # rank 0, which writes the DDP checkpoint, lost one step after it
    code, out = ownlm_train(ray_session, tokens, tmp_path, "0:5", "train.max_failures=1")
    assert code == 0, out[-5000:]
    assert "Traceback" not in out, out
    events = [line for line in out.splitlines() if " lost: " in line]
    assert len(events) == 1, out
    event = re.search(WORKER + r"; resuming from step 4, attempt 2 of 2; details in (\S+)$", events[0])
    assert event and event[1] == "0", events[0]
    assert "WorkerHealthCheckFailedError" in Path(event[2]).read_text()
    assert "resuming at step 4 of 8" in out
    # and the run restarted from step 4 ends with the weights of the uninterrupted run
    assert load_train_state(tmp_path / "model")["step"] == 8
    model, _ = load_model(tmp_path / "model")
    val = validate(model, PackedSplit(tokens, "val"), batch_size=8, max_batches=2, rank=0, world=1,
                   device=torch.device("cpu"))
    assert val == pytest.approx(ddp[2]["val/loss"], rel=1e-6)


def test_a_final_worker_loss_is_one_error_line(ray_session, tokens, tmp_path):
    # rank 1 lost right after the step-4 checkpoint, with no retries: the run ends, resumable from step 4
    code, out = ownlm_train(ray_session, tokens, tmp_path, "1:5", "train.max_failures=0")
    assert code == 1, out[-5000:]
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if "ownlm: error:" in line]
    assert len(errors) == 1 and not [line for line in out.splitlines() if " lost: " in line and line not in errors]
    error = re.fullmatch(r"ownlm: error: training failed: " + WORKER + r"; no retries left \(train.max_failures=0\); "
                         r"rerun to resume from step 4 \(run \S+ in \S+\); details in (\S+)", errors[0])
    assert error and error[1] == "1", errors[0]
    assert "WorkerHealthCheckFailedError" in Path(error[2]).read_text()


def test_a_rerun_with_the_same_run_name_continues_from_its_last_checkpoint(tokens, ddp):
    _, _, metrics, root = ddp
    # `ownlm train` names the run by its stage fingerprint; the same name finds the run in storage
    cfg = train_cfg(root, num_workers=2, batch_size=4, **{**PARITY, "max_steps": 14, "final_checkpoint": "last"})
    more = run_train(cfg, tokens, root / "model-more", root / "runs", "ddp")
    state = load_train_state(root / "model-more")
    assert more["step"] == more["final/step"] == state["step"] == 14
    assert state["position"] == {"epoch": 0, "row": 14 * 2 * 4} and len(state["rng"]) == 2
    assert more["val/loss"] < metrics["val/loss"]
    model, mcfg = load_model(root / "model-more")
    # a random model is near log(vocab); the trained one is far below
    assert more["val/loss"] < torch.log(torch.tensor(float(mcfg.vocab_size))).item() - 1.0

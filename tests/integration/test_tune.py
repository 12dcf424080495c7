"""Ray Tune end to end on the tests' shared Ray instance: every trial a Ray Train run of the debug
model on tiny data. One ASHA search (4 trials, two learning rates far too high) serves several
assertions; PBT runs 2 trials."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline import cli
from tests.pipeline.test_train_loop import SEQ_LEN, write_packed_tokens

pytestmark = pytest.mark.integration

GOOD_LRS, BAD_LRS = (3.0e-3, 1.0e-2), (30.0, 100.0)
# Two trials at a time: the good learning rates come first in the grid, so ASHA's first rung holds
# their values when the bad ones report.
COMMON = ["model.preset=debug", f"tokenize.seq_len={SEQ_LEN}", "train.num_workers=1", "train.batch_size=8",
          "train.warmup_steps=2", "train.eval_every=10", "train.eval_batches=2", "train.log_every=10",
          "train.checkpoint_every=1000", "tune.num_samples=1", "tune.max_concurrent_trials=2"]


@pytest.fixture(scope="module")
def tokens(ray_session, tmp_path_factory):
    return write_packed_tokens(tmp_path_factory.mktemp("tune-tok"))


def tune_args(root: Path, tokens: Path, *sets: str) -> list[str]:
    argv = ["tune", "--root", str(root), "--data", str(tokens), "--set", "tracking.enabled=true",
            "--set", f"tracking.uri=sqlite:///{root}/mlflow.db"]
    for s in (*COMMON, *sets):
        argv += ["--set", s]
    return argv


@pytest.fixture(scope="module")
def asha(tokens, tmp_path_factory):
    root = tmp_path_factory.mktemp("asha")
    lrs = ", ".join(str(x) for x in GOOD_LRS + BAD_LRS)
    argv = tune_args(root, tokens, "tune.max_steps=60", "tune.scheduler=asha",
                     f"tune.search_space={{train.lr: {{grid: [{lrs}]}}}}")
    assert cli.main(argv) == 0
    results = json.loads((root / "tune" / "results.json").read_text())
    return root, results, {t["config"]["train.lr"]: t for t in results["trials"]}


def test_asha_stops_the_bad_learning_rates_early_and_the_best_trial_wins(asha):
    _, results, by_lr = asha
    assert len(results["trials"]) == 4
    best = min((t for t in results["trials"] if t["metric"] is not None), key=lambda t: t["metric"])
    assert results["best_trial"] == best["trial_id"] and best["config"]["train.lr"] in GOOD_LRS
    assert best["status"] == "finished" and best["steps"] == 60
    for lr in BAD_LRS:  # stopped at a rung or failed on a non-finite loss: either way far fewer steps
        assert by_lr[lr]["steps"] < best["steps"], by_lr[lr]
        assert by_lr[lr]["status"] in ("stopped", "failed")
    for t in results["trials"]:
        assert set(t) >= {"trial_id", "config", "metric", "iterations", "steps", "status", "checkpoint"}
        assert t["iterations"] == len(t["curve"]) >= 1


def test_best_yaml_is_a_config_that_ownlm_config_and_train_accept(asha, capsys):
    root, results, _ = asha
    best_yaml = root / "tune" / "best.yaml"
    capsys.readouterr()
    assert cli.main(["config", "--config", str(best_yaml)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == results["best_config"]["train.lr"]
    assert printed["tune"]["enabled"] is False  # `ownlm run --config best.yaml` trains it, no new search
    assert printed["train"]["max_steps"] == 300  # the final budget is train.max_steps, not the trials' 60
    assert (root / "tune" / "tune.png").stat().st_size > 10_000


def test_mlflow_holds_the_search_and_one_nested_run_per_trial(asha):
    from mlflow import MlflowClient

    root, results, _ = asha
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(r for r in runs if r.data.tags.get("ownlm.stage") == "tune")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["ownlm.trial_id"] for r in children) == sorted(t["trial_id"] for t in results["trials"])
    assert parent.data.tags["ownlm.best_trial"] == results["best_trial"]
    best = next(r for r in children if r.data.tags["ownlm.trial_id"] == results["best_trial"])
    assert best.data.tags["ownlm.best"] == "True" and best.info.status == "FINISHED"
    assert float(best.data.params["train.lr"]) == results["best_config"]["train.lr"]
    curve = client.get_metric_history(best.info.run_id, "val/loss")
    assert max(m.step for m in curve) == 60 and len(curve) >= 3
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"results.json", "best.yaml", "tune.png"} <= artifacts


def test_population_based_training_exploits_through_the_train_checkpoint(tokens, tmp_path, capsys):
    # lr 1e-5 barely learns; at the first perturbation it copies the other trial's checkpoint.
    argv = tune_args(tmp_path, tokens, "tune.max_steps=40", "tune.scheduler=pbt", "tune.perturbation_interval=2",
                     "tune.search_space={train.lr: {grid: [1.0e-2, 1.0e-5]}, train.warmup_steps: {randint: [1, 3]}}")
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "tune" / "results.json").read_text())
    exploits = [line for line in out.splitlines() if line.startswith("[tune] PBT: trial")]
    assert exploits, out[-3000:]
    target = exploits[0].split()[3]
    trial = next(t for t in results["trials"] if t["trial_id"] == target)
    assert trial["status"] == "finished" and trial["steps"] == 40
    # After the exploit it continued from the other trial's checkpoint, not from step 0: its MLflow
    # run (one per trial, both generations) logged the first window (step 10) once, and reached the
    # end of the budget. (Its first generation may log one window past the exploit's report, as
    # reports reach Tune asynchronously, so a later step can appear twice.)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = next(r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
               if r.data.tags.get("ownlm.trial_id") == target)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert steps.count(10) == 1 and max(steps) == 40, steps
    runs = sorted(p.name for p in (tmp_path / "tune-runs").glob("*-trials/*") if target in p.name)
    assert any(name.endswith("-g1") for name in runs), runs




def _experiment(root: Path) -> Path | None:
    """Tune's experiment folder of the search under root (beside it: the trials' Train runs, `*-trials`)."""
    return next((p for p in (root / "tune-runs").glob("search-*") if p.is_dir() and not p.name.endswith("-trials")),
                None)


def _ended_in_saved_state(experiment: Path | None) -> set[str]:
    """The trials that Tune's last saved experiment state (what --resume restores) records as ended."""
    ended = set()
    for state in experiment.glob("experiment_state-*.json") if experiment else ():
        try:
            trial_data = json.loads(state.read_text())["trial_data"]
        except (ValueError, KeyError, OSError):  # being rewritten
            continue
        for json_state, _ in trial_data:
            trial = json.loads(json_state)
            if trial.get("status") in ("TERMINATED", "ERROR"):
                ended.add(trial["trial_id"])
    return ended


def _kill_group(process) -> None:
    """SIGTERM to the process and everything it started (its own process group), then SIGKILL."""
    import os
    import signal
    import subprocess
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                continue
    time.sleep(1)
    try:  # nothing of the group is left (the trials' actors are the Ray instance's, which ends them with the job)
        os.killpg(process.pid, 0)
        raise AssertionError(f"processes of the killed search's group {process.pid} are still running")
    except ProcessLookupError:
        pass


def test_resume_after_a_kill_finishes_the_search_without_rerunning_finished_trials(ray_session, tokens, tmp_path):
    """`ownlm tune` as its own process (a driver joining the tests' Ray instance), killed once a
    finished trial is in Tune's saved state; `ownlm tune --resume` then runs only the others:
    the one killed mid-run restarts, the one not yet started starts."""
    import subprocess
    import sys
    import time

    steps = 20  # two reports each (train.eval_every=10)
    argv = tune_args(tmp_path, tokens, f"tune.max_steps={steps}", "tune.scheduler=fifo",
                     "tune.max_concurrent_trials=1", "tune.search_space={train.lr: {grid: [3.0e-3, 1.0e-2, 2.0e-2]}}",
                     f"cluster.address={ray_session.get_runtime_context().gcs_address}")
    command = [sys.executable, "-m", "pipeline.cli", *argv]
    first_log = tmp_path / "first.log"
    with first_log.open("w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, ended_before = time.monotonic() + 180, set()
        while not ended_before and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            ended_before = _ended_in_saved_state(_experiment(tmp_path))
        assert first.poll() is None, "the search ended before the kill: give its trials more steps\n" + \
            first_log.read_text()[-3000:]
        assert ended_before, "no trial ended within 180 s\n" + first_log.read_text()[-3000:]
    finally:
        _kill_group(first)
    assert not (tmp_path / "tune" / "results.json").exists()
    experiment = _experiment(tmp_path)
    reports = {t: (experiment / t / "progress.csv").read_text() for t in ended_before}

    resumed = subprocess.run([*command, "--resume"], check=False, capture_output=True, text=True, timeout=300)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, first_log.read_text()[-2000:] + "\n--- resumed:\n" + out[-3000:]
    assert "[tune] resuming search-" in out
    results = json.loads((tmp_path / "tune" / "results.json").read_text())
    by_id = {t["trial_id"]: t for t in results["trials"]}
    assert len(by_id) == 3 and ended_before < set(by_id)
    assert all(t["status"] == "finished" and t["steps"] == steps for t in by_id.values()), by_id
    for trial_id in ended_before:  # kept, not rerun: same id, same reports, and no line from the resumed run
        assert by_id[trial_id]["iterations"] == steps // 10
        assert (experiment / trial_id / "progress.csv").read_text() == reports[trial_id]
        assert f"[tune] trial {trial_id} " not in out
    for trial_id in set(by_id) - ended_before:
        assert f"[tune] trial {trial_id} finished" in out, out[-3000:]
    assert "(3/3 ended)" in out  # the count includes the trials that ended before the kill
    assert (tmp_path / "tune" / "best.yaml").exists() and results["best_trial"] in by_id


def test_a_search_under_an_s3_root_keeps_the_experiment_and_its_outputs_in_the_bucket(tokens, s3_server, tmp_path,
                                                                                    capsys):
    """`ownlm tune --root s3://...`: Tune's experiment and the trials' Train runs go to the bucket
    through the pyarrow filesystem, results.json, best.yaml and tune.png too. PBT, which copies
    checkpoints between trials through a folder, is refused first in one line naming the setting."""
    import uuid

    from pipeline import storage
    from tests.s3server import BUCKET

    root = f"s3://{BUCKET}/tune-{uuid.uuid4().hex[:8]}"
    argv = ["tune", "--root", root, "--data", str(tokens), "--set", "tracking.enabled=true",
            "--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"]
    for s in (*COMMON, "tune.max_steps=4", "train.eval_every=2", "train.eval_batches=1", "tune.scheduler=fifo",
              "tune.search_space={train.lr: {grid: [3.0e-3]}}"):
        argv += ["--set", s]
    assert cli.main(argv) == 0
    out = storage.resolve(root)
    results = json.loads((out / "tune" / "results.json").read_text())
    assert [t["status"] for t in results["trials"]] == ["finished"]
    assert (out / "tune" / "best.yaml").is_file() and (out / "tune" / "tune.png").is_file()
    runs = [p.name for p in (out / "tune-runs").iterdir()]
    assert any(n.startswith("search-") and not n.endswith("-trials") for n in runs), runs
    assert any(n.endswith("-trials") for n in runs), runs

    capsys.readouterr()
    assert cli.main([*argv, "--set", "tune.scheduler=pbt", "--force"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.storage_path" in err[0] and root in err[0]

"""A real two-node Ray cluster on this machine (`ray start --head` + `ray start --address`, token
authentication on): `ownlm train`, submitted with `ownlm submit` as a Ray Job, joins the cluster through
the job's RAY_ADDRESS, puts one worker on each node and finishes.

The cluster is separate from the session's Ray instance (its own temp dir, ports and token), and
every driver runs in a subprocess: one process can only be connected to one Ray cluster.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.local import LocalCluster, NodeSpec
from model.checkpoint import load_model, load_train_state
from tests.pipeline.test_train_loop import SEQ_LEN, write_packed_tokens

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_ownlm_train_runs_on_two_nodes(tmp_path):
    tokens = write_packed_tokens(tmp_path / "data")
    # one "slot" per node and one per worker: Ray must place the two workers on different nodes
    nodes = [NodeSpec(num_cpus=2, resources={"slot": 1}), NodeSpec(num_cpus=2, resources={"slot": 1})]
    train = [sys.executable, "-m", "pipeline.cli", "train", "--data", str(tokens), "--output", str(tmp_path / "model"),
             "--root", str(tmp_path / "root"), "--set", "model.preset=debug",
             "--set", f"tokenize.seq_len={SEQ_LEN}", "--set", "tracking.enabled=false",
             "--set", "train.num_workers=2", "--set", "train.resources_per_worker={slot: 1}",
             "--set", "train.max_steps=4", "--set", "train.warmup_steps=1", "--set", "train.log_every=2",
             "--set", "train.eval_every=4", "--set", "train.checkpoint_every=4"]
    with LocalCluster(nodes) as cluster:
        node_ids = cluster.node_ids
        assert len(node_ids) == 2
        # token authentication is on: the job API refuses a request without the cluster's token
        assert http_status(cluster.dashboard_url + "/api/jobs/") == 401
        assert http_status(cluster.dashboard_url + "/api/jobs/", token="0" * 64) == 403
        job = subprocess.run([sys.executable, "-m", "pipeline.cli", "submit", "--address", cluster.dashboard_url,
                              "--", *train], env=cluster.env, cwd=REPO, capture_output=True, text=True, timeout=400)
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:] + cluster.logs()
    assert "SUCCEEDED" in job.stdout and "2 cpu worker(s) on 2 node(s)" in job.stdout
    state = load_train_state(tmp_path / "model")
    assert state["step"] == 4
    # rank 0 recorded where every worker ran: one on each node of this cluster
    assert sorted(node for node, _ in state["placement"]) == sorted(node_ids)
    load_model(tmp_path / "model")


def test_a_submitted_training_job_survives_losing_a_worker_node(tmp_path):
    """SIGKILL of the worker node's `ray start` process group (its raylet and the training worker on
    it) after a checkpoint: the elastic run (num_workers 1..2) goes on with the one worker the head
    still holds, from that checkpoint (2 -> 1 workers, the same global batch), and the job succeeds."""
    tokens = write_packed_tokens(tmp_path / "data")
    nodes = [NodeSpec(num_cpus=2, resources={"slot": 1}), NodeSpec(num_cpus=2, resources={"slot": 1})]
    steps = 24
    train = [sys.executable, "-m", "pipeline.cli", "train", "--data", str(tokens), "--output", str(tmp_path / "model"),
             "--root", str(tmp_path / "root"), "--set", "model.preset=debug",
             "--set", f"tokenize.seq_len={SEQ_LEN}", "--set", "tracking.enabled=false",
             "--set", "train.num_workers=1..2", "--set", "train.resources_per_worker={slot: 1}",
             "--set", f"train.max_steps={steps}", "--set", "train.warmup_steps=1", "--set", "train.log_every=4",
             "--set", "train.eval_every=8", "--set", "train.checkpoint_every=8", "--set", "train.max_failures=2"]
    with LocalCluster(nodes) as cluster:
        # every step sleeps a little, so the job is still running when the node goes
        env = {**cluster.env, "OWNLM_FAULT_STEP_DELAY": "1"}
        job = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "submit", "--address", cluster.dashboard_url,
                                "--", *train], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        try:
            deadline = time.monotonic() + 300
            while not list((tmp_path / "root").rglob("checkpoint_*")):
                assert job.poll() is None, job.stdout.read()[-4000:]
                assert time.monotonic() < deadline, "no checkpoint within 300 s" + cluster.logs()
                time.sleep(0.5)
            os.killpg(cluster.pids[1], signal.SIGKILL)  # the worker node: its raylet and every process on it
            out, _ = job.communicate(timeout=600)
        finally:
            if job.poll() is None:
                job.kill()
    assert job.returncode == 0 and "SUCCEEDED" in out, out[-6000:]
    assert "2 cpu worker(s) on 2 node(s)" in out  # it started on both nodes
    assert re.search(r"resuming from step (8|16)\b", out), out[-6000:]
    state = load_train_state(tmp_path / "model")
    assert state["step"] == steps
    assert len(state["placement"]) == 1 and state["placement"][0][0] in cluster.node_ids  # finished on one node


def http_status(url: str, token: str | None = None) -> int:
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code

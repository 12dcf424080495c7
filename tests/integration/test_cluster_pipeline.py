"""The whole pipeline as a Ray Job on a two-node local cluster, its storage root on an S3 server
(moto), logging to `ownlm tracking-server`:
`ownlm submit -- ownlm run --config debug` succeeds, the train workers ran on both nodes
(recorded placement) and so did the tokenize stage's Ray Data tasks, and the server holds the parent run and a nested run per stage, their
artifacts proxied through it.

The suite's longest test (2.6 minutes on an idle 2-core machine: the debug pipeline, a cluster
start and a server start); `pytest -m "not expensive"` leaves it out of a quick local run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.checkpoint import load_train_state
from pipeline.storage import local_copy, resolve
from tests.integration.test_cluster_command import ownlm
from tests.integration.test_cluster_tracking import TrackingServer
from tests.s3server import BUCKET

pytestmark = [pytest.mark.integration, pytest.mark.expensive]


def test_ownlm_run_as_a_job_on_two_nodes_logs_every_stage_to_the_tracking_server(tmp_path, s3_server):
    server = TrackingServer(tmp_path / "tracking")
    state = tmp_path / "cluster.json"
    try:
        up = ownlm("cluster", "up", "--workers", "1", "--cpus-per-node", "3", "--resources", '{"slot": 1}',
                   "--object-store-mb", "300", "--state", str(state))
        assert up.returncode == 0, up.stdout + up.stderr
        info = json.loads(ownlm("cluster", "status", "--json", "--state", str(state)).stdout)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | info["env"]
        root = f"s3://{BUCKET}/cluster-run"  # submit forwards the AWS_* variables the s3_server fixture set
        job = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "submit", "--", sys.executable, "-m", "pipeline.cli", "run",
             "--config", "debug", "--root", root, "--set", f"tracking.uri={server.url}",
             "--set", "train.max_steps=20", "--set", "train.eval_every=20", "--set", "train.checkpoint_every=20",
             "--set", "train.resources_per_worker={slot: 1}"],
            env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=1500)
        assert job.returncode == 0 and "SUCCEEDED" in job.stdout, job.stdout[-5000:] + job.stderr[-3000:]
        assert "2 cpu worker(s) on 2 node(s)" in job.stdout
        assert "tasks ran on 2 node(s)" in job.stdout  # the tokenize stage's Ray Data tasks
        assert resolve(root + "/model/model.safetensors").exists()
        placement = load_train_state(local_copy(resolve(root + "/model")))["placement"]
        assert sorted({node for node, _ in placement}) == sorted(n["node_id"] for n in info["nodes"])

        from mlflow import MlflowClient

        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name("ownlm-debug")
        assert experiment is not None, ([e.name for e in client.search_experiments()], job.stdout[-8000:])
        runs = client.search_runs([experiment.experiment_id])
        parent = [r for r in runs if r.info.run_name == "ownlm run"]
        assert len(parent) == 1 and parent[0].info.status == "FINISHED"
        children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
        assert {"sample", "curate", "tokenizer", "tokenize", "train", "eval"} <= set(children)
        assert all(r.info.status == "FINISHED" for r in children.values())
        assert children["train"].data.metrics["train/loss"] > 0  # logged from a Ray Train worker
        assert children["curate"].info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
        assert client.list_artifacts(children["curate"].info.run_id)
    finally:
        ownlm("cluster", "down", "--state", str(state))
        server.stop()

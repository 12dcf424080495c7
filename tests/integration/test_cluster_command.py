"""`ownlm cluster up --workers 1` / `status --json` / `jobs` / `down` as a user types them: two real
raylets on this machine (token auth on), found again through the state file, and after `down`
not one process of the cluster left (every descendant of its nodes, counted while it ran).

Separate from the session's Ray instance (its own temp dir, ports and token); every command runs
in a subprocess, as a user's shell would.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def ownlm(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


def descendants(pids: list[int]) -> set[int]:
    """The processes below `pids` (and those), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found and Path(f"/proc/{pid}").exists():
            found.add(pid)
            todo += children.get(pid, [])
    return found


def alive(pids: set[int]) -> set[int]:
    def running(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    return {p for p in pids if running(p)}


def test_cluster_up_status_jobs_down_round_trip(tmp_path):
    state = tmp_path / "cluster.json"
    up = ownlm("cluster", "up", "--workers", "1", "--cpus-per-node", "1", "--state", str(state))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "export RAY_ADDRESS=" in up.stdout
        again = ownlm("cluster", "up", "--state", str(state))
        assert again.returncode == 1 and "already up" in again.stderr

        status = ownlm("cluster", "status", "--json", "--state", str(state))
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert set(info) >= {"dashboard_url", "nodes", "env"}
        assert [n["is_head"] for n in info["nodes"]] == [True, False]
        assert all(n["state"] == "ALIVE" and n["resources"]["CPU"] == 1 for n in info["nodes"])
        assert len({n["node_id"] for n in info["nodes"]}) == 2  # two raylets
        env = info["env"]
        assert env["RAY_AUTH_MODE"] == "token" and Path(env["RAY_AUTH_TOKEN_PATH"]).is_file()
        assert info["dashboard_url"].startswith("http://127.0.0.1:")

        # A client with exactly the printed environment reaches the job API; `ownlm jobs` lists what ran.
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | env
        job = ownlm("submit", "--", "echo", "hello-from-the-cluster", env=client_env)
        assert job.returncode == 0 and "hello-from-the-cluster" in job.stdout, job.stdout + job.stderr
        job_id = job.stdout.split("[submit] job ", 1)[1].split(":", 1)[0]
        listed = ownlm("jobs", "list", env=client_env)
        assert job_id in listed.stdout and "SUCCEEDED" in listed.stdout
        logs = ownlm("jobs", "logs", job_id, env=client_env)
        assert "hello-from-the-cluster" in logs.stdout
        assert ownlm("jobs", "logs", "raysubmit_nope", env=client_env).returncode == 1

        nodes = json.loads(state.read_text())["pids"]
        tree = descendants(nodes)
        assert len(tree) > 2 * len(nodes)  # gcs, raylets, dashboard, agents, workers
    finally:
        down = ownlm("cluster", "down", "--state", str(state))
    assert down.returncode == 0, down.stdout + down.stderr
    assert alive(tree) == set(), [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in alive(tree)]
    assert not state.exists() and not Path(info["log_dir"]).exists()
    gone = ownlm("cluster", "status", "--state", str(state))
    assert gone.returncode == 1 and "no cluster is up" in gone.stderr

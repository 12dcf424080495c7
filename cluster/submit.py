"""Send a command to a Ray cluster as a Ray Job, follow its logs, and return how it ended.

    python -m cluster.submit --address http://head:8265 --working-dir . -- \\
        ownlm train --config my.yaml --set cluster.address=auto --set train.storage_path=s3://bucket/runs

The job's driver runs on the head node with the cluster's Python; `--working-dir` uploads
this project (without .git, .venv, outputs and data files) for clusters whose image does
not already hold it. With token authentication on (Ray's default), the token comes from
RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH (or ~/.ray/auth_token) with RAY_AUTH_MODE=token, as for
any Ray client. `ownlm submit` (pipeline/commands/cluster_tools.py) wraps this; it has no Ray
import at module level.
"""
from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Never shipped to the cluster: version control, environments, outputs, bulky data.
EXCLUDES = [".git", ".venv", "venv", "ownlm-out", "**/__pycache__", "*.npy", "*.parquet", "*.safetensors",
            "mlruns", "mlartifacts", "*.db"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass
class JobResult:
    job_id: str
    status: str
    logs: str


def runtime_env(working_dir: str | Path | None = None, env_vars: dict[str, str] | None = None,
                pip: list[str] | None = None) -> dict:
    """The job's runtime environment: the project folder (filtered), environment variables, pip packages."""
    env: dict = {}
    if working_dir is not None:
        env["working_dir"] = str(Path(working_dir).resolve())
        env["excludes"] = list(EXCLUDES)
    if env_vars:
        env["env_vars"] = dict(env_vars)
    if pip:
        env["pip"] = list(pip)
    return env


def job_client(address: str | None = None):
    """Ray's Jobs SDK client for the cluster at `address` (dashboard URL or GCS address; None: RAY_ADDRESS)."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def submit(command: list[str] | str, *, address: str | None = None, working_dir: str | Path | None = None,
           env_vars: dict[str, str] | None = None, pip: list[str] | None = None, wait: bool = True,
           timeout_s: float | None = None, echo=print) -> JobResult:
    """Submit `command` as a Ray Job; with wait, print its logs as they come and wait for the end.

    address: the cluster's dashboard (http://head:8265) or GCS address; None uses RAY_ADDRESS.
    """
    entrypoint = command if isinstance(command, str) else shlex.join(command)
    client = job_client(address)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(working_dir, env_vars, pip))
    echo(f"[submit] job {job_id}: {entrypoint}")
    if not wait:
        return JobResult(job_id, str(client.get_job_status(job_id)), "")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    shown = 0
    while True:
        status = str(client.get_job_status(job_id)).split(".")[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            echo(logs[shown:].rstrip("\n"))
            shown = len(logs)
        if status in TERMINAL:
            echo(f"[submit] job {job_id} {status}")
            return JobResult(job_id, status, logs)
        if deadline is not None and time.monotonic() > deadline:
            client.stop_job(job_id)
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s:.0f}s; stopped it")
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cluster.submit", description=__doc__.splitlines()[0])
    ap.add_argument("--address", help="dashboard URL (http://head:8265) or GCS address; default: RAY_ADDRESS")
    ap.add_argument("--working-dir", help="upload this folder as the job's working directory")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment variable for the job (repeatable)")
    ap.add_argument("--pip", action="append", default=[], metavar="PACKAGE",
                    help="pip package for the job (repeatable)")
    ap.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    ap.add_argument("--timeout", type=float, help="stop the job after this many seconds")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run on the cluster")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command after --, e.g. -- ownlm train --set cluster.address=auto")
    env_vars = dict(item.split("=", 1) for item in args.env)
    result = submit(command, address=args.address, working_dir=args.working_dir, env_vars=env_vars,
                    pip=args.pip or None, wait=not args.no_wait, timeout_s=args.timeout)
    return 0 if args.no_wait or result.status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())

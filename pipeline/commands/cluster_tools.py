"""`ownlm submit`: run an ownlm command on a Ray cluster as a Ray Job and follow it; `ownlm jobs
list|logs JOB|stop JOB`: the cluster's jobs through the same Jobs SDK.

    ownlm submit --address http://head:8265 --working-dir . -- ownlm train --config my.yaml
    ownlm jobs list

The body is cluster/submit.py; this adds the check a user wants before anything is sent: an
ownlm command's config is loaded and validated here, so a typo fails in a second on the
laptop instead of minutes later on the cluster. Inside the job, ownlm joins the cluster
through the RAY_ADDRESS that Ray sets for every job driver (pipeline/raysession.py).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from cluster.submit import job_client, submit
from model.errors import UsageError, UserError
from pipeline.commands.command import Command, Invocation
from pipeline.storage import worker_env as storage_env


def ownlm_arguments(command: list[str]) -> list[str] | None:
    """The arguments of an ownlm invocation (`ownlm ...` or `python -m pipeline.cli ...`), else None."""
    if command and Path(command[0]).name == "ownlm":
        return command[1:]
    if len(command) >= 3 and command[1:3] == ["-m", "pipeline.cli"]:
        return command[3:]
    return None


# The tracking server's address and login travel with the job, so that the driver and every Ray
# worker on the cluster log where this shell would (the job API is behind the cluster's token).
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def forwarded_tracking_env(environ=os.environ) -> dict[str, str]:
    return {k: environ[k] for k in FORWARDED_ENV if environ.get(k)}


def cluster_address(command: str, given: str | None) -> str:
    address = given or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UsageError(f"{command}: no cluster: give --address http://head:8265 or set RAY_ADDRESS "
                         "(`ownlm cluster status` prints it for the local cluster)")
    return address


def submit_command(inv: Invocation) -> int:
    args = inv.args
    command = args.job[1:] if args.job[:1] == ["--"] else args.job
    if not command:
        raise UsageError("submit: give the command after --, e.g. ownlm submit --address http://head:8265 -- "
                         "ownlm train")
    inner = ownlm_arguments(command)
    if inner is not None:
        if inner[:1] == ["submit"]:
            raise UsageError("submit: not submitted: the job would submit another job: give the command to run "
                             "on the cluster")
        try:
            inv.check_command_line(inner)
        except UsageError as e:
            raise UsageError(f"submit: not submitted: {e}") from e
    address = cluster_address("submit", args.address)
    bad_env = [item for item in args.env if "=" not in item]
    if bad_env:
        raise UsageError(f"submit: --env takes KEY=VALUE, got {bad_env}")
    # The storage variables too: a job whose root is s3://... must reach the same bucket as this shell.
    env_vars = {**forwarded_tracking_env(), **storage_env(), **dict(item.split("=", 1) for item in args.env)}
    try:
        result = submit(command, address=address, working_dir=args.working_dir, env_vars=env_vars,
                        pip=args.pip or None, wait=not args.no_wait, timeout_s=args.timeout)
    except ConnectionError as e:
        raise UserError(f"submit: cannot reach the cluster at {address}: {e}") from e
    return 0 if args.no_wait or result.status == "SUCCEEDED" else 1


def _submit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="the cluster's dashboard URL, e.g. http://head:8265 (default: RAY_ADDRESS)")
    p.add_argument("--working-dir", metavar="DIR", help="upload this folder as the job's working directory "
                                                        "(without .git, .venv, outputs and data files)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the job (repeatable); MLFLOW_TRACKING_URI, _USERNAME and "
                        "_PASSWORD and the AWS_* storage variables go along from this shell when set")
    p.add_argument("--pip", action="append", default=[], metavar="PACKAGE",
                   help="pip package to install for the job (repeatable)")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    p.add_argument("--timeout", type=float, metavar="S", help="stop the job after this many seconds")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="the command to run on the cluster, after --")


SUBMIT = Command(
    name="submit", help="run an ownlm command on a Ray cluster as a Ray Job", run=submit_command,
    arguments=_submit_arguments,
    description="Submit COMMAND as a Ray Job, stream its logs and exit with its outcome (0 when it succeeded). An "
                "ownlm COMMAND has its config checked here first. The cluster needs ownlm installed, or "
                "--working-dir . with --pip to ship it. With token authentication (Ray's default) set "
                "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token).",
    epilog="Example: ownlm submit --address http://head:8265 -- ownlm train --config my.yaml "
           "--set train.num_workers=8 --set train.use_gpu=true")


# ---------------------------------------------------------------- ownlm jobs


def jobs_command(inv: Invocation) -> int:
    args = inv.args
    address = cluster_address("jobs", args.address)
    try:
        client = job_client(address)
        if args.action == "list":
            print_jobs(client.list_jobs())
        elif args.action == "logs":
            print(_known(client, args.job, lambda: client.get_job_logs(args.job)), end="")
        else:
            stopped = _known(client, args.job, lambda: client.stop_job(args.job))
            print(f"ownlm: job {args.job} " + ("stopping" if stopped else "had already ended"))
    except ConnectionError as e:
        raise UserError(f"jobs: cannot reach the cluster at {address}: {e}") from e
    return 0


def _known(client, job_id: str, call):
    """call(), or a UserError when the cluster has no job `job_id` (the SDK's error is a RuntimeError)."""
    try:
        return call()
    except RuntimeError as e:
        if "does not exist" in str(e) or "404" in str(e):
            ids = [j.submission_id or j.job_id for j in client.list_jobs()]
            raise UserError(f"jobs: no job {job_id} on this cluster (`ownlm jobs list`: {', '.join(ids) or 'none'})"
                            ) from e
        raise


def print_jobs(jobs) -> None:
    import time

    if not jobs:
        print("no jobs")
        return
    print(f"{'JOB':<28}  {'STATUS':<9}  {'STARTED':<19}  ENTRYPOINT")
    for job in sorted(jobs, key=lambda j: j.start_time or 0):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.start_time / 1000)) if job.start_time else "-"
        print(f"{job.submission_id or job.job_id:<28}  {str(job.status).split('.')[-1]:<9}  {started:<19}  "
              f"{job.entrypoint}")


def _jobs_arguments(p: argparse.ArgumentParser) -> None:
    address = argparse.ArgumentParser(add_help=False)
    address.add_argument("--address", help="the cluster's dashboard URL or GCS address (default: RAY_ADDRESS)")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", parents=[address], help="every job: id, status, start, entrypoint")
    sub.add_parser("logs", parents=[address], help="a job's driver output so far").add_argument("job", metavar="JOB")
    sub.add_parser("stop", parents=[address], help="stop a running job").add_argument("job", metavar="JOB")


JOBS = Command(
    name="jobs", help="the Ray Jobs on a cluster: list, logs JOB, stop JOB", run=jobs_command, arguments=_jobs_arguments,
    description="Ray's Jobs SDK on the cluster at --address (or RAY_ADDRESS): `list` every job, `logs JOB` its "
                "driver output, `stop JOB` it. JOB is the id `ownlm submit` printed (raysubmit_...). With token "
                "authentication, the token variables as for `ownlm submit`.")

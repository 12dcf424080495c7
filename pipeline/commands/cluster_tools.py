"""`ownlm submit`: run an ownlm command on a Ray cluster as a Ray Job and follow it.

    ownlm submit --address http://head:8265 --working-dir . -- ownlm train --config my.yaml

The body is cluster/submit.py; this adds the check a user wants before anything is sent: an
ownlm command's config is loaded and validated here, so a typo fails in a second on the
laptop instead of minutes later on the cluster. Inside the job, ownlm joins the cluster
through the RAY_ADDRESS that Ray sets for every job driver (pipeline/raysession.py).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from cluster.submit import submit
from model.errors import UsageError, UserError
from pipeline.commands.command import Command, Invocation


def ownlm_arguments(command: list[str]) -> list[str] | None:
    """The arguments of an ownlm invocation (`ownlm ...` or `python -m pipeline.cli ...`), else None."""
    if command and Path(command[0]).name == "ownlm":
        return command[1:]
    if len(command) >= 3 and command[1:3] == ["-m", "pipeline.cli"]:
        return command[3:]
    return None


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
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UsageError("submit: no cluster: give --address http://head:8265 or set RAY_ADDRESS")
    bad_env = [item for item in args.env if "=" not in item]
    if bad_env:
        raise UsageError(f"submit: --env takes KEY=VALUE, got {bad_env}")
    env_vars = dict(item.split("=", 1) for item in args.env)
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
                   help="environment variable for the job (repeatable)")
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

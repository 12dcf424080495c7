"""`ownlm promote [--version N | --alias challenger] [--force]`: the gate on the command line. Exit
status 0 when `champion` moved, 3 when the gate refused (the alias stays where it was)."""
from __future__ import annotations

import argparse

from model.errors import UsageError
from pipeline.commands.command import Command, Invocation
from pipeline.options import ConfigFlag, PathFlag, comma_list
from pipeline.registry.promote import REFUSED, promote
from pipeline.registry.stage import require_tracking
from pipeline.tracking import Tracker
from pipeline.tracking.registry import CHALLENGER, Registry

def promote_command(inv: Invocation) -> int:
    args, cfg = inv.args, inv.cfg
    require_tracking(cfg)
    if args.version is not None and args.alias is not None:
        raise UsageError("give --version or --alias, not both")
    if args.reason and not args.force:
        raise UsageError("--reason goes with --force (it says why the gate was overridden)")
    registry = Registry(cfg)
    candidate = (registry.version(number=args.version) if args.version is not None
                 else registry.version(alias=args.alias or CHALLENGER))
    decision = promote(cfg, inv.layout, candidate, force=args.force, reason=args.reason, registry=registry,
                       tracker=Tracker(cfg))
    return 0 if decision.promoted else REFUSED


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", type=int, metavar="N", help="the candidate: this version number")
    p.add_argument("--alias", metavar="NAME", help=f"the candidate: the version this alias names (default: {CHALLENGER})")
    p.add_argument("--force", action="store_true", help="move champion even if a rule fails (recorded in a tag)")
    p.add_argument("--reason", metavar="TEXT", help="why --force overrides the gate (recorded in a tag)")


PROMOTE = Command(
    name="promote", help="gate a candidate version against the champion and promote it", run=promote_command,
    arguments=_arguments,
    flags=(PathFlag("--data", "tokens", "packed tokens both sides are scored on (default: <root>/tokens)"),
           ConfigFlag("--tasks", "eval.tasks", type=comma_list,
                      help="shorthand for --set eval.tasks=... (comma-separated)"),
           ConfigFlag("--data-dir", "eval.data_dir"), ConfigFlag("--limit", "eval.limit", type=int)),
    description="Evaluate the candidate and the champion in one run on the same tasks and data, print the "
                "table (metric, champion, candidate, rule, result) and move the `champion` alias only if every "
                "rule in gate.rules passes; otherwise exit 3 and leave it. --force moves it anyway and records "
                "who and why. The decision is an MLflow run of its own.",
    epilog="Exit status: 0 promoted, 3 refused by the gate, 2 bad usage (an unknown version or alias, a rule "
           "on a metric no task reports).")

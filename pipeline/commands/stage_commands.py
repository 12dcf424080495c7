"""`ownlm run`, one command per registered stage, and `ownlm config`.

A stage command without path flags works in the storage root like `ownlm run` (skipping the
stage when it is unchanged). Given paths (`ownlm tokenize --input DIR --output DIR`), it runs
on exactly those, every time; a stage may do something else then (`Stage.direct`).
"""
from __future__ import annotations

import argparse
import functools

from pipeline.commands.command import Command, Invocation
from pipeline.config import dump_config
from pipeline.run import run_pipeline
from pipeline.stage import Context, Stage
from pipeline.stages import NAMES, STAGES
from pipeline.tracking import Tracker


def run_command(inv: Invocation) -> int:
    print_summary(run_pipeline(inv.cfg, from_stage=inv.args.from_stage, layout=inv.layout))
    return 0


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_stage", choices=NAMES, metavar="STAGE",
                        help=f"force this stage and every later one to run again ({', '.join(NAMES)})")


RUN = Command(
    name="run", help="the whole pipeline, skipping finished stages", run=run_command, arguments=_run_arguments,
    description="Run every stage in order; stages whose inputs and config are unchanged since their last run "
                "are skipped.")


def stage_command(stage: Stage) -> Command:
    """The `ownlm <stage>` command of a registered stage."""
    return Command(name=stage.name, help=stage.help, run=functools.partial(run_one_stage, stage),
                   arguments=_force_argument, flags=stage.flags)


def _force_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="run even if unchanged since the last run")


def run_one_stage(stage: Stage, inv: Invocation) -> int:
    if inv.explicit and stage.direct is not None:
        stage.direct(Context(inv.cfg, inv.layout, Tracker(inv.cfg, enabled=False)))
        return 0
    if inv.explicit:
        result = run_pipeline(inv.cfg, only=[stage.name], layout=inv.layout, direct=True)
    else:
        result = run_pipeline(inv.cfg, from_stage=stage.name if inv.args.force else None, only=[stage.name],
                              layout=inv.layout)
    print_summary(result)
    return 0


def print_summary(result: dict) -> None:
    ran = ", ".join(result["ran"]) or "nothing (all stages unchanged)"
    print(f"\nownlm: ran {ran}. Output in {', '.join(result['outputs']) or result['layout'].root}")
    if result.get("mlflow_ui"):
        print(f"See runs, metrics and artifacts in MLflow:\n    {result['mlflow_ui']}")


def config_command(inv: Invocation) -> int:
    print(dump_config(inv.cfg), end="")
    return 0


CONFIG = Command(name="config", help="print the resolved config (after --set and --root)", run=config_command)

STAGE_COMMANDS: tuple[Command, ...] = tuple(stage_command(s) for s in STAGES)

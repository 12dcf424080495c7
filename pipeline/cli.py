"""The `ownlm` command: one table of commands, the parser built from it, and one way to report
a mistake.

`COMMANDS` maps every command name to its record (pipeline/commands/command.py): `run`, one
command per registered stage (pipeline/stages.py), `config`, and the tools. Each command's
flags that set config keys or move layout locations are declared as data (pipeline/options.py)
and resolved here, so no handler decodes flags itself. A `UserError` raised anywhere becomes
one line on stderr and its exit code (2: bad usage or config; 1: bad input or a failed run).
"""
from __future__ import annotations

import argparse
import sys
from importlib import metadata

from model.errors import UsageError, UserError
from pipeline import console
from pipeline.commands.cluster_tools import JOBS, SUBMIT
from pipeline.commands.command import Command, Invocation
from pipeline.commands.eval_tools import ARENA, CONVERSATIONS, HUMANEVAL, LM_EVAL
from pipeline.commands.local_cluster import CLUSTER
from pipeline.commands.model_tools import CHAT, EMBED, EXPORT, IMPORT
from pipeline.commands.monitor_tools import MONITOR
from pipeline.commands.registry_tools import PROMOTE
from pipeline.commands.stage_commands import CONFIG, RUN, STAGE_COMMANDS
from pipeline.commands.tracking_tools import TRACKING_SERVER
from pipeline.config import Config, ConfigError, load_config
from pipeline.options import ConfigFlag, PathFlag
from pipeline.serve.command import SERVE
from pipeline.stages import layout_for
from pipeline.tracking import git_commit
from pipeline.tracking.registry import resolve_checkpoint

COMMANDS: dict[str, Command] = {c.name: c for c in (
    RUN, *STAGE_COMMANDS, PROMOTE, MONITOR, CONFIG, EMBED, CHAT, EXPORT, IMPORT, LM_EVAL, HUMANEVAL, CONVERSATIONS,
    ARENA, SUBMIT, JOBS, CLUSTER, SERVE, TRACKING_SERVER,
)}


def common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE",
                   help="pipeline YAML, or the name of a bundled preset (default: quickstart)")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one config value (repeatable), e.g. --set train.max_steps=50")
    p.add_argument("--root", metavar="DIR", help="put every artifact and the MLflow store under DIR")
    p.add_argument("--verbose", action="store_true",
                   help="also show the libraries' own INFO lines (Ray Data's plans, MLflow's set-up)")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="ownlm", description="Build a private language model end to end on Ray.",
        epilog="Every command takes --config, --set and --root. Start with: ownlm run")
    parser.add_argument("--version", action="version", version=f"ownlm {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, parents=[common], help=command.help,
                           description=command.description or command.help, epilog=command.epilog)
        command.arguments(p)
        for flag in command.flags:
            flag.add_to(p)
    return parser


def version() -> str:
    """The installed package's version, and the commit of a source checkout."""
    try:
        text = metadata.version("ownlm")
    except metadata.PackageNotFoundError:
        text = "(not installed)"
    commit = git_commit()
    return f"{text} ({commit[:12]})" if commit else text


def load(command: Command, args: argparse.Namespace) -> Config:
    """The config of a parsed command line: its file, `--set`, the command's config flags, `--root`."""
    values = {}
    for flag in command.flags:
        if isinstance(flag, ConfigFlag):
            values.update(flag.config_values(args))
    return load_config(args.config, [*command.config_overrides, *args.overrides], root=args.root, values=values)


def invocation(command: Command, args: argparse.Namespace) -> Invocation:
    cfg = load(command, args)
    # A checkpoint flag may name a registered version (models:/NAME@ALIAS): resolved here, once, for every command.
    paths = {f.location: resolve_checkpoint(cfg, f.given(args)) for f in command.flags
             if isinstance(f, PathFlag) and f.given(args)}
    explicit = bool(paths) or any(f.given(args) is not None for f in command.flags
                                  if isinstance(f, ConfigFlag) and f.explicit)
    return Invocation(command, args, cfg, layout_for(cfg.root).with_paths(**paths), explicit, check_command_line)


def check_command_line(argv: list[str]) -> None:
    """Parse and load an `ownlm` argument list as `main` would; a UsageError says what is wrong."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # argparse has printed what is wrong
        raise UsageError("the ownlm command does not parse (see above)") from None
    load(COMMANDS[args.command], args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    console.set_verbose(args.verbose)
    try:
        return command.run(invocation(command, args))
    except KeyboardInterrupt:
        print("\nownlm: interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        return 130
    except UserError as e:
        # A config's problems are a list that names its file; anything else is one line.
        print(f"ownlm: {e}" if isinstance(e, ConfigError) else f"ownlm: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""What a command of the `ownlm` CLI is: one record per command, listed in the one command
table (pipeline/cli.py), and what its handler gets when it runs."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from pipeline.config import Config
from pipeline.layout import Layout
from pipeline.options import Flag


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For a command whose only options are its flags."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    """One line for `ownlm --help`."""
    run: Callable[["Invocation"], int]
    """The handler: returns the exit code. A UserError it raises becomes one line on stderr."""
    description: str | None = None
    """The command's own `--help` text (default: `help`)."""
    epilog: str | None = None
    arguments: Callable[[argparse.ArgumentParser], None] = no_arguments
    """Adds the command's own arguments, those that are not config keys or layout paths."""
    flags: tuple[Flag, ...] = ()
    """Flags that set config keys or move layout locations (pipeline/options.py), after `arguments`."""
    config_overrides: tuple[str, ...] = ()
    """`--set`-style overrides this command always applies, before the user's own `--set`s. (Not
    argparse defaults: every command's `--set` is one shared action, so a default set on one
    subparser would become every command's.)"""


@dataclass(frozen=True)
class Invocation:
    """One run of a command: its parsed arguments, the config they resolve to, the storage layout
    (with the locations its path flags moved), and the CLI's own check of another command line."""

    command: Command
    args: argparse.Namespace
    cfg: Config
    layout: Layout
    explicit: bool
    """A path flag, or a flag that names the inputs, was given (a stage command then runs on
    exactly those, and keeps no stage record)."""
    check_command_line: Callable[[list[str]], None]
    """Raises a UsageError when an `ownlm ...` argument list would not parse or load its config
    (for `ownlm submit`, which checks a job before sending it)."""

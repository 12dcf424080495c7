"""What a stage is: one record per stage, declared by the stage's own module and collected by
the registry (pipeline/stages.py). `ownlm run`, `--from`, the fingerprints, the layout and every
stage's command line are built from these records; docs/architecture.md shows how to add one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from pipeline.config import Config
from pipeline.layout import Layout, Location
from pipeline.options import ConfigFlag, Flag, PathFlag
from pipeline.tracking import Tracker


@dataclass
class Context:
    """What a stage's action gets."""

    cfg: Config
    layout: Layout
    tracker: Tracker
    fingerprint: str = ""
    """The running stage's fingerprint (set by the runner)."""
    forced: bool = False
    """The stage runs because the user forced it (start over rather than resume)."""
    planned: Sequence[str] = field(default_factory=tuple)
    """The stages this invocation is about to run, in order (for a stage's `check`)."""


def _always(cfg: Config) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    """One line for `ownlm --help` and the stage's own `--help`."""
    action: Callable[[Context], dict]
    """Does the work; returns a JSON-safe summary (metrics are logged inside)."""
    upstream: tuple[str, ...] = ()
    """Stages whose outputs this one reads: their fingerprints are part of this one's."""
    sections: tuple[str, ...] = ()
    """Config sections whose values change this stage's result (part of its fingerprint)."""
    locations: tuple[Location, ...] = ()
    """The folders this stage writes, added to the layout."""
    outputs: tuple[tuple[str, str], ...] = ()
    """(location, file) pairs that exist once the stage has finished."""
    flags: tuple[Flag, ...] = ()
    """The stage command's own flags, in the order `--help` lists them."""
    fingerprint_inputs: Callable[[Context], dict] | None = None
    """More of what the result depends on, beyond sections and upstream stages (the raw files)."""
    check: Callable[[Context], None] | None = None
    """Runs before any stage starts, so that a bad input fails before Ray does (raises a UserError)."""
    direct: Callable[[Context], dict] | None = None
    """What the command does when given explicit inputs, where that is not the action itself
    (`ownlm generate --prompt TEXT` streams a completion and records nothing)."""
    uses_ray: bool = False
    """Ray is started (or joined) before the stage runs."""
    headline: bool = False
    """Its numeric summary metrics also go on the parent run of `ownlm run`."""
    enabled: Callable[[Config], bool] = _always
    """Whether `ownlm run` includes the stage under this config."""

    def output_paths(self, layout: Layout) -> list[Path]:
        return [layout.path(location) / name for location, name in self.outputs]

    @property
    def path_flags(self) -> tuple[PathFlag, ...]:
        return tuple(f for f in self.flags if isinstance(f, PathFlag))

    @property
    def config_flags(self) -> tuple[ConfigFlag, ...]:
        return tuple(f for f in self.flags if isinstance(f, ConfigFlag))

"""Command-line flags that the stage and command records declare, and the CLI turns into argparse
options. Two kinds, so that no handler decodes flags by hand:

- `PathFlag` moves one layout location (`ownlm train --data DIR` moves `tokens`);
- `ConfigFlag` sets config keys, a typed shorthand for `--set` (`--vocab-size 2048` sets
  `tokenizer.vocab_size`), validated with the rest of the config.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class PathFlag:
    """A flag naming the folder of one layout location. On a stage command, giving any path flag
    runs the stage on exactly those paths, every time, and keeps no stage record."""

    flag: str
    location: str
    help: str
    metavar: str = "DIR"

    @property
    def dest(self) -> str:
        return _dest(self.flag)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(self.flag, dest=self.dest, metavar=self.metavar, help=self.help)

    def given(self, args: argparse.Namespace) -> str | None:
        return getattr(args, self.dest, None)


@dataclass(frozen=True)
class ConfigFlag:
    """A flag that sets config keys: `key` to the parsed value, or the keys `values` returns."""

    flag: str
    key: str | None = None
    help: str | None = None
    type: Callable[[str], Any] = str
    metavar: str | None = None
    repeat: bool = False
    """The flag may be given several times; its value is then the list."""
    values: Callable[[Any], dict[str, Any]] | None = None
    """For a flag that sets several keys or turns its value into another shape (`curate --input`)."""
    explicit: bool = False
    """On a stage command, giving it counts as naming the inputs, as a path flag does
    (`ownlm generate --prompt TEXT` generates from that prompt instead of running the stage)."""
    switch: bool = False
    """A flag without a value that sets its (boolean) key to true."""

    def __post_init__(self):
        if (self.key is None) == (self.values is None):
            raise ValueError(f"{self.flag}: give either the config key it sets or a values function")

    @property
    def dest(self) -> str:
        return _dest(self.flag)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        help = self.help or f"shorthand for --set {self.key}=" + ("true" if self.switch else "...")
        if self.switch:  # not given: None, so the config's own value stands
            parser.add_argument(self.flag, dest=self.dest, action="store_const", const=True, default=None, help=help)
            return
        parser.add_argument(self.flag, dest=self.dest, metavar=self.metavar or self.dest.upper(), type=self.type,
                            action="append" if self.repeat else "store", help=help)

    def given(self, args: argparse.Namespace) -> Any:
        return getattr(args, self.dest, None)

    def config_values(self, args: argparse.Namespace) -> dict[str, Any]:
        """The config keys this flag sets, by dotted key (nothing when it was not given)."""
        value = self.given(args)
        if value is None:
            return {}
        return self.values(value) if self.values else {self.key: value}


Flag = PathFlag | ConfigFlag


def comma_list(text: str) -> list[str]:
    """`arc_easy,mmlu` -> ["arc_easy", "mmlu"] (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]

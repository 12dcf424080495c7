"""The errors a user can fix, shared by every layer (model/ is the bottom one, so all can import it).

The `ownlm` command turns a `UserError` raised anywhere into one line on stderr and its
`exit_code` (2: the command line or the config is wrong; 1: an input is bad or a run failed),
never a traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave (an input, a path, a state of their files): exit code 1."""

    exit_code = 1


class UsageError(UserError):
    """A command line or config that cannot run: exit code 2, like argparse's own errors."""

    exit_code = 2


class InputError(UserError, ValueError):
    """An input that cannot be used as it is: a file that does not parse, values out of range in a
    request (also a ValueError, for callers of the library functions that raise it)."""


class MissingInput(UserError, FileNotFoundError):
    """A file or folder that should exist and does not (also a FileNotFoundError)."""


class MissingPackage(UserError, ImportError):
    """An optional package a feature needs is not installed; the message names the pip install."""

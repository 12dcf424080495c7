"""Setting an environment variable for the length of a call, for libraries that read it at each call."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def scoped_env(name: str, value: str):
    """`name=value` inside the block; afterwards the variable is as it was (unset stays unset)."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved

"""What reaches the terminal: ownlm's own lines, and the libraries' INFO chatter only with
`--verbose` (Ray Data's per-dataset execution plans, MLflow's database set-up, Ray's notes).

The choice travels in OWNLM_VERBOSE, so the processes Ray starts see it too. Everything hidden
here still goes to the libraries' own log files (Ray's session logs, ray-data.log).
"""
from __future__ import annotations

import logging
import os

VERBOSE_ENV = "OWNLM_VERBOSE"


def set_verbose(verbose: bool) -> None:
    """Called by the CLI: with verbose off, quiet the libraries before any of them is imported."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if not verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


class _QuietRayData(logging.Filter):
    """Drops Ray Data's INFO lines and its note that progress bars are off (ownlm prints its own
    progress lines instead) from the console; warnings and errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and "Progress bars disabled" not in record.getMessage()


def quiet_ray_data() -> None:
    """Filter Ray Data's console handler (ray.data configures its own logging on import)."""
    if verbose():
        return
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and not any(isinstance(f, _QuietRayData)
                                                                     for f in handler.filters):
            handler.addFilter(_QuietRayData())

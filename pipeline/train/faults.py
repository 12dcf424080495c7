"""Fault injection for tests and fire drills: a training worker kills its own process.

    OWNLM_FAULT_KILL_WORKER=<rank>:<step>:<marker file>

makes the worker of that rank send itself SIGKILL right after optimizer step <step>,
once: it first creates the marker file, and a worker that finds the marker goes on, so
the run Ray Train restarts from the last checkpoint passes that step.

    OWNLM_FAULT_STEP_DELAY=<seconds>

makes every worker sleep that long after each optimizer step: a fire drill that acts on a
running job from outside (killing a node's raylet) needs the job to still be running. Nothing
else changes; without the variables this module does nothing. `ownlm train` forwards every
OWNLM_FAULT_* variable of its own environment to the workers.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

KILL_WORKER = "OWNLM_FAULT_KILL_WORKER"
STEP_DELAY = "OWNLM_FAULT_STEP_DELAY"
PREFIX = "OWNLM_FAULT_"


@dataclass(frozen=True)
class KillWorker:
    rank: int
    step: int
    marker: Path

    @classmethod
    def from_env(cls, environ=os.environ) -> "KillWorker | None":
        value = environ.get(KILL_WORKER)
        if not value:
            return None
        rank, step, marker = value.split(":", 2)
        return cls(int(rank), int(step), Path(marker))

    def after_step(self, rank: int, step: int) -> None:
        if rank != self.rank or step != self.step or self.marker.exists():
            return
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(f"rank {rank} killed itself after step {step}\n")
        print(f"[train] fault injection: rank {rank} kills its own process after step {step}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class StepDelay:
    seconds: float

    @classmethod
    def from_env(cls, environ=os.environ) -> "StepDelay | None":
        value = environ.get(STEP_DELAY)
        return cls(float(value)) if value else None

    def after_step(self, rank: int, step: int) -> None:
        time.sleep(self.seconds)


def injected(environ=os.environ) -> list:
    """The faults this environment asks for (none in a normal run); each has `after_step(rank, step)`."""
    return [f for f in (KillWorker.from_env(environ), StepDelay.from_env(environ)) if f is not None]


def forwarded_env(environ=os.environ) -> dict[str, str]:
    """The fault-injection variables a launcher passes on to its workers."""
    return {k: v for k, v in environ.items() if k.startswith(PREFIX)}

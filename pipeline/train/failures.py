"""Worker failures told in one line each, with every rank's full error in a log file.

Left alone, one lost worker shows as some 60 lines: Ray Train logs the surviving workers'
collective errors ("Error in training function" and a gloo traceback, on each worker), the
controller logs "Graceful shutdown of backend failed" with the dead actor's ActorDiedError (the
log monitor delivers part of it after the run's summary), and a run that fails for good raises a
TrainingFailedError holding every rank's error. Instead:

- `FailureLog`, a Ray Train `UserCallback`, runs in the controller (which Ray Train places on the
  driver's node) and prints one line per failure: which worker, where, what happened, the step
  training resumes from and which attempt that is. It appends every rank's full error (the
  traceback of a Python error, which `train_loop_per_worker` attaches to it as `ownlm_traceback`)
  to the log file, whose path the line names.
- `quiet_console_tracebacks()`, called in the controller and in every worker, keeps log records
  that carry a traceback off the console; Ray Train still writes them to its own log files
  (`<ray session>/logs/train/ray-train-sys-*.log` on each node).
- `summary()` is the one-line message of a run that failed for good (`launch.run_train` raises
  it as a TrainError, which `ownlm` prints as `ownlm: error: ...`).
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path

try:  # the callback interface; the names below work without Ray for the messages' unit tests
    from ray.train import UserCallback
except ImportError:  # pragma: no cover
    UserCallback = object

TRACEBACK_ATTR = "ownlm_traceback"
"""The attribute train_loop_per_worker sets on a worker's exception: its formatted traceback
(Ray Train hands the controller the exception without it)."""


# ---- what happened, in a few words ----

def _lost_actor(error: BaseException):
    """The RayActorError behind a lost worker (a failed health check), or None."""
    from ray.exceptions import RayActorError

    inner = getattr(error, "health_check_failure", error)  # WorkerHealthCheckFailedError wraps it
    return inner if isinstance(inner, RayActorError) else None


def _where(error: BaseException) -> str:
    """' (pid 123 on host/10.0.0.5)' from the failed health check's worker info and actor error."""
    text = str(error)
    pid, host = re.search(r"\bpid[:=] ?(\d+)", text), re.search(r"\bhostname='([^']+)'", text)
    ip = re.search(r"\bnode_ip='([^']+)'", text) or re.search(r"\bip: (\S+)", text)
    node = "/".join(m[1] for m in (host, ip) if m)
    parts = [f"pid {pid[1]}" if pid else "", f"on {node}" if node else ""]
    return f" ({' '.join(p for p in parts if p)})" if pid or node else ""


def _why(actor_error) -> str:
    text = str(actor_error).lower()
    if getattr(actor_error, "preempted", False):
        return "its node was preempted"
    if "low on memory" in text or "memory monitor" in text:
        return "killed by Ray's memory monitor (out of memory)"
    if "node has died" in text or "node died" in text:
        return "its node died"
    if "worker process has died" in text or "exits with a connection error" in text:
        # Ray sees the process vanish; it cannot tell SIGKILL from the OOM killer or a crash
        return "its process was killed (SIGKILL, the OOM killer) or crashed"
    return "health check failed"


def _first_line(error: BaseException) -> str:
    line = next((s.strip() for s in str(error).splitlines() if s.strip()), "")
    return line if len(line) <= 200 else line[:197] + "..."


def describe(worker_exceptions: dict) -> str:
    """The failure in a few words: the lost workers (the others' errors follow from it: a
    collective whose peer is gone fails), else the first worker's error."""
    lost = {rank: e for rank, e in worker_exceptions.items() if _lost_actor(e) is not None}
    if lost:
        return "; ".join(f"worker {rank}{_where(e)} lost: {_why(_lost_actor(e))}" for rank, e in sorted(lost.items()))
    rank, error = min(worker_exceptions.items())
    others = len(worker_exceptions) - 1
    return (f"worker {rank} raised {type(error).__name__}: {_first_line(error)}"
            + (f" ({others} other worker(s) failed too)" if others else ""))


def preempted(worker_exceptions: dict) -> bool:
    return any(getattr(_lost_actor(e), "preempted", False) for e in worker_exceptions.values())


def last_checkpoint_step(run_path: str) -> int | None:
    """The step of the run's latest checkpoint that Ray Train registered (None: none yet)."""
    try:
        from ray.train import Result

        metrics = Result.from_path(run_path).metrics or {}
    except Exception:  # no run folder or no snapshot yet: no checkpoint
        return None
    step = metrics.get("step")
    return int(step) if step is not None else None


def summary(error: BaseException, *, max_failures: int, resume_step: int | None, where: str,
            log_path: Path) -> str:
    """One line for a run that failed for good."""
    failures = getattr(error, "worker_failures", None)
    what = describe(failures) if failures else _first_line(error)
    budget = f"no retries left (train.max_failures={max_failures})" if failures else "not retried"
    resume = f"from step {resume_step}" if resume_step else "from step 0 (no checkpoint yet)"
    return f"training failed: {what}; {budget}; rerun to resume {resume} ({where}); details in {log_path}"


# ---- the log file ----

def append(log_path: Path, title: str, errors: dict) -> None:
    """Append one failure: a title line, then every rank's (or source's) full error."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as f:
        f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n")
        for who, error in errors.items():
            text = getattr(error, TRACEBACK_ATTR, None) or str(error)
            f.write(f"--- {who}: {type(error).__name__}\n{text.rstrip()}\n")
        f.write("\n")


# ---- the console ----

class _NoTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.stack_info:
            return False
        try:
            return "Traceback (most recent call last)" not in record.getMessage()
        except Exception:
            return True


def quiet_console_tracebacks() -> None:
    """Keep records with a traceback off this process's console handlers (Ray Train's `ray.train`
    logger and the root logger); file handlers, Ray Train's log files among them, keep them."""
    for logger in (logging.getLogger("ray.train"), logging.getLogger()):
        for handler in logger.handlers:
            if (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
                    and not any(isinstance(f, _NoTracebacks) for f in handler.filters)):
                handler.addFilter(_NoTracebacks())


# ---- the callback ----

class FailureLog(UserCallback):
    """Runs in Ray Train's controller: one line per recovered failure on the console (the
    controller's output reaches the driver like the workers'), every rank's error in log_path."""

    def __init__(self, log_path: str | Path, max_failures: int, run_path: str):
        self.log_path, self.max_failures, self.run_path = Path(log_path), max_failures, run_path
        self.failures = 0
        self.checkpoint_step: int | None = None
        """The step of the last checkpoint registered in this run, which a restart resumes from."""

    def after_report(self, run_context, metrics, checkpoint) -> None:
        quiet_console_tracebacks()
        if checkpoint is not None and metrics and metrics[0].get("step") is not None:
            self.checkpoint_step = int(metrics[0]["step"])

    def after_exception(self, run_context, worker_exceptions) -> None:
        quiet_console_tracebacks()  # before the controller logs the worker group's shutdown
        was_preempted = preempted(worker_exceptions)
        if not was_preempted:
            self.failures += 1  # Ray Train charges preemptions to their own budget
        retrying = was_preempted or self.max_failures < 0 or self.failures <= self.max_failures
        step = self.checkpoint_step
        if step is None:  # nothing registered in this controller: a rerun resumes from its start
            step = last_checkpoint_step(self.run_path) or 0
        attempt = f"attempt {self.failures + 1}" + (f" of {self.max_failures + 1}" if self.max_failures >= 0 else "")
        outcome = (f"resuming from step {step}" + ("" if was_preempted else f", {attempt}")) if retrying else \
            f"no retries left (train.max_failures={self.max_failures})"
        append(self.log_path, f"{describe(worker_exceptions)}; {outcome}",
               {f"worker {rank}": e for rank, e in sorted(worker_exceptions.items())})
        if retrying:  # the last failure is told once, by the driver's error
            print(f"[train] {describe(worker_exceptions)}; {outcome}; details in {self.log_path}", flush=True)

"""Run untrusted Python (a model's code completion plus its tests) in a sandboxed process.

Each program runs in a fresh `python -I -B` process of its own, in a throwaway working folder,
with a minimal environment. The boundary is the operating system (`evaluation.isolation`): the
program runs in its own user, PID, mount and network namespaces, where

- everything it starts dies with it, detached or not (a PID namespace), and on timeout the
  namespace is killed: `run_program` returns within about a second of the deadline, even when
  a descendant holds the output pipes open;
- the file system is read-only except its working folder (a fresh tmpfs); $HOME, /root, /home,
  /tmp, /run, /dev/shm and the paths the caller names (the storage root) are empty;
- there is no network (only a loopback that is down).

Without isolation (util-linux `unshare` missing, or unprivileged user namespaces off) nothing
runs unless the caller opts out with `unsafe_no_sandbox=True` (the CLI's --unsafe-no-sandbox).

Inside, as defense in depth and in either case:

- a wall-clock timeout and RLIMIT_CPU; RLIMIT_AS (unbounded allocation ends in MemoryError),
  RLIMIT_FSIZE and RLIMIT_NPROC;
- an audit hook (PEP 578) that ends the process at once when the program creates a socket,
  starts a process, looks up a native function with ctypes, sends a signal, or writes, removes
  or renames a file outside its working folder. Ending the process (not raising) means a
  program cannot catch the refusal and pass its tests anyway. Code can get around a hook
  (`_posixsubprocess.fork_exec` raises no event); it cannot get around the namespaces.

The program passes only if it runs to its end: the runner then prints a token the program
never sees on stdout; `sys.exit(0)` or `os._exit(0)` halfway counts as a failure.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from evaluation import isolation

BLOCKED_EXIT = 97
log = logging.getLogger(__name__)

# The runner: set limits, install the audit hook, then exec the program read from stdin.
# Kept in one string so the child needs nothing but the standard library.
RUNNER = r'''
import io, os, resource, sys
def main():
    token = sys.stdin.readline().strip()
    memory, cpu, fsize, nproc = (int(x) for x in sys.argv[1:5])
    sandbox = sys.argv[5]
    source = sys.stdin.read()
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    out = os.fdopen(os.dup(1), "w")
    err = os.fdopen(os.dup(2), "w")
    root = os.path.realpath(sandbox) + os.sep
    deny_prefixes = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                     "ctypes.", "os.kill", "os.killpg", "pty.", "_posixsubprocess.")
    # Importing numpy loads shared libraries through ctypes; looking up a function in one is refused.
    allow = {"ctypes.dlopen", "ctypes.get_errno", "ctypes.set_errno"}
    deny = {"os.system", "os.forkpty", "os.startfile", "resource.setrlimit",
            "sys.addaudithook", "os.setuid", "os.setgid"}
    path_events = {"os.remove", "os.rmdir", "os.rename", "shutil.rmtree", "shutil.move", "os.truncate",
                   "os.chmod", "os.chown", "os.link", "os.symlink", "os.mkdir", "os.utime"}
    def outside(path):
        if isinstance(path, int):
            return False
        try:
            return not (os.path.realpath(os.fsdecode(path)) + os.sep).startswith(root)
        except Exception:
            return True
    def stop(event):
        err.write(f"ownlm-sandbox: blocked {event}\n"); err.flush()
        os._exit(BLOCKED)
    def hook(event, args):
        if event in deny or (event.startswith(deny_prefixes) and event not in allow):
            stop(event)
        if event == "open" and len(args) > 2 and isinstance(args[2], int) \
                and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND) and outside(args[0]):
            stop(f"{event} for writing outside the sandbox: {args[0]!r}")
        if event in path_events and args and any(outside(a) for a in args[:2] if isinstance(a, (str, bytes))):
            stop(f"{event} outside the sandbox: {args[0]!r}")
    class Sink(io.TextIOBase):
        """What the program prints is dropped (a print loop must not fill memory or a pipe)."""
        def write(self, s):
            return len(s)
        def writable(self):
            return True
    sys.stdout = sys.stderr = Sink()
    sys.addaudithook(hook)
    try:
        exec(compile(source, "<program>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as e:
        err.write(f"{type(e).__name__}: {str(e)[:300]}\n"); err.flush()
        os._exit(1)
    out.write(token + "\n"); out.flush()
    os._exit(0)
BLOCKED = %d
main()
''' % BLOCKED_EXIT


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout: float = 10.0
    """Wall-clock seconds before the process group is killed."""
    memory_mb: int = 1024
    """Address space (RLIMIT_AS); the interpreter itself takes ~30 MB of it."""
    file_size_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE); isolated, its folder holds 4 times that, at least 64 MB."""
    processes: int = 64
    """RLIMIT_NPROC (threads count too), isolated runs only: there Linux >= 5.14 counts the
    sandbox's own; unisolated it would count every process of the user. The kernel does not
    apply it to root: run as root, a sandbox is bounded in processes only by its timeout."""

    @property
    def cpu_seconds(self) -> int:
        return max(1, int(self.timeout) + 1)


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str
    """passed | failed | timeout | blocked"""
    detail: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(program: str, limits: Limits = Limits(), *, hide_paths: Iterable[str | os.PathLike] = (),
                unsafe_no_sandbox: bool = False) -> Outcome:
    """Run one program in the sandbox; Outcome.status says how it ended.

    hide_paths: folders or files the program must not see, besides $HOME and the others in
    `isolation.HIDDEN` (pass the storage root). unsafe_no_sandbox: the explicit opt-out: run
    without isolation (only the limits and the audit hook). Without it, where isolation is not
    available, isolation.IsolationUnavailable is raised and nothing runs."""
    isolated = isolation.require(unsafe_no_sandbox)
    sandbox = tempfile.mkdtemp(prefix="ownlm-sandbox-")
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-I", "-B", "-c", RUNNER, str(limits.memory_mb << 20), str(limits.cpu_seconds),
           str(limits.file_size_mb << 20), str(limits.processes if isolated else 0), sandbox]
    if isolated:
        cmd = isolation.command(cmd, sandbox, hide_paths, size_mb=max(64, 4 * limits.file_size_mb))
    env = {"PATH": "/usr/bin:/bin", "HOME": sandbox, "TMPDIR": sandbox, "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    # A session of its own, so that a kill of its process group reaches the runner or, isolated,
    # `unshare` and the namespace's init (the program cannot move init out of the group): the kernel
    # then kills all the namespace holds. Unisolated, what left the group survives.
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=sandbox, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(f"{token}\n{program}".encode(), timeout=limits.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        _drain(proc)
        return Outcome("timeout", f"still running after {limits.timeout:g} s", time.perf_counter() - start)
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    seconds = time.perf_counter() - start
    err_text = err.decode("utf-8", "replace").strip()[-500:]
    if proc.returncode == 0 and out.decode("utf-8", "replace").strip().endswith(token):
        return Outcome("passed", "", seconds)
    if proc.returncode == BLOCKED_EXIT and "ownlm-sandbox: blocked" in err_text:
        return Outcome("blocked", err_text.split("ownlm-sandbox: ")[-1], seconds)
    # Killed by a signal: a negative code, or 128 + the signal from the namespace's init.
    killed_by = -proc.returncode if proc.returncode < 0 else proc.returncode - 128 if isolated else 0
    if killed_by in (signal.SIGXCPU, signal.SIGKILL):
        return Outcome("timeout", f"CPU limit of {limits.cpu_seconds} s", seconds)
    return Outcome("failed", err_text or f"exit code {proc.returncode} before the end of the program", seconds)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _drain(proc: subprocess.Popen, grace: float = 1.0) -> None:
    """After the kill, read what is left without waiting for EOF: unisolated, a descendant that
    left the process group may hold the pipes open for as long as it likes."""
    try:
        proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        proc.wait()


def run_programs(programs: list[str], limits: Limits = Limits(), workers: int | None = None,
                 progress: bool = True, desc: str = "executing", *, hide_paths: Iterable[str | os.PathLike] = (),
                 unsafe_no_sandbox: bool = False) -> list[Outcome]:
    """Run many programs, `workers` at a time (default: the CPU count), in input order;
    `hide_paths` and `unsafe_no_sandbox` as for run_program."""
    from tqdm import tqdm

    if not isolation.require(unsafe_no_sandbox):  # raises before anything runs, when it must
        log.warning("running %d programs WITHOUT isolation (unsafe_no_sandbox): they can read and write what "
                    "this user can and reach the network", len(programs))
    hide_paths = tuple(hide_paths)
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_program, p, limits, hide_paths=hide_paths, unsafe_no_sandbox=unsafe_no_sandbox)
                   for p in programs]
        return [f.result() for f in tqdm(futures, desc=desc, unit="program", disable=not progress)]

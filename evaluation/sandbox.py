"""Run untrusted Python (a model's code completion plus its tests) in a sandboxed process.

Each program runs in a fresh `python -I -B` process of its own, in a throwaway working folder,
with a minimal environment, and:

- a wall-clock timeout (the whole process group is killed) and an RLIMIT_CPU limit;
- an RLIMIT_AS memory limit (unbounded allocation ends in MemoryError) and RLIMIT_FSIZE;
- no network: the process runs in a new network namespace where `unshare -rn` is
  allowed, and in any case an audit hook (PEP 578) that ends the process at once when the
  program creates a socket, starts a process, looks up a native function with ctypes, sends a signal,
  or writes, removes or renames a file outside its working folder. Ending the process (not
  raising) means a program cannot catch the refusal and pass its tests anyway.

The program passes only if it runs to its end: the runner then prints a token the program
never sees on stdout; `sys.exit(0)` or `os._exit(0)` halfway counts as a failure.

This keeps mistakes of a model from harming the machine or the run; it is not a boundary
against a determined adversary (run those in a container or a VM).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

BLOCKED_EXIT = 97

# The runner: set limits, install the audit hook, then exec the program read from stdin.
# Kept in one string so the child needs nothing but the standard library.
RUNNER = r'''
import io, os, resource, sys
def main():
    token = sys.stdin.readline().strip()
    memory, cpu, fsize = (int(x) for x in sys.argv[1:4])
    sandbox = sys.argv[4]
    source = sys.stdin.read()
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
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
    """Largest file the program may write (RLIMIT_FSIZE)."""

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


@functools.cache
def network_namespace_available() -> bool:
    """Whether `unshare -rn` can give a process its own, empty network namespace here."""
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def run_program(program: str, limits: Limits = Limits()) -> Outcome:
    """Run one program in the sandbox; Outcome.status says how it ended."""
    sandbox = tempfile.mkdtemp(prefix="ownlm-sandbox-")
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-I", "-B", "-c", RUNNER, str(limits.memory_mb << 20), str(limits.cpu_seconds),
           str(limits.file_size_mb << 20), sandbox]
    if network_namespace_available():
        cmd = ["unshare", "-rn", "--", *cmd]
    env = {"PATH": "/usr/bin:/bin", "HOME": sandbox, "TMPDIR": sandbox, "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=sandbox, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(f"{token}\n{program}".encode(), timeout=limits.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return Outcome("timeout", f"still running after {limits.timeout:g} s", time.perf_counter() - start)
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    seconds = time.perf_counter() - start
    err_text = err.decode("utf-8", "replace").strip()[-500:]
    if proc.returncode == 0 and out.decode("utf-8", "replace").strip().endswith(token):
        return Outcome("passed", "", seconds)
    if proc.returncode == BLOCKED_EXIT and "ownlm-sandbox: blocked" in err_text:
        return Outcome("blocked", err_text.split("ownlm-sandbox: ")[-1], seconds)
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return Outcome("timeout", f"CPU limit of {limits.cpu_seconds} s", seconds)
    return Outcome("failed", err_text or f"exit code {proc.returncode} before the end of the program", seconds)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_programs(programs: list[str], limits: Limits = Limits(), workers: int | None = None,
                 progress: bool = True, desc: str = "executing") -> list[Outcome]:
    """Run many programs, `workers` at a time (default: the CPU count), in input order."""
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_program, p, limits) for p in programs]
        return [f.result() for f in tqdm(futures, desc=desc, unit="program", disable=not progress)]

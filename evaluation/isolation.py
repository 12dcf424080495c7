"""Operating-system isolation for `evaluation.sandbox`: Linux namespaces through util-linux `unshare`.

`unshare --user --map-root-user --pid --fork --kill-child --mount --mount-proc --net` starts INIT
below in fresh user, PID, mount and network namespaces. INIT, root in that user namespace only:

1. makes every mount read-only (a bind remount each, keeping the flags the kernel locked);
2. mounts an empty read-only tmpfs over each hidden folder ($HOME, /root, /home, and /tmp, /var/tmp
   and /run, where Unix sockets such as Ray's and Docker's live: a socket file is reachable without
   any network) and over the folders the caller names, such as the storage root; a hidden file
   gets /dev/null. /dev holds only null, zero, full, random and urandom;
3. binds the interpreter's prefixes back (read-only) where a hidden folder covered them, so a
   Python that lives under $HOME still starts;
4. mounts a fresh, size-limited tmpfs on the sandbox folder: the only place it can write;
5. forks the runner, which enters a second user and mount namespace before it execs Python. Mounts
   copied into a less privileged user namespace are locked: they cannot be unmounted (which would
   show what a tmpfs hides) or made writable again. The runner maps to uid 1000 there, so exec
   drops every capability, and no_new_privs forbids regaining any through setuid files;
6. waits for the runner and exits with its status (128 + signal when killed by one).

When INIT exits, or is killed (the parent kills it on timeout; --kill-child kills it when
`unshare` dies), the kernel kills everything else in the PID namespace: nothing the program
started, detached or not, outlives it. The network namespace holds only a loopback that is down.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable

from model.errors import UserError

SETUP_FAILED = 96
UNSHARE_FLAGS = ["--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--net"]
HIDDEN = ["/root", "/home", "/tmp", "/var/tmp", "/run"]
"""Hidden in every sandbox, with $HOME and what the caller adds."""

INIT = f"SETUP_FAILED = {SETUP_FAILED}\n" + r'''
import ctypes, errno, json, os, re, signal, sys
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
CLONE_NEWNS, CLONE_NEWUSER, PR_SET_NO_NEW_PRIVS = 0x20000, 0x10000000, 38
DEVICES = ("null", "zero", "full", "random", "urandom")
libc = ctypes.CDLL(None, use_errno=True)

def mount(source, target, fstype=None, flags=0, data=None):
    enc = lambda s: None if s is None else s.encode()
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {target}: {os.strerror(e)}")

def read_only(target, options=()):
    # A remount must repeat the flags the kernel locked when it copied the mount into this namespace.
    kept = sum(f for name, f in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)) if name in options)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)

def all_read_only(wanted):
    top = {}  # mount point: options of the last mount there, the one a path reaches
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        top[re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4])] = fields[5].split(",")
    for target, options in top.items():
        if not wanted(target):
            continue
        try:
            read_only(target, options)
        except OSError as e:  # a mount covered by a later one cannot be reached, and need not be
            if "ro" not in options and e.errno not in (errno.ENOENT, errno.EACCES, errno.EINVAL):
                raise

def under(path, folders):
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)

def setup(cfg):
    # Handles on what is bound back, taken before hiding covers them.
    keep = {p: os.open(p, os.O_PATH) for p in cfg["keep"] if os.path.exists(p)}
    devices = {d: os.open(f"/dev/{d}", os.O_PATH) for d in DEVICES}
    # /proc last, by the runner, once it has written its uid and gid maps there.
    all_read_only(lambda target: target != "/proc")
    hidden = []
    def empty(path):
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=755")
        hidden.append(path)
    def hide(path):
        if os.path.isdir(path):
            empty(path)
        elif os.path.exists(path):
            mount("/dev/null", path, None, MS_BIND)
    # A /dev of a few harmless devices. The host's holds terminals, GPUs, the kernel log, ...: a
    # read-only mount still lets one open a device for writing, as far as its mode allows.
    empty("/dev")
    for name, fd in devices.items():
        os.close(os.open(f"/dev/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        mount(f"/proc/self/fd/{fd}", f"/dev/{name}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")
    for path in cfg["hide"]:
        hide(path)
    bound = []
    for path, fd in keep.items():
        if under(path, hidden) and not under(path, bound):
            os.makedirs(path, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)  # read-only: a bind copies the flags
            bound.append(path)
    for path in cfg["hide"]:  # a hidden folder inside a prefix stays hidden
        if under(path, bound):
            hide(path)
    os.makedirs(cfg["sandbox"], exist_ok=True)
    mount("tmpfs", cfg["sandbox"], "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['size']},mode=700")
    for path in hidden:  # writable until now only to make the mount points above
        read_only(path, ("nosuid", "nodev", "noexec"))
    os.chdir(cfg["sandbox"])

def enter_locked_namespace():
    gid = os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", "1000 0 1"), ("gid_map", f"1000 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    all_read_only(lambda target: target == "/proc")  # still allowed: this namespace owns the copy
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")

def fail(e):
    os.write(2, f"ownlm-sandbox: isolation failed: {type(e).__name__}: {e}\n".encode())
    os._exit(SETUP_FAILED)

def main():
    cfg = json.loads(sys.argv[1])
    try:
        setup(cfg)
    except Exception as e:
        fail(e)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as PID 1, a signal with no handler is ignored
    pid = os.fork()
    if pid == 0:
        try:
            enter_locked_namespace()
            os.execv(cfg["argv"][0], cfg["argv"])
        except Exception as e:
            fail(e)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)
main()
'''


class IsolationUnavailable(UserError, RuntimeError):
    """Programs cannot be isolated on this machine, and the caller did not opt out."""


def hidden_paths(extra: Iterable[str | os.PathLike] = ()) -> list[str]:
    """The folders (and files) every sandbox hides: HIDDEN, $HOME, and `extra`; real paths, each once."""
    paths = [*HIDDEN, os.path.expanduser("~"), *map(os.fspath, extra)]
    out = []
    for p in paths:
        for q in (os.path.abspath(p), os.path.realpath(p)):  # a symlink's target, and where it points from
            if q != "/" and q not in out:
                out.append(q)
    return out


def interpreter_paths() -> list[str]:
    """What the runner's Python needs to start: its prefixes (a venv's and the base one's), as
    given and resolved, shortest first so a parent is bound back before its children."""
    paths = {os.path.dirname(os.path.abspath(sys.executable)), os.path.dirname(os.path.realpath(sys.executable))}
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        paths |= {os.path.abspath(p), os.path.realpath(p)}
    return sorted(paths, key=len)


def command(argv: list[str], sandbox: str, hide: Iterable[str | os.PathLike] = (), size_mb: int = 64) -> list[str]:
    """The command that runs `argv` isolated, in `sandbox` (a tmpfs of `size_mb` there). A setup
    failure ends it with exit code SETUP_FAILED and "ownlm-sandbox: isolation failed" on stderr."""
    cfg = {"argv": argv, "sandbox": os.path.abspath(sandbox), "hide": hidden_paths(hide), "keep": interpreter_paths(),
           "size": f"{size_mb}m"}
    return [shutil.which("unshare") or "unshare", *UNSHARE_FLAGS, "--", sys.executable, "-I", "-B", "-S", "-c", INIT,
            json.dumps(cfg)]


@functools.cache
def problem() -> str | None:
    """Why programs cannot be isolated here, or None when they can. Tried once (a real isolated
    run of a tiny program), then remembered."""
    if not shutil.which("unshare"):
        return "util-linux's `unshare` is not installed"
    sandbox = tempfile.mkdtemp(prefix="ownlm-probe-")
    check = "import os; assert os.getpid() != 1 and os.getcwd() == os.environ['SANDBOX']; print('isolated')"
    try:
        out = subprocess.run(command([sys.executable, "-I", "-c", check], sandbox), capture_output=True, timeout=30,
                             check=False, env={"PATH": "/usr/bin:/bin", "SANDBOX": os.path.abspath(sandbox)})
    except (OSError, subprocess.SubprocessError) as e:
        return f"`unshare` failed: {e}"
    finally:
        shutil.rmtree(sandbox, ignore_errors=True)
    if out.returncode == 0 and out.stdout.strip() == b"isolated":
        return None
    return f"`unshare {' '.join(UNSHARE_FLAGS)}` failed: " + out.stderr.decode("utf-8", "replace").strip()[-300:]


def require(unsafe_no_sandbox: bool) -> bool:
    """Whether to isolate: True when possible; False only on the caller's explicit opt-out;
    else IsolationUnavailable, saying how to get isolation."""
    if unsafe_no_sandbox:
        return False
    why = problem()
    if why:
        raise IsolationUnavailable(
            f"HumanEval runs code written by a model, and isolating it (user, PID, mount and network "
            f"namespaces) is not possible here: {why}. Install util-linux (it provides `unshare`) and "
            "allow unprivileged user namespaces (sysctl user.max_user_namespaces > 0; "
            "kernel.unprivileged_userns_clone=1 on Debian kernels; on Ubuntu 24.04+ "
            "kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for unshare; in a "
            "container, a seccomp profile that allows unshare/clone with CLONE_NEWUSER), or pass "
            "--unsafe-no-sandbox to run the programs without isolation (only resource limits and an "
            "audit hook, which code can get around).")
    return True

"""The sandbox's boundary is the operating system: escapes that get past the audit hook
(`_posixsubprocess.fork_exec` raises no audit event) are still contained."""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from evaluation import isolation
from evaluation.sandbox import Limits, run_program, run_programs

FAST = Limits(timeout=3.0, memory_mb=512)

# Starts a process the way subprocess does, but below the audit hook.
SPAWN = r'''
import _posixsubprocess, os, sys
def spawn(argv, setsid=False, pgid=-1):
    errpipe_read, errpipe_write = os.pipe()
    args = [[os.fsencode(a) for a in argv], [os.fsencode(argv[0])], True, (), None, None,
            -1, -1, -1, -1, -1, -1, errpipe_read, errpipe_write, True, setsid, pgid, None, None, None, -1, None]
    if sys.version_info < (3, 11):
        del args[16]  # no process_group before 3.11
    try:
        pid = _posixsubprocess.fork_exec(*args, False)  # allow_vfork
    except TypeError:
        pid = _posixsubprocess.fork_exec(*args)
    os.close(errpipe_write)
    assert os.read(errpipe_read, 100) == b"", "exec failed"
    return pid
'''

# The classic daemon: fork, setsid, fork again, let go of the pipes, act later.
DAEMON = r'''
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
null = os.open("/dev/null", os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
time.sleep(1)
open(sys.argv[1], "w").write("escaped")
'''


def survivors(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (host /proc sees every PID namespace)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture
def marker():
    marker = f"ownlm-escape-{uuid.uuid4().hex}"
    yield marker
    for pid in survivors(marker):  # today's sandbox lets them live: do not leave them behind
        try:
            os.kill(pid, 9)
        except OSError:
            pass


@pytest.fixture
def visible_dir():
    """A scratch folder outside the folders every sandbox hides (pytest's tmp_path is in /tmp,
    which is hidden). Where the checkout itself lies under a hidden folder ($HOME, /home), the
    tests that use it check less: then the sandbox sees none of it."""
    path = Path(tempfile.mkdtemp(prefix=".sandbox-test-", dir=Path(__file__).parent))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _needs_isolation(request):
    if "unavailable" not in request.node.name and isolation.problem():
        pytest.skip(f"no isolation on this machine: {isolation.problem()}")


def test_a_detached_shell_dies_with_the_program(tmp_path, marker):
    target = tmp_path / f"{marker}.txt"
    shell = f"exec >/dev/null 2>&1; sleep 1; echo escaped > {target}"
    out = run_program(SPAWN + f"spawn(['/bin/sh', '-c', {shell!r}], setsid=True)\n", FAST)
    assert out.passed, out  # the program ends at once, its shell would act a second later
    assert survivors(marker) == []
    time.sleep(2)
    assert not target.exists()


def test_a_double_forked_daemon_dies_with_the_program(tmp_path, marker):
    target = tmp_path / f"{marker}.txt"
    out = run_program(SPAWN + f"spawn([sys.executable, '-I', '-c', {DAEMON!r}, {str(target)!r}])\n", FAST)
    assert out.passed, out
    assert survivors(marker) == []
    time.sleep(2)
    assert not target.exists()


def test_the_timeout_holds_when_a_grandchild_keeps_the_pipes_open(marker):
    """A child in a process group of its own inherits stdout and stderr and sleeps on."""
    holder = SPAWN + f"spawn([sys.executable, '-c', 'import time; time.sleep(20)', {marker!r}], pgid=0)\n"
    start = time.perf_counter()
    out = run_program(holder + "import time\ntime.sleep(60)\n", Limits(timeout=2.0, memory_mb=512))
    elapsed = time.perf_counter() - start
    assert out.status == "timeout", out
    assert elapsed < 2.0 + 1.0, f"returned after {elapsed:.2f} s"
    assert survivors(marker) == []


def test_home_and_named_paths_are_not_visible(visible_dir, monkeypatch):
    home, storage = visible_dir / "home", visible_dir / "storage"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("ray-secret")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("ssh-secret")
    storage.mkdir()
    (storage / "mlflow.db").write_text("runs")
    (visible_dir / "credentials.json").write_text("{}")
    (visible_dir / "public.txt").write_text("anyone")
    monkeypatch.setenv("HOME", str(home))
    secrets = [home / ".ray" / "auth_token", home / ".ssh" / "id_ed25519", storage / "mlflow.db"]
    # Hidden means empty where a tmpfs covers it, or absent where a whole hidden parent does (a
    # checkout under /tmp, which every sandbox hides).
    program = (f"import os\nfor p in {[str(p) for p in secrets]!r}:\n    assert not os.path.exists(p), p\n"
               "def unseen(p):\n    return not os.path.exists(p) or os.listdir(p) == []\n"
               f"assert unseen({str(home)!r}) and unseen({str(storage)!r})\n"
               f"cred = {str(visible_dir / 'credentials.json')!r}\n"
               "assert not os.path.exists(cred) or open(cred).read() == ''\n")
    out = run_program(program, FAST, hide_paths=[storage, visible_dir / "credentials.json"])
    assert out.passed, out
    if not any(str(visible_dir).startswith(h + os.sep) for h in isolation.hidden_paths()):
        # the folder itself is visible, so it was the hiding that kept the secrets out
        assert run_program(f"assert open({str(visible_dir / 'public.txt')!r}).read() == 'anyone'", FAST).passed


def test_the_interpreter_still_runs_when_its_folders_are_hidden():
    """Hiding the folders that hold the base Python and the venv (as $HOME would for a
    Python installed there) binds the interpreter's own prefixes back, read-only, and nothing else."""
    prefixes = {Path(sys.base_prefix), Path(sys.prefix)}
    folders = {p.parent: p.name for p in prefixes if p.parent != Path("/")}
    if not folders:
        pytest.skip("the interpreter lives directly under /")
    program = "import os\n" + "".join(f"assert os.listdir({str(f)!r}) == [{n!r}]\n" for f, n in folders.items())
    out = run_program(program, FAST, hide_paths=list(folders))
    assert out.passed, out


def test_no_network_even_below_the_audit_hook():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')"
    program = SPAWN + (f"pid = spawn([sys.executable, '-I', '-c', {client!r}])\n"
                       "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0, 'connected'\n")
    try:
        out = run_program(program, FAST)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # no connection is waiting to be accepted
            server.accept()
    finally:
        server.close()
    assert out.passed, out


def test_nothing_outside_its_folder_is_writable(visible_dir, tmp_path):
    targets = [visible_dir / "escaped.txt", tmp_path / "escaped.txt"]
    shell = "; ".join(f"echo x > {t}" for t in targets) + "; echo x > inside.txt"
    program = SPAWN + (f"pid = spawn(['/bin/sh', '-c', {shell!r}])\nos.waitpid(pid, 0)\n"
                       "assert open('inside.txt').read() == 'x\\n'\n"
                       "harmless = {'null', 'zero', 'full', 'random', 'urandom', 'fd', 'stdin', 'stdout', 'stderr'}\n"
                       "assert set(os.listdir('/dev')) <= harmless, os.listdir('/dev')\n")  # no disks, GPUs, ttys
    out = run_program(program, FAST)
    assert out.passed, out  # its own folder is writable
    assert [t for t in targets if t.exists()] == []


def test_nothing_survives_a_humaneval_run(marker, tmp_path):
    from evaluation.humaneval import load_problems, score

    p = load_problems(3)[2]
    body = SPAWN + f"spawn([sys.executable, '-I', '-c', {DAEMON!r}, {str(tmp_path / marker)!r}])\n"
    completion = "".join("    " + line + "\n" for line in body.splitlines()) + p["canonical_solution"]
    out = score([p], [{"task_id": p["task_id"], "completion": completion}] * 3, FAST, progress=False)
    assert out["status"] == {"passed": 3}  # the hook does not see it; the namespace ends it
    assert survivors(marker) == []
    time.sleep(2)
    assert not (tmp_path / marker).exists()


def test_unsafe_no_sandbox_runs_without_isolation(tmp_path):
    (tmp_path / "secret").write_text("s")
    program = f"assert open({str(tmp_path / 'secret')!r}).read() == 's'"  # /tmp is hidden when isolated
    assert run_program(program, FAST, unsafe_no_sandbox=True).passed
    assert run_program(program, FAST).status == "failed"


def test_without_isolation_unavailable_it_refuses_unless_told(monkeypatch):
    from evaluation.humaneval import load_problems, run_humaneval, score

    monkeypatch.setattr(isolation, "problem", lambda: "simulated: no user namespaces")
    p = load_problems(1)[0]
    sample = [{"task_id": p["task_id"], "completion": p["canonical_solution"]}]
    runs = [lambda **kw: run_program("pass", FAST, **kw), lambda **kw: run_programs(["pass"], FAST, **kw),
            lambda **kw: score([p], sample, FAST, progress=False, **kw)]
    for run in [*runs, lambda: run_humaneval(None, None)]:  # refused before the model generates anything
        with pytest.raises(isolation.IsolationUnavailable, match="simulated.*unshare.*--unsafe-no-sandbox"):
            run()
    assert run_program("pass", FAST, unsafe_no_sandbox=True).passed
    assert [o.status for o in run_programs(["pass"], FAST, progress=False, unsafe_no_sandbox=True)] == ["passed"]
    assert score([p], sample, FAST, progress=False, unsafe_no_sandbox=True)["pass@k"] == {"pass@1": 1.0}

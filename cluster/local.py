"""A real multi-node Ray cluster on one machine, for tests and for trying cluster runs on a laptop.

One `ray start --head` and one `ray start --address` per further node: each node is its own
raylet with its own object store and worker processes, exactly as on separate machines, so
placement, node failures and cross-node collectives are real. The cluster

- uses token authentication with a token of its own (a file in its temp dir, passed as
  RAY_AUTH_TOKEN_PATH), never touching ~/.ray/auth_token;
- has its own temp dir and free ports, so it runs beside any other Ray instance here;
- stops exactly the processes it started (never `ray stop`, which stops every Ray on the machine).

    with LocalCluster([NodeSpec(resources={"slot": 1}), NodeSpec(resources={"slot": 1})]) as cluster:
        subprocess.run([...driver...], env=cluster.env)   # a driver that connects to cluster.address

or from a shell: `python -m cluster.local --nodes 2` prints the variables to export and runs until Ctrl-C.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


class ClusterError(RuntimeError):
    pass


@dataclass
class NodeSpec:
    num_cpus: int = 2
    """Logical CPUs the node offers (a scheduling budget, not cores)."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom resources, e.g. {"trainer": 1}: a task or worker that asks for one lands only here."""
    object_store_bytes: int = 200 * 1024 ** 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, nodes: list[NodeSpec] | int = 2, temp_dir: str | Path | None = None):
        self.nodes = [NodeSpec() for _ in range(nodes)] if isinstance(nodes, int) else list(nodes)
        if not self.nodes:
            raise ValueError("a cluster needs at least one node")
        self._own_dir = temp_dir is None
        # Short: Ray puts unix sockets under it, and socket paths are limited to ~107 bytes.
        self.dir = Path(temp_dir or tempfile.mkdtemp(prefix="ownlm-ray-", dir="/tmp"))
        self.port = free_port()
        self.dashboard_port = free_port()
        self.token_file = self.dir / "auth_token"
        self.node_ids: list[str] = []
        """Ray node ids of the running nodes (set by start)."""
        self._procs: list[subprocess.Popen] = []
        self.pids: list[int] = []
        """The `ray start --block` process of each node, each the leader of its own process group."""

    # ---- a cluster that outlives the process that started it (`ownlm cluster up` / `down`) ----

    def state(self) -> dict:
        """What another process needs to find this cluster again and stop it (no secret: the token
        stays in its file)."""
        return {"dir": str(self.dir), "port": self.port, "dashboard_port": self.dashboard_port,
                "token_file": str(self.token_file), "pids": list(self.pids), "node_ids": list(self.node_ids),
                "nodes": [asdict(n) for n in self.nodes]}

    @classmethod
    def attach(cls, state: dict) -> "LocalCluster":
        """The cluster a `state()` describes, as seen from another process: `stop()` ends it and
        removes its temp dir."""
        cluster = cls([NodeSpec(**n) for n in state["nodes"]], temp_dir=state["dir"])
        cluster._own_dir = True
        cluster.port, cluster.dashboard_port = state["port"], state["dashboard_port"]
        cluster.token_file = Path(state["token_file"])
        cluster.pids, cluster.node_ids = list(state["pids"]), list(state["node_ids"])
        return cluster

    def running(self) -> list[int]:
        """The node processes of this cluster still alive."""
        return [pid for pid in self.pids if self._is_ours(pid)]

    def _is_ours(self, pid: int) -> bool:
        """Alive, and still the `ray start` of this cluster (not a later process that got its pid)."""
        proc = next((p for p in self._procs if p.pid == pid), None)
        if proc is not None and proc.poll() is not None:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"--temp-dir={self.dir}".encode() in cmdline

    # ---- what a driver needs ----

    @property
    def address(self) -> str:
        """The GCS address for `ray.init(address=...)` and `ray start --address`."""
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard / job submission address."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus what a driver of this cluster needs: the token, and RAY_ADDRESS."""
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file),
                "RAY_ADDRESS": self.address, "RAY_TRAIN_V2_ENABLED": "1"}

    # ---- lifecycle ----

    def start(self, timeout_s: float = 180) -> "LocalCluster":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        try:
            for i, node in enumerate(self.nodes):
                self._start_node_retrying(i, node, timeout_s)
            self.node_ids = self.wait_for_nodes(len(self.nodes), timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node_retrying(self, i: int, node: NodeSpec, timeout_s: float, attempts: int = 3) -> None:
        """Start node i; again (its first try's processes ended) when its raylet was too slow to register.

        `ray start` gives a raylet a fixed 30 s to register with the GCS (ray/_private/node.py), which
        a machine busy with other jobs can miss; the node is fine, only late."""
        for attempt in range(attempts):
            try:
                return self._start_node(i, node, timeout_s)
            except ClusterError as e:
                if "timed out during startup" not in str(e) or attempt == attempts - 1:
                    raise
                pid = self.pids.pop()
                self._procs.pop().wait()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)  # the late raylet and whatever else that try started

    def _start_node(self, i: int, node: NodeSpec, timeout_s: float) -> None:
        cmd = [_ray_cli(), "start", "--block", "--disable-usage-stats", f"--num-cpus={node.num_cpus}",
               "--num-gpus=0", f"--resources={json.dumps(node.resources)}", "--node-ip-address=127.0.0.1",
               f"--object-store-memory={node.object_store_bytes}", f"--temp-dir={self.dir}",
               f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]
        if i == 0:
            cmd += ["--head", f"--port={self.port}", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}"]
        else:
            cmd += [f"--address={self.address}"]
        log = self.dir / f"node-{i}.log"
        env = {**self.env}
        env.pop("RAY_ADDRESS")  # `ray start --head` must not look for a cluster to join
        with open(log, "w") as out:
            # Its own session (process group), so stop() can end the node and every child it spawned.
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._procs.append(proc)
        self.pids.append(proc.pid)
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None:
                raise ClusterError(f"`ray start` for node {i} exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"node {i} did not start in {timeout_s:.0f}s:\n{_tail(log)}")
            time.sleep(0.5)

    def wait_for_nodes(self, n: int, timeout_s: float = 120) -> list[str]:
        """Block until n nodes are alive; returns their node ids."""
        deadline = time.monotonic() + timeout_s
        while True:
            out = subprocess.run([_ray_cli(), "status", f"--address={self.address}"], env=self.env,
                                 capture_output=True, text=True)
            ids = re.findall(r"^\s*\d+\s+node_([0-9a-f]+)", out.stdout, flags=re.M)
            if len(ids) >= n:
                return ids
            if time.monotonic() > deadline:
                raise ClusterError(f"{len(ids)} of {n} nodes came up in {timeout_s:.0f}s:\n{out.stdout}{out.stderr}")
            time.sleep(1)

    def stop(self, timeout_s: float = 30) -> None:
        """End every process this cluster started (workers first, then the head): SIGTERM to each
        node's `ray start --block` (it then stops its node's processes), SIGKILL to whatever is left
        in the node's process group, and to any process still running in this cluster's temp dir."""
        pids = self.running()
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in reversed(self.pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # anything of that node still alive
        for proc in self._procs:
            proc.wait()
        for pid in processes_under(self.dir):  # a worker that left its node's process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._procs.clear()
        self.pids.clear()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def logs(self) -> str:
        """The `ray start` output of every node (for error messages)."""
        return "\n".join(f"--- node {i}\n{_tail(self.dir / f'node-{i}.log')}" for i in range(len(self._procs)))


def processes_under(folder: Path) -> list[int]:
    """Processes with an argument in `folder` (every Ray process of a node names its temp dir)."""
    path = str(folder).encode()
    inside = (path, path + b"/")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(path) and a.split(b"=")[-1] in inside or path + b"/" in a for a in args):
                found.append(int(entry.name))
    return found


def _ray_cli() -> str:
    """The `ray` command of this Python (its venv), so the nodes run the same Ray and packages."""
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else (shutil.which("ray") or "ray")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cluster.local", description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2, help="nodes, the head included (default 2)")
    ap.add_argument("--cpus", type=int, default=2, help="logical CPUs per node (default 2)")
    ap.add_argument("--resources", default="{}", help='custom resources per node as JSON, e.g. \'{"trainer": 1}\'')
    args = ap.parse_args(argv)
    nodes = [NodeSpec(num_cpus=args.cpus, resources=json.loads(args.resources)) for _ in range(args.nodes)]
    with LocalCluster(nodes) as cluster:
        print(f"# {args.nodes}-node Ray cluster up; in another shell:\n"
              f"export RAY_ADDRESS={cluster.address} RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={cluster.token_file}\n"
              f"# dashboard and job submission: {cluster.dashboard_url}\n# Ctrl-C stops it", flush=True)
        try:
            while len(cluster.running()) == len(cluster.pids):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

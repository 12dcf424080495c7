"""`ownlm cluster up|status|down`: the real multi-node Ray cluster of cluster/local.py on this
machine, as a user command that returns while the cluster keeps running.

    ownlm cluster up --workers 2 --cpus-per-node 2   # head + 2 worker nodes, token auth on
    eval "$(ownlm cluster status | grep ^export)"    # this shell now drives it
    ownlm submit -- ownlm run --config debug
    ownlm cluster down                                # exactly the processes `up` started

The cluster's description (its temp dir, ports, token file and node processes) is kept in a
state file (~/.ownlm/cluster.json, or --state FILE), which is how `status` and `down` find it.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cluster.local import ClusterError, LocalCluster, NodeSpec
from model.errors import UsageError, UserError
from pipeline.commands.command import Command, Invocation

DEFAULT_STATE = Path("~/.ownlm/cluster.json")


def state_path(args: argparse.Namespace) -> Path:
    return Path(args.state or DEFAULT_STATE).expanduser()


def load_cluster(path: Path) -> LocalCluster | None:
    """The cluster the state file describes, or None when there is none (or it has stopped)."""
    if not path.exists():
        return None
    try:
        cluster = LocalCluster.attach(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"cluster: the state file {path} does not describe a cluster ({e}); remove it") from e
    return cluster


def client_env(cluster: LocalCluster) -> dict[str, str]:
    """What a client of the cluster needs: RAY_ADDRESS (a driver joins it, `ownlm submit` and
    `ownlm jobs` reach its job API through it) and the token variables."""
    return {"RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(cluster.token_file)}


def up(inv: Invocation) -> int:
    args, path = inv.args, state_path(inv.args)
    if args.workers < 0 or args.cpus_per_node < 1:
        raise UsageError("cluster up: --workers takes 0 or more, --cpus-per-node 1 or more")
    try:
        resources = json.loads(args.resources)
    except ValueError as e:
        raise UsageError(f"cluster up: --resources takes a JSON object, e.g. '{{\"slot\": 1}}' ({e})") from e
    running = load_cluster(path)
    if running is not None and running.running():
        raise UserError(f"cluster up: a cluster is already up (state in {path}, dashboard {running.dashboard_url}): "
                        "`ownlm cluster down` first, or --state OTHER_FILE for a second one")
    nodes = [NodeSpec(num_cpus=args.cpus_per_node, resources=dict(resources),
                      object_store_bytes=args.object_store_mb * 1024 ** 2) for _ in range(1 + args.workers)]
    print(f"ownlm: starting a Ray cluster on this machine: a head and {args.workers} worker node(s), "
          f"{args.cpus_per_node} CPU(s) each", flush=True)
    cluster = LocalCluster(nodes)
    try:
        cluster.start()
    except ClusterError as e:
        raise UserError(f"cluster up: {e}") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cluster.state(), indent=2))
    print(f"ownlm: cluster up; `ownlm cluster down` stops it (state in {path}, logs in {cluster.dir})")
    print_status(cluster, as_json=False)
    return 0


def status(inv: Invocation) -> int:
    path = state_path(inv.args)
    cluster = load_cluster(path)
    if cluster is None or not cluster.running():
        where = f"the state file {path} names one that has stopped" if cluster else f"no state file {path}"
        raise UserError(f"cluster status: no cluster is up ({where}); start one with `ownlm cluster up`")
    print_status(cluster, as_json=inv.args.json)
    return 0


def print_status(cluster: LocalCluster, as_json: bool) -> None:
    env = client_env(cluster)
    nodes = node_table(cluster)
    if as_json:
        print(json.dumps({"dashboard_url": cluster.dashboard_url, "nodes": nodes, "env": env,
                          "address": cluster.address, "log_dir": str(cluster.dir)}))
        return
    print(f"dashboard and job API: {cluster.dashboard_url}")
    print(f"nodes ({len(nodes)}):")
    for n in nodes:
        resources = ", ".join(_resource(k, v) for k, v in sorted(n["resources"].items()) if not k.startswith("node:"))
        print(f"  {n['node_id'][:12]}  {'head  ' if n['is_head'] else 'worker'}  {n['state']:<5}  {resources}")
    print("to use it from a shell:")
    print("export " + " ".join(f"{k}={v}" for k, v in env.items()))


def _resource(name: str, value: float) -> str:
    return f"{name} {value / 1024 ** 3:.1f} GiB" if "memory" in name else f"{name} {value:g}"


def node_table(cluster: LocalCluster) -> list[dict]:
    """Every node of the cluster with its resources, from Ray's state API (through the dashboard)."""
    os.environ.update(client_env(cluster))  # before Ray is imported: it reads the token variables once
    from ray.util.state import list_nodes

    try:
        nodes = list_nodes(address=cluster.dashboard_url, detail=True, raise_on_missing_output=False)
    except Exception as e:  # Ray's state client raises its own RayStateApiException and plain ConnectionErrors
        raise UserError(f"cluster status: the cluster's dashboard at {cluster.dashboard_url} does not answer "
                        f"({e}); `ownlm cluster down` and up again") from e
    return [{"node_id": n.node_id, "ip": n.node_ip, "is_head": bool(n.is_head_node), "state": n.state,
             "resources": dict(n.resources_total)} for n in sorted(nodes, key=lambda n: not n.is_head_node)]


def down(inv: Invocation) -> int:
    path = state_path(inv.args)
    cluster = load_cluster(path)
    if cluster is None:
        raise UserError(f"cluster down: no cluster is up (no state file {path})")
    alive = len(cluster.running())
    cluster.stop()
    path.unlink()
    print(f"ownlm: cluster down ({alive} node(s) were running; their processes and {cluster.dir} are gone)")
    return 0


ACTIONS = {"up": up, "status": status, "down": down}


def cluster_command(inv: Invocation) -> int:
    return ACTIONS[inv.args.action](inv)


def _arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state", metavar="FILE", help=f"the cluster's state file (default {DEFAULT_STATE})")
    u = sub.add_parser("up", parents=[state], help="start a head and N worker nodes here; returns when all are up")
    u.add_argument("--workers", type=int, default=1, metavar="N", help="worker nodes beside the head (default 1)")
    u.add_argument("--cpus-per-node", type=int, default=2, metavar="C", help="logical CPUs of each node (default 2)")
    u.add_argument("--resources", default="{}", metavar="JSON",
                   help="custom resources of each node, e.g. '{\"slot\": 1}' (one train worker per node with "
                        "--set train.resources_per_worker={slot: 1})")
    u.add_argument("--object-store-mb", type=int, default=200, metavar="MB",
                   help="object store of each node (default 200)")
    s = sub.add_parser("status", parents=[state], help="dashboard URL, nodes and their resources, client environment")
    s.add_argument("--json", action="store_true", help="one JSON object: dashboard_url, nodes, env")
    sub.add_parser("down", parents=[state], help="stop exactly the processes `up` started")


CLUSTER = Command(
    name="cluster", help="a real multi-node Ray cluster on this machine: up, status, down", run=cluster_command,
    arguments=_arguments,
    description="`up` starts a head and --workers worker nodes on this machine, each its own raylet with its own "
                "resources, ports and object store, with token authentication on and a token of its own, all "
                "bound to 127.0.0.1; `status` prints the dashboard URL, the nodes and the `export` line a client "
                "shell needs (--json for scripts); `down` stops exactly the processes `up` started.",
    epilog="Example: ownlm cluster up --workers 1 && eval \"$(ownlm cluster status | grep ^export)\" && "
           "ownlm submit -- ownlm run --config debug")

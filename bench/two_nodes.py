"""A benchmark's job on the local multi-node cluster of cluster/local.py, beside one node.

`run_on_local_cluster(argv, nodes, cores)` starts `nodes` raylets that split `cores` logical
CPUs between them (token authentication on, as `ownlm cluster up` does), runs `argv` as a driver
of that cluster and stops it afterwards; the command's last stdout line comes back (a
benchmark's JSON). The driver is a process of its own because Ray keeps the first auth token a
process used: a benchmark that already ran on a local instance cannot join another cluster.

On one machine the nodes share its cores, so a run there against a run on one node of the same
total CPUs measures what crossing nodes costs (scheduling across raylets, blocks moving between
object stores), not added capacity.
"""
from __future__ import annotations

import subprocess


def run_on_local_cluster(argv: list[str], nodes: int, cores: int, timeout_s: float = 3600) -> str:
    from cluster.local import LocalCluster, NodeSpec

    if cores < nodes:
        raise ValueError(f"{cores} CPUs cannot be split among {nodes} nodes")
    per_node = [cores // nodes + (1 if i < cores % nodes else 0) for i in range(nodes)]
    with LocalCluster([NodeSpec(num_cpus=n) for n in per_node]) as cluster:
        proc = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"the run on the {nodes}-node cluster failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def nodes_that_ran_tasks() -> int:
    """How many nodes ran at least one finished task of this driver's job (Ray's state API)."""
    import ray
    from ray.util.state import list_tasks

    job = ray.get_runtime_context().get_job_id()
    tasks = list_tasks(filters=[("job_id", "=", job), ("state", "=", "FINISHED")], limit=10_000,
                       raise_on_missing_output=False)
    return len({t.node_id for t in tasks if t.node_id})

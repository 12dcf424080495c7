"""How many trials run at once, so that running trials always get their Train workers.

A trial is a driver (DRIVER_CPUS, it only waits on its Train controller, which asks for none)
plus a Train run of train.num_workers workers, each holding train.cpus_per_worker CPUs (and a
GPU with use_gpu) for its whole life. The training loop reads packed shards itself, without
Ray Data tasks, so nothing else has to fit beside the workers. Admitting only as many trials as
the cluster's resources hold means every started trial gets its workers; admitting more would
leave trial drivers waiting on placement groups that cannot be placed until another trial ends.
"""
from __future__ import annotations

import math

from pipeline.config import TrainConfig

DRIVER_CPUS = 0.01


def trial_resources(train: TrainConfig) -> dict[str, float]:
    """What one trial holds while it runs: its workers' CPUs (and GPUs, and extra resources) plus its driver's."""
    need = {"CPU": train.num_workers * train.cpus_per_worker + DRIVER_CPUS}
    if train.use_gpu:
        need["GPU"] = float(train.num_workers)
    for name, amount in train.resources_per_worker.items():
        need[name] = need.get(name, 0.0) + train.num_workers * amount
    return need


def max_concurrent(cluster: dict[str, float], train: TrainConfig, requested: int | None,
                   trials: int) -> tuple[int, str]:
    """(trials at once, why): the fewest whole trials any resource allows, capped by `requested`
    and by the number of trials. Raises ValueError when not even one trial fits."""
    need = trial_resources(train)
    fits = {name: math.floor(cluster.get(name, 0.0) / amount + 1e-9) for name, amount in need.items()}
    limit = min(fits.values())
    if limit < 1:
        short = ", ".join(f"{n} {amount:g} (the cluster has {cluster.get(n, 0.0):g})" for n, amount in need.items()
                          if fits[n] < 1)
        raise ValueError(f"one trial needs {short}: lower train.num_workers or train.cpus_per_worker, or "
                         f"add resources to the cluster")
    binding = min(fits, key=fits.get)
    why = f"{binding} {cluster.get(binding, 0):g} / {need[binding]:g} per trial"
    if requested is not None and requested < limit:
        return min(requested, trials), "tune.max_concurrent_trials"
    return min(limit, trials), why

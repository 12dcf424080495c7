"""Starting or joining Ray for a command, sized so that data tasks fit beside the train workers."""
from __future__ import annotations

import logging
import os

from pipeline.config import Config

# CPUs kept free for Ray Data tasks while training holds its workers' CPUs: with none free, ingest
# waits forever ("Cluster resources are not enough ... may hang forever").
DATA_CPUS = 2


def local_cpus(cfg: Config) -> int:
    """Logical CPUs for a local instance: the machine's, or enough for the workers plus data tasks.

    Logical CPUs are a scheduling budget, not threads: each train worker runs
    torch with `cpus_per_worker` threads, so over-subscribing the budget on a
    small laptop costs a little contention, never a hang.
    """
    if cfg.cluster.num_cpus:
        return cfg.cluster.num_cpus
    needed = int(cfg.train.num_workers * cfg.train.cpus_per_worker + 0.999) + DATA_CPUS
    return max(os.cpu_count() or 1, needed)


def ensure_ray(cfg: Config, quiet: bool = True):
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if quiet:
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # The dashboard stays on: Ray Train's controller polls the state API it serves, and without it
    # logs a warning every few seconds.
    kwargs = dict(logging_level=logging.WARNING)
    if cfg.cluster.address:
        ray.init(address=cfg.cluster.address, **kwargs)
    else:
        ray.init(num_cpus=local_cpus(cfg), **kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    return ray

"""Starting or joining Ray for a command, sized so that data tasks fit beside the train workers."""
from __future__ import annotations

import logging
import os
import sys

from model.errors import UsageError
from pipeline import console
from pipeline.config import Config

AUTH_MODE_ENV = "RAY_AUTH_MODE"

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


def tune_ray_data_for_local_files() -> None:
    """Environment defaults for a Ray instance started here, set before `ray.init` so workers inherit them.

    Ray Data's Parquet reader starts 32 footer-reading actors for every `read_parquet`, sized for
    object stores where footer reads wait on the network. On local disk they wait on nothing,
    and 32 worker processes cost seconds of start-up per read on a laptop (2 s of a 4 s read of
    two files on 2 cores). A value the user sets wins.
    """
    os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "2")


def cluster_address(cfg: Config) -> str | None:
    """The cluster to join: `cluster.address`, else the one a Ray Job's driver finds in RAY_ADDRESS.

    Inside a job (`ownlm submit`) Ray sets RAY_ADDRESS to the cluster's GCS address. An http(s)
    value is a dashboard URL, which Ray's docs have users export for the job CLI (and `ownlm
    submit` reads it too); `ray.init` cannot join it, so a local run then starts its own Ray.
    """
    env = os.environ.get("RAY_ADDRESS", "")
    return cfg.cluster.address or (env if env and not env.startswith(("http://", "https://")) else None)


def require_token_auth(cfg: Config) -> None:
    """Refuse to start or join Ray with token authentication off, unless the config says so.

    Ray 2.60 binds its GCS, raylet and worker gRPC ports on all interfaces even for a local
    instance, so the token is what keeps others out. Unset, RAY_AUTH_MODE is set to `token` here
    (Ray's own default for a new local instance, and for joining a cluster it makes a missing
    token an error instead of an unauthenticated connection), before Ray is imported: Ray reads
    the variable once, at import, and a later change would leave it of two minds."""
    mode = os.environ.get(AUTH_MODE_ENV)
    if mode is not None and mode.lower() != "token" and not cfg.cluster.allow_unauthenticated:
        raise UsageError(
            f"{AUTH_MODE_ENV}={mode} turns Ray's token authentication off, and Ray listens on every network "
            f"interface: anyone who can reach this machine could run code in it. Unset {AUTH_MODE_ENV} (ownlm "
            "uses token authentication), or, on a closed network only, --set cluster.allow_unauthenticated=true")
    if mode is None and "ray" not in sys.modules:
        os.environ[AUTH_MODE_ENV] = "token"


def ensure_ray(cfg: Config, quiet: bool = True):
    require_token_auth(cfg)
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if quiet:
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # The dashboard stays on: Ray Train's controller polls the state API it serves, and without it
    # logs a warning every few seconds.
    kwargs = dict(logging_level=logging.INFO if console.verbose() else logging.WARNING)
    address = cluster_address(cfg)
    if address:
        ray.init(address=address, **kwargs)
    else:
        tune_ray_data_for_local_files()
        ray.init(num_cpus=local_cpus(cfg), dashboard_host=cfg.cluster.dashboard_host, **kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    console.quiet_ray_data()
    return ray

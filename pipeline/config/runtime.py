"""Where a run keeps its files, records its metrics and finds its Ray cluster."""
from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class StorageConfig(Section):
    root: str = "./ownlm-out"
    """Every artifact (sample corpus, curated data, tokens, checkpoints, MLflow store) lives under here.
    A local folder; `--root DIR` overrides it."""


class TrackingConfig(Section):
    enabled: bool = True
    """Record params, metrics and artifacts in MLflow."""
    uri: str | None = None
    """MLflow tracking URI (a server: `http://host:5000`, see `ownlm tracking-server`); None means
    MLFLOW_TRACKING_URI when that is set, else `sqlite:///<root>/mlflow.db` (no server needed)."""
    experiment: str = "ownlm"
    """One experiment per project."""
    model_name: str | None = None
    """The MLflow registered model (`ownlm register`, aliases `champion` and `challenger`); None: the
    experiment's name."""
    register_alias: str | None = None
    """An alias `ownlm register` gives the version it registers (`--alias challenger`)."""


class ClusterConfig(Section):
    address: str | None = None
    """Ray address to connect to (`auto`, `ray://host:10001`); None starts a local Ray instance."""
    num_cpus: int | None = Field(default=None, ge=1)
    """Logical CPUs for a local Ray instance; None sizes it so data tasks fit beside the train workers."""
    dashboard_host: str = "127.0.0.1"
    """Where a local Ray instance's dashboard (and job API) listens. Loopback unless you mean to
    expose it: whoever reaches it can submit jobs (README, "Security")."""
    allow_unauthenticated: bool = False
    """Start or join Ray even though RAY_AUTH_MODE turns token authentication off. Ray binds its
    gRPC ports on every interface, so without a token anyone who can reach this machine can run
    code in it: leave this false unless the network itself is closed."""

"""MLflow runs: one experiment per project, one parent run per `ownlm run`, one nested run per
stage (a stage run on its own is a top-level run). Params are the flattened config; tags name
the stage, its input fingerprints and the git commit. When tracking is disabled every call is
a no-op, so stages never branch on it.
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from evaluation.names import clean_metric_name
from model.errors import UserError
from pipeline import console, storage
from pipeline.config import Config
from pipeline.environ import scoped_env
from pipeline.tracking.server import CLIENT_PASSWORD_ENV, CLIENT_USERNAME_ENV, check_server, is_server_uri


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def ui_command(cfg: Config) -> str:
    """The command that opens MLflow on this config's runs (a server's own address is its UI)."""
    if is_server_uri(cfg.tracking_uri):
        return cfg.tracking_uri
    return f"mlflow ui --backend-store-uri {cfg.tracking_uri}"


class Tracker:
    """Wraps the MLflow fluent API for one pipeline invocation.

    A tracking server that is down when the tracker is made is a UserError naming it, before any
    work starts. One that fails later (stopped, unreachable) costs a warning, once: the stage goes
    on, its results on disk, and the tracker records nothing more rather than stall every call
    on MLflow's retries."""

    def __init__(self, cfg: Config, enabled: bool | None = None):
        """`enabled=False` makes a tracker that records nothing whatever the config says (a command
        that prints its result and keeps no record, such as `ownlm generate --prompt`)."""
        self.enabled = cfg.tracking.enabled if enabled is None else enabled and cfg.tracking.enabled
        self.uri = cfg.tracking_uri
        self.experiment = cfg.tracking.experiment
        self.cfg = cfg
        self.lost: str | None = None
        """Why logging stopped (the first failure), or None while it works."""
        if self.enabled:
            import mlflow

            if is_server_uri(self.uri):
                check_server(self.uri)
                # MLflow retries a failed request 7 times with backoff (about 4 minutes): a server
                # that went away would stall a stage that long. A few tries ride out a restart.
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
                if not console.verbose():  # MLflow prints a "View run at" line per run; ownlm names the UI once
                    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            cfg.root.mkdir(parents=True, exist_ok=True)
            # set_tracking_uri also exports MLFLOW_TRACKING_URI for subprocesses; ownlm reads that
            # variable as the user's choice of server (RootConfig.tracking_uri), so leave it as the
            # user set it, or a later command in this process would log to this root's store.
            user_uri = os.environ.get("MLFLOW_TRACKING_URI")
            mlflow.set_tracking_uri(self.uri)
            if user_uri is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = user_uri
            with refused_credentials(self.uri):
                if mlflow.get_experiment_by_name(self.experiment) is None:
                    # Artifacts beside the SQLite store (under the root by default), so one folder holds everything.
                    location = (Path(self.uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri() \
                        if self.uri.startswith("sqlite:///") else None
                    mlflow.create_experiment(self.experiment, artifact_location=location)
                mlflow.set_experiment(self.experiment)

    @contextlib.contextmanager
    def run(self, name: str, *, stage: str | None = None, tags: dict[str, str] | None = None,
            log_config: bool = True) -> Iterator["Tracker"]:
        """A run (nested when another is active); params = the flattened config."""
        if not self.enabled:
            yield self
            return
        import mlflow

        nested = mlflow.active_run() is not None
        all_tags = {"ownlm.stage": stage or name}
        commit = git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        all_tags.update(tags or {})
        if self._call("start the run", mlflow.start_run, run_name=name, nested=nested, tags=all_tags) is None:
            yield self
            return
        status = "FAILED"
        try:
            if log_config:
                self._call("log the config", mlflow.log_params, {k: _param(v) for k, v in self.cfg.flat().items()})
            yield self
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._end_run(status)

    def _end_run(self, status: str) -> None:
        import mlflow

        if self.lost is None:
            self._call("end the run", mlflow.end_run, status)
            return
        # Logging is lost: close the run locally without waiting on retries to a server that is gone.
        with _no_retries(), contextlib.suppress(Exception):
            mlflow.end_run(status)

    def _call(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs), or None (with one warning for the tracker's life) when MLflow fails."""
        if self.lost is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except logging_errors() as e:
            self.lost = f"{what}: {_short(e)}"
            warn_lost(self.uri, self.lost)
            return None

    @property
    def run_id(self) -> str | None:
        if not self.enabled:
            return None
        import mlflow

        run = mlflow.active_run()
        return run.info.run_id if run else None

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.enabled:
            import mlflow

            self._call("set tags", mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            import mlflow

            clean = {clean_metric_name(k): float(v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and math.isfinite(v)}
            if clean:
                self._call("log metrics", mlflow.log_metrics, clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled and storage.exists(path):
            import mlflow

            path = storage.local_copy(path)  # MLflow uploads local files: a remote one is fetched first
            if path.is_dir():
                self._call("log artifacts", mlflow.log_artifacts, str(path), artifact_path=artifact_path)
            else:
                self._call("log an artifact", mlflow.log_artifact, str(path), artifact_path=artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            import mlflow

            self._call("log text", mlflow.log_text, text, artifact_file)

    def ui_command(self) -> str:
        return ui_command(self.cfg)


def logging_errors() -> tuple[type[BaseException], ...]:
    """What a failed MLflow call raises: MLflow's exception (a refused or failed request, after its
    retries) and the OS's (a refused connection, a full disk under a local store)."""
    from mlflow.exceptions import MlflowException

    return MlflowException, OSError


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def warn_lost(uri: str, what: str) -> None:
    print(f"ownlm: warning: could not log to MLflow at {uri} ({what}); the work goes on and its results stay on "
          "disk, but nothing more is recorded in MLflow by this process", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _no_retries():
    """MLflow reads its retry count on every request: none, for calls to a server known to be gone."""
    with scoped_env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"):
        yield


@contextlib.contextmanager
def refused_credentials(uri: str):
    """A server that refuses the request (basic auth on, no or wrong credentials) as a UserError."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        text = str(e)
        if "401" in text or "403" in text or "UNAUTHENTICATED" in text or "PERMISSION_DENIED" in text:
            raise UserError(f"the MLflow tracking server at {uri} refused the request ({_short(e, 160)}): set "
                            f"{CLIENT_USERNAME_ENV} and {CLIENT_PASSWORD_ENV} to an account it knows") from e
        raise


class RemoteMetricLogger:
    """Logs metrics to an existing run from another process (a Ray Train worker, rank 0 only)."""

    def __init__(self, uri: str | None, run_id: str | None):
        self.client = None
        self.uri, self.run_id = uri, run_id
        if uri and run_id:
            from mlflow import MlflowClient

            self.client = MlflowClient(tracking_uri=uri)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(clean_metric_name(k), float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(v)]
        if batch:
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except logging_errors() as e:  # the tracking server went away: train on, say so once
                warn_lost(self.uri, f"log metrics at step {step}: {_short(e)}")
                self.client = None


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


class ChildRuns:
    """Nested runs under an existing parent, opened from any process (a Tune trial's driver) and
    found again by a key tag (a resumed trial keeps logging to its run instead of opening another)."""

    KEY_TAG = "ownlm.child"

    def __init__(self, uri: str | None, parent_run_id: str | None):
        self.client, self.parent, self.uri = None, parent_run_id, uri
        if uri and parent_run_id:
            from mlflow import MlflowClient

            self.client = MlflowClient(tracking_uri=uri)

    def _guarded(self, what: str, fn, *args, **kwargs):
        """fn(...), or None once MLflow has failed (one warning; the trial goes on unrecorded)."""
        if self.client is None:
            return None
        try:
            return fn(*args, **kwargs)
        except logging_errors() as e:
            warn_lost(self.uri, f"{what}: {_short(e)}")
            self.client = None
            return None

    def open(self, key: str, name: str, params: dict[str, Any], tags: dict[str, str]) -> str | None:
        """The run id of the parent's child tagged `key`, created (with params and tags) if none is."""
        return self._guarded(f"open the run of {key}", self._open, key, name, params, tags)

    def _open(self, key: str, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        found = self.find(key)
        if found:
            self.client.update_run(found, status="RUNNING")
            return found
        experiment = self.client.get_run(self.parent).info.experiment_id
        all_tags = {"mlflow.parentRunId": self.parent, "mlflow.runName": name, self.KEY_TAG: key, **tags}
        commit = git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        run_id = self.client.create_run(experiment, run_name=name, tags=all_tags).info.run_id
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, _param(v)) for k, v in params.items()])
        return run_id

    def find(self, key: str) -> str | None:
        if self.client is None:
            return None
        experiment = self.client.get_run(self.parent).info.experiment_id
        runs = self.client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{self.parent}' "
                                                                   f"and tags.`{self.KEY_TAG}` = '{key}'")
        return runs[0].info.run_id if runs else None

    def close(self, key: str, status: str, tags: dict[str, Any] | None = None,
              metrics: dict[str, float] | None = None) -> None:
        """End the child tagged `key` (status FINISHED, FAILED or KILLED), with final tags and metrics."""
        self._guarded(f"close the run of {key}", self._close, key, status, tags, metrics)

    def _close(self, key: str, status: str, tags: dict[str, Any] | None, metrics: dict[str, float] | None) -> None:
        run_id = self.find(key)
        if run_id is None:
            return
        for k, v in (tags or {}).items():
            self.client.set_tag(run_id, k, str(v))
        clean = {clean_metric_name(k): float(v) for k, v in (metrics or {}).items()
                 if isinstance(v, (int, float)) and math.isfinite(v)}
        for k, v in clean.items():
            self.client.log_metric(run_id, k, v)
        self.client.set_terminated(run_id, status=status)

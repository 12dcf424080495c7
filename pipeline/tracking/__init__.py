"""Everything that talks to MLflow lives in this package, and nothing outside it imports mlflow.

    runs.py   Tracker (runs, params, metrics, artifacts for one command), RemoteMetricLogger
              (metrics from a Ray Train worker into the driver's run), ChildRuns (nested runs
              opened from another process: one per Tune trial)
    registry.py the model registry: versions, aliases, tags, `models:/` URIs resolved to a local
              checkpoint (`resolve_checkpoint`, applied by the CLI to every path flag)
    pyfunc.py   a checkpoint as an MLflow pyfunc model (what a registered version loads as)
"""
from pipeline.tracking.runs import ChildRuns, RemoteMetricLogger, Tracker, git_commit, ui_command

__all__ = ["ChildRuns", "RemoteMetricLogger", "Tracker", "git_commit", "ui_command"]

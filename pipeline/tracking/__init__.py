"""Everything that talks to MLflow lives in this package, and nothing outside it imports mlflow.

    runs.py   Tracker (runs, params, metrics, artifacts for one command) and RemoteMetricLogger
              (metrics from a Ray Train worker into the driver's run)
    registry.py the model registry: versions, aliases, tags, `models:/` URIs resolved to a local
              checkpoint (`resolve_checkpoint`, applied by the CLI to every path flag)
    pyfunc.py   a checkpoint as an MLflow pyfunc model (what a registered version loads as)
"""
from pipeline.tracking.runs import RemoteMetricLogger, Tracker, git_commit, ui_command

__all__ = ["RemoteMetricLogger", "Tracker", "git_commit", "ui_command"]

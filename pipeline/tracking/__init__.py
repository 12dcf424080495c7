"""Everything that talks to MLflow lives in this package, and nothing outside it imports mlflow.

    runs.py   Tracker (runs, params, metrics, artifacts for one command) and RemoteMetricLogger
              (metrics from a Ray Train worker into the driver's run)
"""
from pipeline.tracking.runs import RemoteMetricLogger, Tracker, git_commit, ui_command

__all__ = ["RemoteMetricLogger", "Tracker", "git_commit", "ui_command"]

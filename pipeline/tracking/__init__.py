"""Everything that talks to MLflow lives in this package, and nothing outside it imports mlflow.

    runs.py   Tracker (runs, params, metrics, artifacts for one command) and RemoteMetricLogger
              (metrics from a Ray Train worker into the driver's run), ChildRuns (nested runs
              opened from another process: one per Tune trial)
"""
from pipeline.tracking.runs import ChildRuns, RemoteMetricLogger, Tracker, git_commit, ui_command

__all__ = ["ChildRuns", "RemoteMetricLogger", "Tracker", "git_commit", "ui_command"]

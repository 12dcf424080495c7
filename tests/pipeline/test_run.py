"""The runner: an unchanged pipeline is decided from the stage records alone, without Ray or MLflow."""
from __future__ import annotations

import pytest

from pipeline import run
from pipeline.config import load_config


def test_a_rerun_with_nothing_to_do_starts_neither_ray_nor_mlflow(tmp_path, monkeypatch, capsys):
    cfg = load_config(None, root=str(tmp_path))
    first = run.run_pipeline(cfg, only=["sample"])
    assert first["ran"] == ["sample"]

    real_tracker = run.Tracker

    def refuse(*args, **kwargs):
        raise AssertionError("an unchanged rerun must not start Ray or open MLflow")

    def tracker(cfg, enabled=None):  # a disabled tracker (for the checks) touches no MLflow
        return real_tracker(cfg, enabled) if enabled is False else refuse()

    monkeypatch.setattr(run, "Tracker", tracker)
    monkeypatch.setattr(run, "ensure_ray", refuse)
    again = run.run_pipeline(cfg, only=["sample"])
    assert again["ran"] == [] and again["summaries"]["sample"] == first["summaries"]["sample"]
    assert "== sample: unchanged, skipped" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="must not start"):  # forced: it runs, so it tracks
        run.run_pipeline(cfg, only=["sample"], from_stage="sample")

"""One trial of the search: the Tune trainable, which runs the same Ray Train run as `ownlm train`.

The trainable is a plain function (Train V2's pattern for Tune): it builds the trial's config
from the sampled values, the TorchTrainer of pipeline/train/launch.py with one more Ray Train
callback, TuneReportCallback, which forwards rank 0's reports (one per validation) to Tune, and
calls `fit()`. The Train run's name is stable per trial (and per PBT generation), so a trial
that Tune restarts (`--resume`) finds its run in storage and resumes from its last checkpoint.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from model.errors import UserError
from pipeline.config import ConfigError
from pipeline.storage import resolve
from pipeline.tracking import ChildRuns
from pipeline.tune.space import GENERATION, INIT_CHECKPOINT, apply, sampled


class TrialError(UserError, RuntimeError):
    """A trial that could not run or failed: its one-line reason goes in the results table."""


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares, JSON-safe (handed to the trainable with tune.with_parameters)."""

    raw: dict
    """The trial config before sampled values (pipeline.tune.space.trial_raw)."""
    tokens_dir: str
    """The packed tokens: a folder or a URI."""
    storage: str
    """Ray Train's storage path for the trials' runs (a folder or a URI)."""
    local_dir: str
    """This machine's folder of the search: the search folder itself, or under a URI root a folder
    in this node's cache (storage.cache_root)."""
    experiment: str
    """The search's name: the trials' Train runs are named `<experiment>-<trial id>-g<generation>`."""
    tracking_uri: str | None
    parent_run_id: str | None
    """The MLflow run of the search: each trial opens a nested run under it."""
    checkpoint_every_report: bool = False
    """PBT: every validation is also a checkpoint, so an exploit copies the latest state."""
    storage_env: dict = field(default_factory=dict)
    """The storage variables of the command (storage.worker_env): a trial's process resolves the
    URIs of the tokens and of Ray Train's storage with the same endpoint and credentials."""


def run_name(setup: TrialSetup, trial_id: str, generation: int) -> str:
    return f"{setup.experiment}-{trial_id}-g{generation}"


def run_trial(config: dict, setup: TrialSetup) -> None:
    """The trainable. Raises TrialError (the trial ends as failed, with that reason) when the
    sampled config is refused, the Train run fails, or the loss became non-finite."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipeline.train import launch

    # Each trial runs in its own actor process (reuse_actors=False), started without the command's
    # environment: the storage variables are set for the whole of that process.
    os.environ.update(setup.storage_env)
    trial_id = tune.get_context().get_trial_id()
    values = sampled(config)
    try:
        cfg = apply(setup.raw, values, source=f"trial {trial_id}")
    except ConfigError as e:
        raise TrialError(f"sampled config refused: {e}") from e
    if setup.checkpoint_every_report:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"checkpoint_every": cfg.train.eval_every})})
    generation = int(config.get(GENERATION, 0))
    name = run_name(setup, trial_id, generation)
    runs = ChildRuns(setup.tracking_uri, setup.parent_run_id)
    mlflow_run = runs.open(trial_id, name=f"trial {trial_id}", params={**values, "trial_id": trial_id},
                           tags={"ownlm.stage": "tune-trial", "ownlm.trial_id": trial_id})
    try:
        job = replace(launch.build_job(cfg, resolve(setup.tokens_dir), mlflow_run),  # a folder or a URI
                      init_checkpoint=config.get(INIT_CHECKPOINT))
        log_path = launch.failure_log_path(setup.storage, Path(setup.local_dir), name)
        trainer = launch.trainer_for(job, cfg.train, setup.storage, name, log_path, callbacks=[TuneReportCallback()])
        result = launch.fit(trainer, cfg.train, setup.storage, name, log_path)
        launch.raise_if_diverged(result)
    except UserError as e:
        raise TrialError(str(e)) from e

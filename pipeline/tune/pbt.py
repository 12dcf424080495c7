"""Population-based training over trials whose checkpoints are Ray Train's, not Tune's.

Train V2's TuneReportCallback creates no Tune checkpoint: each report carries the path of the
checkpoint the Train run committed (`checkpoint_path`). Ray's PBT exploits only through a Tune
checkpoint, so it would skip every exploit. This scheduler keeps each trial's latest Train
checkpoint path from its reports; to exploit, it gives the poor trial the better one's config
(perturbed as PBT does) plus that path and a new generation number, and restarts it: the
trainable starts a new Train run (named by the generation) whose loop loads the checkpoint
(`TrainJob.init_checkpoint`) and continues from the better trial's step.
"""
from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
from ray.tune.schedulers import PopulationBasedTraining

from pipeline.tune.space import GENERATION, INIT_CHECKPOINT

logger = logging.getLogger(__name__)


class TrainCheckpointPBT(PopulationBasedTraining):
    def __init__(self, exploit_dir: str, **kwargs):
        """exploit_dir: a folder every trial reaches, where an exploited checkpoint is copied (the
        source's Train run deletes its older checkpoints as it goes: train.keep_checkpoints)."""
        super().__init__(**kwargs)
        self.exploit_dir = Path(exploit_dir)
        self._train_checkpoints: dict[str, str] = {}
        self._next: tuple[str, int] = ("", 0)
        """(copied checkpoint, generation) of the exploit in progress, for _get_new_config."""
        self.exploits: list[tuple[str, str, str]] = []
        """(target trial, source trial, checkpoint path) of every exploit, in order."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get(CHECKPOINT_PATH_KEY):
            self._train_checkpoints[trial.trial_id] = result[CHECKPOINT_PATH_KEY]
        return super().on_trial_result(tune_controller, trial, result)

    def _checkpoint_or_exploit(self, trial, tune_controller, upper_quantile, lower_quantile):
        """A trial in the lower quantile copies one in the upper quantile that has a checkpoint
        (PBT's own rule), through the Train checkpoint path instead of a Tune checkpoint."""
        if trial not in lower_quantile:
            return
        sources = [t for t in upper_quantile if t.trial_id in self._train_checkpoints]
        if not sources:
            logger.info("[pbt] no Train checkpoint yet in the upper quantile: trial %s goes on", trial.trial_id)
            return
        source = random.choice(sources)
        generation = int(trial.config.get(GENERATION, 0)) + 1
        target = self.exploit_dir / f"{trial.trial_id}-g{generation}"
        shutil.rmtree(target, ignore_errors=True)
        try:  # the source's run may have deleted that checkpoint already (it keeps the best few)
            shutil.copytree(self._train_checkpoints[source.trial_id], target)
        except OSError as e:
            logger.info("[pbt] checkpoint of trial %s gone (%s): trial %s goes on", source.trial_id, e, trial.trial_id)
            return
        self._next = (str(target), generation)
        self._exploit(tune_controller, trial, source)
        # PBT's exploit hands the trial the source's Tune checkpoint (None here) to restore from;
        # with none the trial restarts from scratch, and its config carries the Train checkpoint.
        trial.run_metadata.checkpoint_manager._latest_checkpoint_result = None

    def _get_new_config(self, trial, trial_to_clone):
        config, operations = super()._get_new_config(trial, trial_to_clone)
        config[INIT_CHECKPOINT], config[GENERATION] = self._next
        self.exploits.append((trial.trial_id, trial_to_clone.trial_id, self._next[0]))
        print(f"[tune] PBT: trial {trial.trial_id} continues from trial {trial_to_clone.trial_id}'s checkpoint "
              f"(copied to {self._next[0]})", flush=True)
        return config, operations

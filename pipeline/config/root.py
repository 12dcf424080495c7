"""The whole config: one field per section."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.config.base import Section, flatten
from pipeline.config.curate import CurateConfig
from pipeline.config.data import DataConfig
from pipeline.config.evaluate import EvalConfig, GenerateConfig
from pipeline.config.finetune import FinetuneConfig
from pipeline.config.model import ModelSection
from pipeline.config.monitor import GateConfig, MonitorConfig
from pipeline.config.runtime import ClusterConfig, StorageConfig, TrackingConfig
from pipeline.config.serve import ServeConfig
from pipeline.config.tokens import TokenizeConfig, TokenizerConfig
from pipeline.config.train import TrainConfig
from pipeline.config.tune import TuneConfig


class Config(Section):
    storage: StorageConfig = Field(default_factory=StorageConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    data: DataConfig
    curate: CurateConfig = Field(default_factory=CurateConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @property
    def root(self) -> Path:
        return Path(self.storage.root).expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        # MLflow's own variable, as every MLflow client reads it: how a cluster's pods (or a Ray Job
        # from `ownlm submit`) learn the tracking server without a --set on every command.
        return self.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def model_name(self) -> str:
        """The MLflow registered model every version of this project's model goes under."""
        return self.tracking.model_name or self.tracking.experiment

    def flat(self) -> dict[str, Any]:
        """Dotted keys to values, for MLflow params."""
        return flatten(self.model_dump(mode="json"))

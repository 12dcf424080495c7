"""The typed pipeline config: one pydantic model per section, loaded from YAML.

A config is read once, at the command line, validated as a whole, and then crosses every
boundary as a typed object. One module per group of sections; this package's names are the
ones the rest of the project imports:

    base.py      Section (unknown keys are errors), ConfigError, flatten
    runtime.py   storage, tracking, cluster: where a run keeps files, metrics and finds Ray
    data.py      data: the raw sources (SOURCE_FORMATS, SourceConfig)
    curate.py    curate: every curation step and its thresholds
    tokens.py    tokenizer, tokenize
    model.py     model: a preset and its overrides
    monitor.py   gate, monitor: the promotion rules, what `ownlm monitor` watches and does
    train.py     train
    tune.py      tune: the hyperparameter search and its search space
    finetune.py  finetune: supervised fine-tuning (full, LoRA) on the training loop
    evaluate.py  eval, generate (sampling settings, as model.sampling.SamplingParams)
    serve.py     serve: the OpenAI-compatible server's address, scaling, batching and limits
    root.py      Config: one field per section
    load.py      load_config: YAML + --set + typed flag values + --root, every problem in one error
"""
from pipeline.config.base import ConfigError, Section, flatten
from pipeline.config.curate import CurateConfig
from pipeline.config.data import SOURCE_FORMATS, DataConfig, SourceConfig
from pipeline.config.evaluate import EvalConfig, GenerateConfig
from pipeline.config.finetune import FinetuneConfig
from pipeline.config.load import DEFAULT_PRESET, PRESET_DIR, apply_override, dump_config, load_config
from pipeline.config.load import preset_path, set_key, validate_config
from pipeline.config.model import ModelSection
from pipeline.config.monitor import GateConfig, GateRule, MonitorConfig
from pipeline.config.root import Config
from pipeline.config.runtime import ClusterConfig, StorageConfig, TrackingConfig
from pipeline.config.serve import ServeConfig
from pipeline.config.tokens import TokenizeConfig, TokenizerConfig
from pipeline.config.train import TrainConfig
from pipeline.config.tune import Distribution, TuneConfig, parse_space

__all__ = [
    "ConfigError", "Section", "flatten", "CurateConfig", "SOURCE_FORMATS", "DataConfig", "SourceConfig",
    "EvalConfig", "GenerateConfig", "FinetuneConfig",
    "DEFAULT_PRESET", "PRESET_DIR", "apply_override", "dump_config", "load_config",
    "preset_path", "set_key", "validate_config", "ModelSection", "Config", "ClusterConfig", "StorageConfig",
    "TrackingConfig", "ServeConfig", "TokenizeConfig", "TokenizerConfig", "TrainConfig", "GateConfig", "GateRule",
    "MonitorConfig", "Distribution", "TuneConfig", "parse_space",
]

"""The retraining loop of a monitor cycle: the new files curated, tokenized with the champion's own
tokenizer, training continued from the champion's weights, the result registered as `challenger` with
its lineage and taken through the gate against the champion.

Each cycle works under its own root (`<root>/monitor/cycles/<n>/`) with its own stage records, so the
project's records stay the champion's; MLflow is the project's store. Locally every step runs in this
process; with `cluster.address` set, Ray itself runs each step's work on the cluster (Ray Data for
curation and tokenization, Ray Train for training), and docs/monitoring.md shows the whole cycle
submitted as one Ray Job.
"""
from __future__ import annotations

from pipeline.config import Config
from pipeline.curate.stage import input_sources
from pipeline.layout import Layout
from pipeline.registry.lineage import UPSTREAM
from pipeline.registry.promote import Decision, promote
from pipeline.registry.stage import register_checkpoint
from pipeline.run import run_pipeline
from pipeline.stages import layout_for
from pipeline.storage import StoragePath
from pipeline.tracking import Tracker
from pipeline.tracking.registry import CHALLENGER, Registry, Version


def cycle_config(cfg: Config, work: StoragePath, files: list[StoragePath], champion_dir: StoragePath) -> Config:
    """The project's config, rooted in the cycle's folder, reading only the new files and starting
    training from the champion (the MLflow store stays the project's). Each may be a local path or
    a URI (train.init_from and the sources then are URIs the workers fetch themselves)."""
    raw = cfg.model_dump(mode="json")
    raw["storage"]["root"] = str(work)
    raw["tracking"]["uri"] = cfg.tracking_uri
    raw["train"].update(init_from=str(champion_dir), max_steps=cfg.monitor.retrain_steps or cfg.train.max_steps,
                        storage_path=None)
    sources = input_sources([str(f) for f in files])
    raw["data"].update(sources=sources["data.sources"], sample=sources["data.sample"])
    return Config.model_validate(raw)


def cycle_layout(rcfg: Config, champion_dir: StoragePath) -> Layout:
    """The cycle's layout, its tokenizer the champion's own (the checkpoint folder holds tokenizer.json)."""
    return layout_for(rcfg.root).with_paths(tokenizer=champion_dir)


def curate_new(rcfg: Config, layout: Layout) -> StoragePath:
    run_pipeline(rcfg, only=["curate"], layout=layout)
    return layout.curated


def retrain(cfg: Config, layout: Layout, rcfg: Config, cycle: Layout, champion: Version,
            registry: Registry) -> Decision:
    """Tokenize, train from the champion, register as challenger, gate against the champion on the
    project's own evaluation data."""
    run_pipeline(rcfg, only=["tokenize", "train"], layout=cycle)
    inherited = {UPSTREAM["tokenizer"]: champion.tags.get(UPSTREAM["tokenizer"], "unknown"),
                 "ownlm.retrained_from": champion.uri}
    version = register_checkpoint(rcfg, cycle, cycle.model, Tracker(rcfg), alias=CHALLENGER, extra_tags=inherited)
    return promote(cfg, layout, version, registry=registry, tracker=Tracker(cfg))

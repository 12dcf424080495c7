"""The `register` stage: the trained model becomes a new version of the registered model, with its
lineage, and goes through the promotion gate (the first version becomes `champion`; a later one is
`challenger` until it passes). `ownlm register --model CKPT [--alias challenger]` registers any
checkpoint and promotes nothing."""
from __future__ import annotations

import json

from model.errors import UsageError
from pipeline.config import Config, dump_config
from pipeline.layout import Layout, Location
from pipeline.options import ConfigFlag, PathFlag
from pipeline.registry.lineage import lineage_tags
from pipeline.registry.promote import promote
from pipeline.stage import Context, Stage
from pipeline.storage import StoragePath, local_copy, write_text
from pipeline.tracking import Tracker
from pipeline.tracking.registry import CACHE_FOLDER, CHALLENGER, Registry, Version

REGISTERED = "registered.json"
"""What the stage last registered and decided, under the registry folder."""


def require_tracking(cfg: Config) -> None:
    if not cfg.tracking.enabled:
        raise UsageError("the model registry lives in MLflow: set tracking.enabled: true")


def register_checkpoint(cfg: Config, layout: Layout, checkpoint: StoragePath, tracker: Tracker,
                        alias: str | None = None, extra_tags: dict[str, str] | None = None) -> Version:
    """A new version of `checkpoint` with its lineage tags (in a run of its own, or the active one's
    child), given `alias` when set. `extra_tags` add to or replace lineage tags (a retrained model's
    tokenizer is its parent's)."""
    require_tracking(cfg)
    if not (checkpoint / "model.safetensors").is_file():
        raise UsageError(f"--model {checkpoint}: no ownlm checkpoint there (model.safetensors missing)")
    registry = Registry(cfg)
    with tracker.run("register", stage="register", log_config=False):
        tags = lineage_tags(cfg, layout, checkpoint, parent_of=registry.parent_run)
        tags.update({"ownlm.register_run_id": tracker.run_id or "", **(extra_tags or {})})
        version = registry.register(local_copy(checkpoint), tags, dump_config(cfg))  # MLflow logs local files
    if alias:
        registry.set_alias(alias, version)
    print(f"   registered {checkpoint} as {version.uri}" + (f" (@{alias})" if alias else ""), flush=True)
    return registry.version(number=version.number)


def register_and_promote(ctx: Context) -> dict:
    """`ownlm run`: register the trained model as the challenger (or `tracking.register_alias`) and take
    it through the gate."""
    version = register_checkpoint(ctx.cfg, ctx.layout, ctx.layout.model, ctx.tracker,
                                  alias=ctx.cfg.tracking.register_alias or CHALLENGER)
    decision = promote(ctx.cfg, ctx.layout, version, tracker=ctx.tracker)
    summary = {"registry/version": version.number, "registry/promoted": int(decision.promoted),
               "decision": decision.to_dict()}
    write_text(ctx.layout.registry / REGISTERED, json.dumps(summary, indent=2))
    return summary


def register_only(ctx: Context) -> dict:
    """`ownlm register --model CKPT`: a version, with the alias asked for, and no promotion."""
    version = register_checkpoint(ctx.cfg, ctx.layout, ctx.layout.model, Tracker(ctx.cfg),
                                  alias=ctx.cfg.tracking.register_alias)
    return {"registry/version": version.number}


def check(ctx: Context) -> None:
    require_tracking(ctx.cfg)


STAGE = Stage(
    name="register",
    help="register the trained model in MLflow and promote it through the gate",
    action=register_and_promote,
    upstream=("train", "tokenize"),
    sections=("gate", "eval"),
    locations=(Location("registry", CACHE_FOLDER, "registered versions' checkpoints (downloaded), registered.json"),),
    outputs=(("registry", REGISTERED),),
    flags=(PathFlag("--model", "model", "checkpoint folder to register (then nothing is promoted)", metavar="CKPT"),
           ConfigFlag("--alias", "tracking.register_alias", help="give the new version this alias (challenger)")),
    check=check,
    direct=register_only,
    enabled=lambda cfg: cfg.tracking.enabled,
)

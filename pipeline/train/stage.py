"""The `train` stage: Ray Train on the packed tokens (pipeline/train/launch.py), the kept
checkpoint exported as the model. With `tune.enabled`, it trains the best trial's config."""
from __future__ import annotations

from model.errors import MissingInput
from pipeline.config import Config, load_config
from pipeline.layout import Location
from pipeline.options import PathFlag
from pipeline.stage import Context, Stage


def train(ctx: Context) -> dict:
    from pipeline.train.launch import run_train  # torch: only when training

    # Named by the stage fingerprint: an interrupted run with the same inputs resumes its checkpoints.
    run_name = "train-" + ctx.fingerprint[:12]
    # Forced means start over, not resume the run's last checkpoint.
    metrics = run_train(config_to_train(ctx), ctx.layout.tokens, ctx.layout.model, ctx.layout.train_runs,
                        run_name=run_name, run_id=ctx.tracker.run_id, fresh=ctx.forced)
    ctx.tracker.log_artifact(ctx.layout.model, "checkpoint")
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def config_to_train(ctx: Context) -> Config:
    """The config, or with `tune.enabled` its model and train sections from the search's best.yaml."""
    if not ctx.cfg.tune.enabled:
        return ctx.cfg
    best = load_config(best_yaml(ctx))
    print(f"   training the best trial's config: {best_yaml(ctx)}", flush=True)
    return ctx.cfg.model_copy(update={"model": best.model, "train": best.train})


def best_yaml(ctx: Context):
    return ctx.layout.tune / "best.yaml"


def check(ctx: Context) -> None:
    if ctx.cfg.tune.enabled and "tune" not in ctx.planned and not best_yaml(ctx).is_file():
        raise MissingInput(f"tune.enabled: train starts from the search's best config, but {best_yaml(ctx)} does "
                           f"not exist: run `ownlm tune` first (or set tune.enabled: false)")


STAGE = Stage(
    name="train",
    help="train the model with Ray Train (data parallel)",
    action=train,
    # tune counts only where the config enables it (the best trial's config is then trained).
    upstream=("tokenize", "tune"),
    sections=("model", "train"),
    locations=(Location("train_runs", "train", "Ray Train's storage path: run folders with their checkpoints"),
               Location("model", "model", "the final checkpoint (loadable by model.checkpoint.load_model)")),
    outputs=(("model", "config.json"),),
    flags=(PathFlag("--data", "tokens", "packed tokens folder (from `ownlm tokenize`)"),
           PathFlag("--output", "model", "folder for the final checkpoint")),
    check=check,
    uses_ray=True,
    headline=True,
)

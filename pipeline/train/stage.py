"""The `train` stage: Ray Train on the packed tokens (pipeline/train/launch.py), the kept
checkpoint exported as the model."""
from __future__ import annotations

from pipeline.layout import Location
from pipeline.options import PathFlag
from pipeline.stage import Context, Stage


def train(ctx: Context) -> dict:
    from pipeline.train.launch import run_train  # torch: only when training

    # Named by the stage fingerprint: an interrupted run with the same inputs resumes its checkpoints.
    run_name = "train-" + ctx.fingerprint[:12]
    # Forced means start over, not resume the run's last checkpoint.
    metrics = run_train(ctx.cfg, ctx.layout.tokens, ctx.layout.model, ctx.layout.train_runs,
                        run_name=run_name, run_id=ctx.tracker.run_id, fresh=ctx.forced)
    ctx.tracker.log_artifact(ctx.layout.model, "checkpoint")
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


STAGE = Stage(
    name="train",
    help="train the model with Ray Train (data parallel)",
    action=train,
    upstream=("tokenize",),
    sections=("model", "train"),
    locations=(Location("train_runs", "train", "Ray Train's storage path: run folders with their checkpoints"),
               Location("model", "model", "the final checkpoint (loadable by model.checkpoint.load_model)")),
    outputs=(("model", "config.json"),),
    flags=(PathFlag("--data", "tokens", "packed tokens folder (from `ownlm tokenize`)"),
           PathFlag("--output", "model", "folder for the final checkpoint")),
    uses_ray=True,
    headline=True,
)

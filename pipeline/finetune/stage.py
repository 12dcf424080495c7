"""The `finetune` stage: supervised fine-tuning (full or LoRA) of a checkpoint on a JSONL file,
on Ray Train with the training loop (pipeline/finetune/launch.py). In `ownlm run` it follows
`train` when `finetune.data` is set, and `eval` then scores the fine-tuned model."""
from __future__ import annotations

from pathlib import Path

from model.errors import MissingInput
from pipeline.layout import Location
from pipeline.options import ConfigFlag, PathFlag
from pipeline.stage import Context, Stage


def finetune(ctx: Context) -> dict:
    from pipeline.finetune.launch import run_finetune  # torch: only when fine-tuning

    run_name = "finetune-" + ctx.fingerprint[:12]
    metrics = run_finetune(ctx.cfg, ctx.layout.model, ctx.layout.finetuned, ctx.layout.finetune_data,
                           ctx.layout.finetune_runs, run_name=run_name, run_id=ctx.tracker.run_id, fresh=ctx.forced)
    ctx.tracker.log_artifact(ctx.layout.finetuned, "finetuned")
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def data_files(ctx: Context) -> dict:
    """The data files' contents are what the result depends on, wherever they live."""
    ft = ctx.cfg.finetune
    return {"finetune_files": {name: _file_identity(path) for name, path in (("data", ft.data), ("val", ft.val))
                               if path}}


def _file_identity(path: str) -> list:
    p = Path(path)
    if not p.is_file():
        return [path, None]
    stat = p.stat()
    return [str(p.resolve()), stat.st_size, stat.st_mtime_ns]


def check(ctx: Context) -> None:
    """The base and the data, before Ray starts; in `ownlm run` before `train` made the base,
    only that the data files are there."""
    from pipeline.finetune.launch import check_base, check_data  # torch: only when fine-tuning

    if "train" in ctx.planned and not (ctx.layout.model / "config.json").is_file():
        ft = ctx.cfg.finetune
        for path in (ft.data, ft.val):
            if path is not None and not Path(path).is_file():
                raise MissingInput(f"no fine-tuning data file at {path}")
        return
    check_base(ctx.cfg, ctx.layout.model)
    check_data(ctx.cfg, ctx.layout.model)


STAGE = Stage(
    name="finetune",
    help="fine-tune a checkpoint on a JSONL task (full or LoRA) with Ray Train",
    action=finetune,
    upstream=("train",),
    sections=("finetune", "train"),
    locations=(Location("finetune_data", "finetune-data", "the fine-tuning examples, encoded and packed"),
               Location("finetune_runs", "finetune", "Ray Train's run folders of fine-tunes, with checkpoints"),
               Location("finetuned", "finetuned", "the fine-tuned checkpoint (full, or LoRA adapters on their base)")),
    outputs=(("finetuned", "config.json"),),
    flags=(PathFlag("--model", "model", "the checkpoint to fine-tune (default: <root>/model)", metavar="CKPT"),
           ConfigFlag("--data", "finetune.data", metavar="FILE.jsonl", explicit=True,
                      help="training examples: chat, instruction or classification lines (finetune.data)"),
           ConfigFlag("--val", "finetune.val", metavar="FILE.jsonl",
                      help="validation examples (default: finetune.val_fraction of --data)"),
           ConfigFlag("--method", "finetune.method", metavar="lora|full", help="lora (default) or full"),
           PathFlag("--output", "finetuned", "folder for the fine-tuned checkpoint")),
    fingerprint_inputs=data_files,
    check=check,
    uses_ray=True,
    headline=True,
    enabled=lambda cfg: cfg.finetune.data is not None,
)

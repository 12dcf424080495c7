"""The per-worker training loop that Ray Train runs on every worker.

Short and linear, torchtitan style: build, resume, then step / log / validate /
checkpoint until the step budget is spent. Everything it needs arrives in one
JSON-safe dict (`TrainJob`), so the loop can also run in a plain process.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.packed import PackedSplit
from pipeline.train.data import Position, ShuffledBatches
from pipeline.train.schedule import build_optimizer, lr_at


@dataclass
class TrainJob:
    train: dict
    """The `train` config section (pipeline.config.TrainConfig dumped)."""
    model: dict
    """model.config.ModelConfig as a dict."""
    tokens_dir: str
    tokenizer_path: str
    tracking_uri: str | None = None
    run_id: str | None = None
    """The MLflow run that rank 0 logs metrics to."""
    metadata: dict = field(default_factory=dict)
    source_weights: dict = field(default_factory=dict)
    """Mixture weight per source name (`data.sources[].weight`), applied by the loader."""


class NonFiniteLossError(RuntimeError):
    pass


def train_loop_per_worker(job_dict: dict) -> None:
    import ray.train
    import ray.train.torch

    from model.checkpoint import load_model, load_train_state
    from model.config import ModelConfig
    from model.objectives import training_loss
    from model.transformer import Transformer
    from pipeline.tracking import RemoteMetricLogger

    job = TrainJob(**job_dict)
    tc = job.train
    # Ray Train logs every report at INFO from the workers; our own progress lines say the same.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(tc["cpus_per_worker"])))
    device = ray.train.torch.get_device()

    # --- build: model, optimizer, data; resume from the last checkpoint when Ray Train restarts us
    torch.manual_seed(tc["seed"])
    mcfg = ModelConfig.from_dict(job.model)
    step, pos, best_val = 0, Position(), float("inf")
    resume = ray.train.get_checkpoint()
    if resume:
        with resume.as_directory() as ckpt_dir:
            model, _ = load_model(ckpt_dir)
            state = load_train_state(ckpt_dir)
    else:
        model, state = Transformer(mcfg), None
    model = ray.train.torch.prepare_model(model)
    optimizer = build_optimizer(model, lr=tc["lr"], weight_decay=tc["weight_decay"],
                                betas=(tc["beta1"], tc["beta2"]))
    if state:
        optimizer.load_state_dict(state["optimizer"])
        step, pos, best_val = state["step"], Position(**state["position"]), state.get("best_val", best_val)
        torch.set_rng_state(state["torch_rng"])
    train_split = PackedSplit(job.tokens_dir, "train")
    val_split = PackedSplit(job.tokens_dir, "val")
    loader = ShuffledBatches(train_split, tc["batch_size"], rank, world, tc["seed"],
                             weights=job.source_weights)
    logger = RemoteMetricLogger(job.tracking_uri, job.run_id) if rank == 0 else None
    schedule = dict(lr=tc["lr"], warmup_steps=tc["warmup_steps"], max_steps=tc["max_steps"],
                    min_lr_ratio=tc["min_lr_ratio"])
    tokens_per_step = loader.global_batch * tc["grad_accum_steps"] * train_split.manifest.seq_len
    if rank == 0:
        print(f"[train] {world} worker(s), {sum(p.numel() for p in model.parameters()):,} params, "
              f"{len(train_split):,} train sequences, {loader.steps_per_epoch} steps/epoch, "
              f"start at step {step}", flush=True)

    # --- the loop
    window_time, window_loss, window_steps = 0.0, 0.0, 0
    while step < tc["max_steps"]:
        t0 = time.perf_counter()  # tokens/s counts training steps only, not validation or checkpoints
        lr = lr_at(step, **schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        loss_sum = 0.0
        for micro in range(tc["grad_accum_steps"]):
            rows = torch.as_tensor(loader.batch(pos), dtype=torch.long, device=device)
            pos = loader.advance(pos)
            loss = training_loss(model, rows, family=job.model.get("family", "causal"),
                                 pad_id=train_split.pad_id) / tc["grad_accum_steps"]
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at step {step} (lr {lr:.2e}) on rank {rank}: stopping before "
                    f"the optimizer step; lower train.lr or raise train.warmup_steps")
            # DDP all-reduces gradients only on the last micro-step.
            sync = micro == tc["grad_accum_steps"] - 1
            with (model.no_sync() if hasattr(model, "no_sync") and not sync else contextlib.nullcontext()):
                loss.backward()
            loss_sum += loss.item()
        grad_norm = None
        if tc["grad_clip"]:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"]).item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_time += time.perf_counter() - t0
        window_loss += loss_sum
        window_steps += 1

        metrics: dict = {}
        if step % tc["log_every"] == 0 or step == tc["max_steps"]:
            metrics.update({
                "train/loss": _mean_across_workers(window_loss / window_steps, device),
                "train/lr": lr,
                "train/tokens_per_s": tokens_per_step * window_steps / window_time,
                "train/epoch": pos.epoch + pos.step_in_epoch / loader.steps_per_epoch,
            })
            if grad_norm is not None:
                metrics["train/grad_norm"] = grad_norm
            window_time, window_loss, window_steps = 0.0, 0.0, 0
        if step % tc["eval_every"] == 0 or step == tc["max_steps"]:
            metrics["val/loss"] = validate(model, val_split, tc["batch_size"], tc["eval_batches"], rank,
                                           world, device, family=job.model.get("family", "causal"))
            best_val = min(best_val, metrics["val/loss"])
        checkpoint_now = step % tc["checkpoint_every"] == 0 or step == tc["max_steps"]
        if metrics and rank == 0:
            _print_progress(step, tc["max_steps"], metrics)
            if logger:
                logger.log(metrics, step=step)
        # Ray Train V2 hands each report to its controller, which polls every ~2 s; reporting every log
        # interval would throttle training to that pace, so only validations and checkpoints go there.
        if checkpoint_now or "val/loss" in metrics:
            state = {"optimizer": optimizer.state_dict(), "step": step, "position": asdict(pos),
                     "best_val": best_val, "torch_rng": torch.get_rng_state()}
            _report({**metrics, "step": step}, model, mcfg, job, state if checkpoint_now else None, rank)


def validate(model, split: PackedSplit, batch_size: int, max_batches: int, rank: int, world: int, device,
             family: str = "causal") -> float:
    """Token-weighted mean validation loss over the first max_batches*world batches, split across workers.

    Objectives that draw random masks use a fixed seed, so every validation scores the same task."""
    from model.objectives import loss_terms

    model.eval()
    n_rows = min(len(split), batch_size * max_batches * world)
    mine = np.arange(rank, n_rows, world)
    generator = torch.Generator(device="cpu").manual_seed(rank)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            rows = torch.as_tensor(split.rows(mine[start:start + batch_size]), dtype=torch.long, device=device)
            loss_sum, count = loss_terms(model, rows, family=family, pad_id=split.pad_id, generator=generator)
            total[0] += loss_sum.double()
            total[1] += count
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
    model.train()
    return (total[0] / total[1].clamp(min=1)).item()


def _mean_across_workers(value: float, device) -> float:
    if not torch.distributed.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return (t / torch.distributed.get_world_size()).item()


def _report(metrics: dict, model, mcfg, job: TrainJob, state: dict | None, rank: int) -> None:
    """Every worker reports (Ray Train V2 expects all of them); rank 0 attaches the checkpoint."""
    import ray.train

    from model.checkpoint import save_checkpoint

    if state is None or rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint"
        save_checkpoint(path, _unwrap(model), mcfg, tokenizer_path=job.tokenizer_path, train_state=state,
                        metadata={**job.metadata, "step": state["step"], "val_loss": metrics.get("val/loss")})
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(path)))


def _unwrap(model):
    return getattr(model, "module", model)


def _print_progress(step: int, max_steps: int, metrics: dict) -> None:
    parts = [f"step {step:>5}/{max_steps}"]
    for key, fmt in (("train/loss", "loss {:.4f}"), ("val/loss", "val_loss {:.4f}"), ("train/lr", "lr {:.2e}"),
                     ("train/tokens_per_s", "{:,.0f} tok/s")):
        if key in metrics:
            parts.append(fmt.format(metrics[key]))
    print("[train] " + " | ".join(parts), flush=True)


"""The per-worker training loop that Ray Train runs on every worker.

Short and linear, torchtitan style: `Trainer.__init__` builds (model, strategy,
optimizer, data) and resumes from Ray Train's last checkpoint; `Trainer.fit` steps,
logs, validates, checkpoints and stops (step budget, epochs, early stopping, or a
non-finite loss). Everything it needs arrives in one JSON-safe dict (`TrainJob`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.config import ModelConfig, flops_per_token
from model.objectives import loss_terms
from model.transformer import Transformer
from pipeline.config import TrainConfig
from pipeline.packed import PackedSplit
from pipeline.storage import local_copy
from pipeline.tracking import RemoteMetricLogger
from pipeline.train import checkpoints, faults, parallel
from pipeline.train.data import Position, ShuffledBatches
from pipeline.train.failures import TRACEBACK_ATTR, quiet_console_tracebacks
from pipeline.train.metrics import (
    Window,
    device_peak_flops,
    peak_memory_bytes,
    progress_line,
)
from pipeline.train.schedule import build_optimizer, lr_at
from pipeline.train.session import RaySession

STOP_NON_FINITE, STOP_EARLY = "non_finite", "early_stopping"


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
    init_from: str | None = None
    """A checkpoint folder or URI whose weights replace the random initial ones (`train.init_from`),
    loaded by the worker that needs them through its own node's cache (storage.local_copy)."""
    init_checkpoint: str | None = None
    """A checkpoint folder to start from (weights, optimizer, progress) when Ray Train has none of
    its own: a Tune trial exploited by population-based training starts from the better trial's."""


@dataclass
class Progress:
    """How far the run is; saved in every checkpoint (train_state.pt) and restored on resume."""
    step: int = 0
    position: Position = field(default_factory=Position)
    tokens_seen: int = 0
    best_val: float = math.inf
    evals_without_improvement: int = 0
    stopped: str | None = None
    """Why the run ended before its budget (early stopping), so a rerun does not train on."""

    def to_dict(self) -> dict:
        return {**asdict(self), "position": asdict(self.position)}

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**{**known, "position": Position(**d["position"])})


def train_loop_per_worker(job_dict: dict) -> dict:
    """Ray Train's entry point on every worker; rank 0's summary becomes `Result.return_value`."""
    return run_on_worker(Trainer, TrainJob, job_dict)


def run_on_worker(trainer_cls, job_cls, job_dict: dict) -> dict:
    """Build trainer_cls(job_cls(**job_dict)) on this Ray Train worker and fit it.

    An error leaves with its traceback attached (failures.TRACEBACK_ATTR), for the failure log
    that Ray Train's controller writes; the console gets no traceback (failures.py)."""
    _quiet_ray_train_reports()
    quiet_console_tracebacks()
    try:
        return trainer_cls(job_cls(**job_dict), RaySession()).fit()
    except BaseException as e:
        with contextlib.suppress(Exception):  # an exception type without __dict__ goes as it is
            setattr(e, TRACEBACK_ATTR, traceback.format_exc())
        raise


def _quiet_ray_train_reports() -> None:
    """Ray Train logs every report at INFO from every worker; our own progress lines say the same.
    Ray 2.60 names that logger by its file path, outside `ray.train`, so the run's log level misses it."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray version: nothing to quiet there
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


class Trainer:
    def __init__(self, job: TrainJob, session):
        """session: a pipeline.train.session.RaySession (or LocalSession): rank, world, device,
        resume_dir(), report(), where()."""
        self.job, self.session = job, session
        rank, world, device = session.rank, session.world, session.device
        self.rank, self.world, self.device = rank, world, device
        self.tc = tc = TrainConfig.model_validate(job.train)
        torch.set_num_threads(max(1, int(tc.cpus_per_worker)))
        self.mcfg = ModelConfig.from_dict(job.model)

        # --- model: a skeleton on the meta device, given storage by the strategy (under FSDP2 each
        # worker allocates its shards only), then the seeded initial weights or init_from's
        torch.manual_seed(tc.seed)
        self.dtype = parallel.compute_dtype(tc.mixed_precision, device)
        model = self.build_model()
        skeleton = parallel.on_meta(model)
        self.model = parallel.parallelize(model, strategy=tc.strategy, device=device, world=world,
                                          dtype=self.dtype, compile=tc.compile, cpu_offload=tc.cpu_offload)
        if skeleton:
            if self.initial_weights():
                parallel.load_weights(self.model, self.initial_weights(), rank=rank)
            else:
                parallel.init_weights(self.model, tc.seed)
        self.optimizer = build_optimizer(self.model, lr=tc.lr, weight_decay=tc.weight_decay,
                                         betas=(tc.beta1, tc.beta2))
        # Each worker's own random stream (masked/prefix objectives draw from it), restored on resume.
        _seed_all(tc.seed * 1000 + rank + 1)

        # --- data
        self.seq_len = self.build_data()
        self.loader = ShuffledBatches(self.train_split, tc.batch_size, rank, world, tc.seed,
                                      weights=job.source_weights)
        self.loss_kwargs = dict(family=self.mcfg.family, pad_id=self.train_split.pad_id, mask_id=self.mcfg.mask_id)
        self.flops_per_token = flops_per_token(self.mcfg, self.seq_len)
        self.peak_flops = device_peak_flops(device, tc.peak_flops)
        self.placement = _gather(session.where())

        # --- resume where Ray Train's last checkpoint left off (after a failure, or a rerun by name),
        # on as many workers as wrote it or on another number (DCP reshards, positions count rows)
        self.progress, state = Progress(), {}
        with session.resume_dir() as ckpt_dir:
            ckpt_dir = ckpt_dir or (Path(job.init_checkpoint) if job.init_checkpoint else None)
            if ckpt_dir is not None:
                state = checkpoints.load(ckpt_dir, self.model, self.optimizer, rank=rank, device=device)
                _position_in_rows(state, tc.batch_size)
                self.progress = Progress.from_dict(state)
        self._set_budget(state)
        self.logger = RemoteMetricLogger(job.tracking_uri, job.run_id) if rank == 0 else None
        self.faults = faults.injected()
        self._eta: float | None = None

    def _set_budget(self, state: dict) -> None:
        """Micro-steps per optimizer step, tokens per step and the step budget.

        An optimizer step reads the global batch the run is set up for, train.batch_size x
        train.num_workers x train.grad_accum_steps rows, on however many workers it has: with fewer
        (an elastic run short of a node, a resume on fewer workers) it accumulates more micro-steps.
        A checkpoint written by another number of workers keeps the global batch and the budget
        it recorded."""
        tc = self.tc
        resized = bool(state) and state.get("world", self.world) != self.world
        target = state["rows_per_step"] if resized and state.get("rows_per_step") else \
            tc.batch_size * tc.num_workers * tc.grad_accum_steps
        micro = self.loader.global_batch
        accum = target // micro if target % micro == 0 else tc.grad_accum_steps
        if accum != tc.grad_accum_steps or accum * micro != target:
            self.tc = tc = tc.model_copy(update={"grad_accum_steps": accum})
            if self.rank == 0:
                print(f"[train] {self.world} worker(s): {accum} micro-step(s) of {micro} rows per optimizer step"
                      + ("" if accum * micro == target else
                         f" (the global batch of {target} rows does not split into them)"), flush=True)
        self.rows_per_step = micro * accum
        self.tokens_per_step = self.rows_per_step * self.seq_len
        self.total_steps = tc.max_steps
        if tc.epochs is not None:
            epoch_steps = tc.epochs * (self.loader.epoch_rows // micro) / accum
            self.total_steps = min(tc.max_steps, max(1, int(epoch_steps)))
        if resized and state.get("total_steps"):
            self.total_steps = state["total_steps"]

    # ---- what a variant of the loop replaces (pipeline/finetune/loop.py) ----

    def build_model(self) -> torch.nn.Module:
        """The model to train, before it is wrapped for the strategy: parameters that do not
        require gradients stay out of the optimizer. On the meta device (no storage), the
        strategy materialises it and the loop initialises it (seeded, or train.init_from);
        a model with weights of its own (fine-tuning's) is used as it is."""
        with torch.device("meta"):
            return Transformer(self.mcfg)

    def initial_weights(self) -> str | None:
        """A plain checkpoint whose weights a meta-device model from build_model starts from
        (loaded into the shards, parallel.load_weights); None: the seeded initial weights."""
        return self.job.init_from

    def build_data(self) -> int:
        """Set self.train_split and self.val_split; return the sequence length of a row."""
        self.train_split = PackedSplit(self.job.tokens_dir, "train")
        self.val_split = PackedSplit(self.job.tokens_dir, "val")
        return self.train_split.manifest.seq_len

    def loss_terms(self, rows: torch.Tensor, generator: torch.Generator | None = None):
        """(summed loss, predicted-token count) of a batch of rows (model.objectives)."""
        return loss_terms(self.model, rows, generator=generator, **self.loss_kwargs)

    # ---- the loop ----

    def fit(self) -> dict:
        """Train to the end of the budget (or an early stop); returns a summary: the last metrics
        logged, the step reached, and why it stopped early, if it did."""
        tc, p = self.tc, self.progress
        self._announce()
        window, last_metrics = Window(), {}
        while p.step < self.total_steps and not p.stopped:
            t0 = time.perf_counter()
            lr = lr_at(p.step, lr=tc.lr, warmup_steps=tc.warmup_steps, max_steps=self.total_steps,
                       min_lr_ratio=tc.min_lr_ratio)
            loss, grad_norm, epoch_ended = self.train_step(lr)
            if not math.isfinite(grad_norm):
                return self._stop_non_finite(loss, grad_norm, lr, last_metrics)
            window.add(loss, grad_norm, time.perf_counter() - t0, self.tokens_per_step)
            for fault in self.faults:
                fault.after_step(self.rank, p.step)

            last = p.step == self.total_steps
            metrics = self.window_metrics(window, lr) if p.step % tc.log_every == 0 or last else {}
            if metrics:
                window = Window()
            checkpoint = p.step % tc.checkpoint_every == 0 or last
            if checkpoint or epoch_ended or p.step % tc.eval_every == 0:
                metrics.update(self.validate())
                if p.stopped:  # early stopping: end on a checkpoint
                    checkpoint = True
            self._log(metrics)
            last_metrics.update(metrics)
            # Ray Train V2 hands each report to its controller, which polls every ~2 s; reporting every
            # log interval would throttle training to that pace, so only validations go there.
            if "val/loss" in metrics:
                self._report(metrics, checkpoint)
        return {"step": p.step, "total_steps": self.total_steps, "stopped": p.stopped, "metrics": last_metrics}

    def train_step(self, lr: float) -> tuple[float, float, bool]:
        """One optimizer step over grad_accum_steps micro-batches. Returns (loss of this worker,
        global gradient norm, whether an epoch ended); the optimizer does not step on a
        non-finite gradient norm, which any worker's non-finite loss makes global."""
        tc, p = self.tc, self.progress
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        epoch = p.position.epoch
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(tc.grad_accum_steps):
            rows = self._to_device(self.loader.batch(p.position))
            p.position = self.loader.advance(p.position)
            with parallel.autocast(self.device, self.dtype, self.model):
                total, count = self.loss_terms(rows)
                loss = total / count.clamp(min=1) / tc.grad_accum_steps
            with parallel.gradient_sync(self.model, enabled=micro == tc.grad_accum_steps - 1):
                loss.backward()
            loss_sum += loss.detach()
        norm = parallel.grad_norm_and_clip(self.model, tc.grad_clip)
        loss_value, norm_value = torch.stack([loss_sum.float(), norm.float().to(self.device)]).tolist()
        if math.isfinite(norm_value):
            self.optimizer.step()
            p.step += 1
            p.tokens_seen += self.tokens_per_step
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, norm_value, p.position.epoch > epoch

    # ---- metrics, validation, reports ----

    def window_metrics(self, window: Window, lr: float) -> dict:
        p = self.progress
        loss = _all_reduce(window.loss / window.steps, self.device, "mean")
        memory = _all_reduce(float(peak_memory_bytes(self.device)), self.device, "max")
        epoch = self.loader.epochs_done(p.position)
        out = window.metrics(mean_loss=loss, lr=lr, epoch=epoch, flops_per_token=self.flops_per_token,
                             peak_flops=self.peak_flops, world=self.world, peak_memory=int(memory))
        out["train/tokens_seen"] = p.tokens_seen
        self._eta = (self.total_steps - p.step) * window.seconds / window.steps
        return out

    def validate(self) -> dict:
        """Validation loss; tracks the best one and the early-stopping counter."""
        tc, p = self.tc, self.progress
        with parallel.autocast(self.device, self.dtype, self.model):
            val = validate(self.model, self.val_split, tc.batch_size, tc.eval_batches, self.rank, self.world,
                           self.device, terms=self.loss_terms, **self.loss_kwargs)
        if val < p.best_val - tc.early_stopping_min_delta:
            p.best_val, p.evals_without_improvement = val, 0
        else:
            p.evals_without_improvement += 1
        patience = tc.early_stopping_patience
        if patience and p.evals_without_improvement >= patience and p.step < self.total_steps:
            p.stopped = STOP_EARLY
            if self.rank == 0:
                print(f"[train] early stopping at step {p.step}: validation loss has not improved on "
                      f"{p.best_val:.4f} for {patience} validations", flush=True)
        return {"val/loss": val, "val/perplexity": math.exp(min(val, 80.0)), "val/best_loss": p.best_val}

    def _log(self, metrics: dict) -> None:
        if not metrics or self.rank != 0:
            return
        eta = self._eta if "train/loss" in metrics else None
        print(progress_line(self.progress.step, self.total_steps, metrics, eta), flush=True)
        self.logger.log(metrics, step=self.progress.step)

    def _report(self, metrics: dict, checkpoint: bool) -> None:
        """Every worker reports (Ray Train V2 expects all of them), with its part of a checkpoint."""
        p = self.progress
        metrics = {**metrics, "step": p.step, "epoch": p.position.epoch, "tokens_seen": p.tokens_seen}
        if not checkpoint:
            self.session.report(metrics, None)
            return
        meta = {**self.job.metadata, "step": p.step, "val_loss": metrics["val/loss"], "strategy": self.tc.strategy}
        state = {**p.to_dict(), "total_steps": self.total_steps, "placement": self.placement,
                 "world": self.world, "rows_per_step": self.rows_per_step,
                 "schedule": {"lr": self.tc.lr, "warmup_steps": self.tc.warmup_steps,
                              "min_lr_ratio": self.tc.min_lr_ratio, "total_steps": self.total_steps}}
        with tempfile.TemporaryDirectory() as tmp:
            mine = checkpoints.save(Path(tmp) / "checkpoint", self.model, self.optimizer, state,
                                    model_config=self.mcfg, tokenizer_path=local_copy(self.job.tokenizer_path),
                                    metadata=meta, rank=self.rank, device=self.device)
            # commit: training goes on only once Ray Train has registered this checkpoint, so a
            # worker lost at any later step resumes from it (session.RaySession.report)
            self.session.report(metrics, mine, commit=True)

    def _stop_non_finite(self, loss: float, grad_norm: float, lr: float, last_metrics: dict) -> dict:
        """Every worker sees the same global norm, so all stop here together, weights untouched.
        Returning (rather than raising) keeps Ray Train from retrying a run that would only
        diverge again; `run_train` raises with this message."""
        message = (f"non-finite loss or gradients at step {self.progress.step + 1} (loss {loss:.4g} on rank "
                   f"{self.rank}, gradient norm {grad_norm}, lr {lr:.2e}): stopped before the optimizer step; "
                   f"lower train.lr, raise train.warmup_steps or set train.grad_clip")
        if self.rank == 0:
            print(f"[train] {message}", flush=True)
        return {"step": self.progress.step, "total_steps": self.total_steps, "stopped": STOP_NON_FINITE,
                "error": message, "metrics": last_metrics}

    def _announce(self) -> None:
        if self.rank != 0:
            return
        tc, p = self.tc, self.progress
        params = sum(w.numel() for w in parallel.unwrap(self.model).parameters())  # FSDP2: global sizes
        nodes = len({node for node, _ in self.placement})
        print(f"[train] {self.world} {self.device.type} worker(s) on {nodes} node(s), {tc.strategy}, "
              f"{params:,} params, {len(self.train_split):,} train sequences, "
              f"{self.loader.steps_per_epoch // tc.grad_accum_steps} steps/epoch, global batch "
              f"{self.tokens_per_step:,} tokens; " + (f"resuming at step {p.step}" if p.step else "from step 0")
              + f" of {self.total_steps}", flush=True)
        if p.stopped:
            print(f"[train] this run already stopped ({p.stopped}) at step {p.step}", flush=True)

    def _to_device(self, rows: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(rows)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t


def validate(model, split: PackedSplit, batch_size: int, max_batches: int, rank: int, world: int, device,
             family: str = "causal", pad_id: int | None = None, mask_id: int | None = None,
             terms=None) -> float:
    """Token-weighted mean validation loss over the first batch_size*max_batches*world rows, split
    across workers. Every worker runs the same number of forward passes (FSDP2 gathers weights
    collectively in each), a worker without rows left on a dummy row that counts for nothing.

    Objectives that draw random masks use a fixed seed, so every validation scores the same task.
    terms(rows, generator) -> (summed loss, count) replaces the objective (Trainer.loss_terms); a
    split with a `blank_row()` gives the dummy row itself."""
    pad_id = split.pad_id if pad_id is None else pad_id
    model.eval()
    n_rows = min(len(split), batch_size * max_batches * world)
    mine = np.arange(rank, n_rows, world)
    generator = torch.Generator(device="cpu").manual_seed(rank)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    with torch.no_grad():
        for start in range(0, math.ceil(n_rows / world), batch_size):
            if start < len(mine):
                rows = split.rows(mine[start:start + batch_size])
            elif hasattr(split, "blank_row"):
                rows = split.blank_row()
            else:
                rows = np.full((1, split.manifest.seq_len + 1), pad_id, dtype=np.int64)
            rows = torch.as_tensor(rows, dtype=torch.long, device=device)
            if terms is not None:
                loss_sum, count = terms(rows, generator)
            else:
                loss_sum, count = loss_terms(model, rows, family=family, pad_id=pad_id, mask_id=mask_id,
                                             generator=generator)
            # A batch with nothing to predict (only padding) scores 0 of 0, not NaN.
            total[0] += torch.where(count > 0, loss_sum.double(), 0.0)
            total[1] += count
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
    model.train()
    return (total[0] / total[1].clamp(min=1)).item()


def _position_in_rows(state: dict, batch_size: int) -> None:
    """A checkpoint written before positions counted rows has (epoch, step_in_epoch) micro-steps of
    batch_size rows on each of its workers (one placement entry per worker)."""
    pos = state.get("position", {})
    if "step_in_epoch" in pos:
        workers = len(state.get("placement") or [None])
        state["position"] = {"epoch": pos["epoch"], "row": pos.pop("step_in_epoch") * batch_size * workers}


def _all_reduce(value: float, device, op: str) -> float:
    if not torch.distributed.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    reduce_op = torch.distributed.ReduceOp
    torch.distributed.all_reduce(t, op=reduce_op.MAX if op == "max" else reduce_op.SUM)
    return (t / torch.distributed.get_world_size()).item() if op == "mean" else t.item()


def _seed_all(seed: int) -> None:
    import random

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _gather(mine) -> list:
    """Every worker's value in rank order (a collective)."""
    if not torch.distributed.is_initialized():
        return [mine]
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, mine)
    return gathered

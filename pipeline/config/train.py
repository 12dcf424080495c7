"""How `ownlm train` runs: workers, parallelism, optimizer, schedule, checkpoints, stopping."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config.base import Section


class TrainConfig(Section):
    """`ownlm train`: Ray Train workers, the parallel strategy, the optimizer and schedule, and
    when to log, validate, checkpoint and stop. docs/training.md explains the choices."""

    # -- where it runs (Ray Train's ScalingConfig and RunConfig)
    num_workers: int = Field(default=2, ge=1)
    """Ray Train workers, one process each (data parallel: each reads its own slice of every batch).
    `MIN..MAX` (e.g. `2..4`) makes the run elastic: Ray Train starts as many as the cluster has room
    for, up to MAX, goes on with at least MIN after losing a node, and grows back when nodes return;
    the value is then MAX and `min_workers` MIN."""
    min_workers: int | None = Field(default=None, ge=1)
    """The fewest workers an elastic run goes on with (`num_workers: MIN..MAX` sets it). None: a fixed
    number of workers."""
    cpus_per_worker: float = Field(default=1, gt=0)
    """CPUs reserved per worker; torch uses this many threads (rounded down, at least 1)."""
    use_gpu: bool = False
    """One GPU per worker (NCCL between them); otherwise CPU workers (gloo)."""
    resources_per_worker: dict[str, float] = Field(default_factory=dict)
    """Extra Ray resources each worker asks for, beside CPU and GPU: a custom resource that only
    some nodes have (`{"trainer": 1}`), or `accelerator_type:A100` to pin a GPU model."""
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How Ray places the workers: PACK fills a node before the next (fast collectives); SPREAD and
    STRICT_SPREAD put them on different nodes."""
    storage_path: str | None = None
    """Where Ray Train keeps run folders and checkpoints: a local folder, or on a cluster a path or URI
    that every node reaches (NFS, s3://bucket/runs, gs://...). None: <root>/train."""
    max_failures: int = Field(default=1, ge=-1)
    """Worker failures (a dead process or node) Ray Train recovers from by restarting every worker at
    the last checkpoint; -1 retries without limit."""

    # -- how the model is spread and computed
    strategy: Literal["ddp", "fsdp2"] = "ddp"
    """ddp: every worker holds the whole model, gradients are all-reduced (DistributedDataParallel).
    fsdp2: weights, gradients and optimizer state are sharded across workers (`fully_shard` per block
    and at the root), checkpoints are distributed (torch.distributed.checkpoint)."""
    mixed_precision: Literal["auto", "bf16", "fp32"] = "auto"
    """auto: bf16 on GPUs, fp32 on CPUs. bf16 computes in bfloat16 (autocast under ddp, a mixed
    precision policy with fp32 gradient reduction under fsdp2); weights and optimizer stay fp32."""
    cpu_offload: bool = False
    """fsdp2 on GPUs only: keep the sharded weights, gradients and optimizer state in host memory
    between uses (bigger models, slower steps)."""
    compile: bool = False
    """torch.compile the model (every block under fsdp2): faster steps after a compile at start.
    Activation checkpointing is a model setting: `model.activation_checkpointing: true`."""

    # -- the batch and the budget
    batch_size: int = Field(default=8, ge=1)
    """Sequences per worker per micro-step; the global batch is batch_size x num_workers x
    grad_accum_steps sequences."""
    grad_accum_steps: int = Field(default=1, ge=1)
    """Micro-steps per optimizer step (gradients are reduced across workers on the last only)."""
    max_steps: int = Field(default=300, ge=1)
    """Optimizer steps; data repeats (new shuffle each epoch) when shorter."""
    epochs: float | None = Field(default=None, gt=0)
    """Stop after this many passes over the training data, if that comes before max_steps (the
    learning-rate schedule then spans the shorter run). None: max_steps alone."""
    init_from: str | None = None
    """A checkpoint folder or URI (s3://...) whose weights start the run instead of random ones
    (continued pretraining, as `ownlm monitor` retrains the champion): its model config is used as
    it is, and the tokens must be made with its tokenizer. None: random initial weights from `model`."""
    seed: int = 0
    """Seeds the initial weights (the same on every worker), the data order and each worker's RNG."""

    # -- the optimizer and the schedule
    lr: float = Field(default=3e-3, gt=0)
    """Peak learning rate."""
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    """Cosine decay ends at lr * min_lr_ratio."""
    warmup_steps: int = Field(default=30, ge=0)
    """Linear warmup from 0 to lr."""
    weight_decay: float = Field(default=0.1, ge=0)
    """AdamW decay, applied to weight matrices only."""
    beta1: float = Field(default=0.9, gt=0, lt=1)
    beta2: float = Field(default=0.95, gt=0, lt=1)
    grad_clip: float | None = Field(default=1.0, gt=0)
    """Clip the global gradient norm to this; None disables (the norm is still logged)."""

    # -- logging, validation, checkpoints, stopping
    log_every: int = Field(default=10, ge=1)
    """Log loss, perplexity, lr, gradient norm, tokens/s, MFU and peak memory every this many steps
    (console from rank 0, MLflow from rank 0)."""
    peak_flops: float | None = Field(default=None, gt=0)
    """Peak FLOP/s of one device, for MFU. None: looked up for known GPUs (bf16 dense peak); MFU is
    left out on CPUs and unknown devices unless this is set."""
    eval_every: int = Field(default=100, ge=1)
    """Validation loss every this many steps, at the end of every epoch, at every checkpoint and at
    the end."""
    eval_batches: int = Field(default=20, ge=1)
    """Validation batches per evaluation (per worker)."""
    checkpoint_every: int = Field(default=100, ge=1)
    """Save a resumable checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """Checkpoints Ray Train keeps: the best by validation loss, plus always the latest (to resume)."""
    final_checkpoint: Literal["best", "last"] = "best"
    """Which kept checkpoint becomes the final model: the lowest validation loss, or the last step."""
    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop when the validation loss has not improved for this many validations in a row. None: never."""
    early_stopping_min_delta: float = Field(default=0.0, ge=0)
    """An improvement smaller than this does not count for early stopping."""

    @model_validator(mode="before")
    @classmethod
    def _worker_range(cls, data):
        """`num_workers: "2..4"` -> num_workers 4, min_workers 2."""
        if isinstance(data, dict) and isinstance(data.get("num_workers"), str) and ".." in data["num_workers"]:
            low, _, high = (part.strip() for part in data["num_workers"].partition(".."))
            if not (low.isdigit() and high.isdigit()):
                raise ValueError(f"train.num_workers: {data['num_workers']!r} is not a number or a range MIN..MAX "
                                 f"of whole numbers (e.g. 2..4)")
            data = {**data, "min_workers": int(low), "num_workers": int(high)}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        if self.min_workers is not None and self.min_workers > self.num_workers:
            problems.append(f"train.num_workers: the range {self.min_workers}..{self.num_workers} has its minimum "
                            f"above its maximum")
        if self.cpu_offload and self.strategy != "fsdp2":
            problems.append("train.cpu_offload needs train.strategy: fsdp2 (ddp keeps the whole model on each "
                            "device)")
        if self.cpu_offload and not self.use_gpu:
            problems.append("train.cpu_offload needs train.use_gpu: true (it pages FSDP2 shards between GPU and "
                            "host memory)")
        reserved = sorted(k for k in self.resources_per_worker if k.upper() in ("CPU", "GPU"))
        if reserved:
            problems.append(f"train.resources_per_worker: {', '.join(reserved)} come from train.cpus_per_worker "
                            f"and train.use_gpu; list only other resources")
        if problems:
            raise ValueError("; ".join(problems))
        return self

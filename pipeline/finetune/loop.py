"""The training loop, fine-tuning: pipeline.train.loop.Trainer with three of its parts replaced.

    build_model   the base checkpoint's weights, with LoRA adapters (base frozen) or all trainable
    build_data    the prepared example rows (pipeline/finetune/data.py) instead of packed tokens
    loss_terms    next-token loss on the assistant's tokens, examples kept apart (model.objectives.sft_terms)

Everything else (DDP, the schedule, logging, validation, early stopping, checkpoints and
resume on Ray Train) is the training loop's own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from model import lora
from model.checkpoint import load_model
from model.objectives import sft_terms
from pipeline.finetune.data import IDS, MASK, SEGMENT, ExampleSplit
from pipeline.train.loop import Trainer, TrainJob, run_on_worker


@dataclass
class FinetuneJob(TrainJob):
    base: str = ""
    """The checkpoint fine-tuned (a plain or an adapter checkpoint, whose adapters are merged first)."""
    method: str = "lora"
    lora: dict = field(default_factory=dict)
    """model.lora.LoRASpec fields (rank, alpha, dropout, targets) for method lora."""


class FinetuneTrainer(Trainer):
    job: FinetuneJob

    def build_model(self) -> torch.nn.Module:
        model, _ = load_model(self.job.base)
        if lora.lora_spec(model) is not None:
            lora.merge(model)  # launch refuses LoRA on an adapter checkpoint; full fine-tuning starts merged
        model.train()
        if self.job.method == "lora":
            lora.apply_lora(model, lora.LoRASpec.from_dict({**self.job.lora, "base": self.job.base}))
        else:
            model.requires_grad_(True)
        return model

    def build_data(self) -> int:
        self.train_split = ExampleSplit(self.job.tokens_dir, "train")
        self.val_split = ExampleSplit(self.job.tokens_dir, "val")
        return self.train_split.info["seq_len"]

    def loss_terms(self, rows: torch.Tensor, generator: torch.Generator | None = None):
        return sft_terms(self.model, rows[:, IDS], rows[:, MASK], rows[:, SEGMENT])


def finetune_loop_per_worker(job_dict: dict) -> dict:
    """Ray Train's entry point on every worker of a fine-tune."""
    return run_on_worker(FinetuneTrainer, FinetuneJob, job_dict)

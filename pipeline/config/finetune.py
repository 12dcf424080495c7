"""How `ownlm finetune` adapts a trained model to a task: the data, the method (full or LoRA), the
budget and the optimizer. Where the workers run (workers, strategy, storage, failures) comes
from the `train` section; the values here replace the `train` values of the same name."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from evaluation.taskfile import DEFAULT_TEMPLATE, check_template
from model.config import DEFAULT_LORA_TARGETS as DEFAULT_TARGETS
from model.config import LORA_TARGETS as LINEARS
from pipeline.config.base import Section


class FinetuneConfig(Section):
    """`ownlm finetune` (docs/finetuning.md)."""

    data: str | None = None
    """Training examples, JSONL: chat {"messages": [...]}, instruction {"prompt", "completion"} or
    classification {"input", "label"}, detected per line. Set, `ownlm run` ends with a fine-tune
    (after `train`, before `eval`)."""
    val: str | None = None
    """Validation examples in the same formats; None holds out val_fraction of `data`."""
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    """Share of `data` held out for validation when `val` is not given."""
    eval_file: str | None = None
    """A labelled task file {"input", "label", "choices"?} that `ownlm eval` also scores (the task
    metric, task/<name>/acc and task/<name>/exact_match) after `ownlm run`'s fine-tune."""
    method: Literal["lora", "full"] = "lora"
    """lora: train low-rank adapters on lora_targets, the base frozen (model/lora.py); full: every weight."""
    template: str = DEFAULT_TEMPLATE
    """The user turn of a classification line, `{input}` replaced by its input (also the prompt of the task metric)."""
    loss_on: Literal["all", "last"] = "all"
    """Which assistant turns carry the loss: all of them, or the last one only."""
    seq_len: int | None = Field(default=None, ge=8)
    """Tokens per row; None: the model's max_seq_len. Longer examples are rejected, not cut."""
    packing: bool = True
    """Lay several examples end to end in a row (no attention across them); false pads one per row."""

    # -- budget and optimizer (replace the `train` values of the same name)
    max_steps: int = Field(default=200, ge=1)
    epochs: float | None = Field(default=None, gt=0)
    """Stop after this many passes over the examples, if that comes before max_steps."""
    batch_size: int = Field(default=8, ge=1)
    """Rows per worker per step."""
    lr: float | None = Field(default=None, gt=0)
    """Peak learning rate; None: 1e-3 for lora, 3e-4 for full."""
    warmup_steps: int = Field(default=10, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = 0
    eval_every: int = Field(default=50, ge=1)
    """Validation loss every this many steps (and at every checkpoint and the end)."""
    checkpoint_every: int = Field(default=100, ge=1)
    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop when the validation loss has not improved for this many validations in a row."""
    log_every: int = Field(default=10, ge=1)

    # -- LoRA
    lora_rank: int = Field(default=8, ge=1)
    lora_alpha: float = Field(default=16.0, gt=0)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_targets: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    """Projections that get adapters: wq, wk, wv, wo (attention), w1, w2, w3 (feed-forward), or [all]."""

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        return check_template(v)

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(LINEARS) - {"all"})
        if unknown or not v:
            raise ValueError(f"unknown LoRA target(s) {unknown or '(none)'}; choose from {', '.join(LINEARS)} or all")
        return v

    @model_validator(mode="after")
    def _resolved(self):
        if self.lr is None:
            self.lr = 1e-3 if self.method == "lora" else 3e-4
        return self

    def train_overrides(self) -> dict:
        """The `train` keys this section replaces for a fine-tune."""
        keys = ("max_steps", "epochs", "batch_size", "lr", "warmup_steps", "weight_decay", "seed", "eval_every",
                "checkpoint_every", "early_stopping_patience", "log_every")
        return {k: getattr(self, k) for k in keys}

"""LoRA: low-rank adapters on chosen linear layers (Hu et al. 2021, "LoRA: Low-Rank Adaptation
of Large Language Models").

A frozen weight W (out, in) gets a trainable update scale * B @ A, with A (r, in) drawn small
and B (out, r) zero, so training starts from the base model exactly; scale = alpha / r. Only
A and B train (the base is frozen), which is what makes an optimizer step cheap in memory and
a checkpoint small: it holds the adapters alone plus a reference to its base (model.checkpoint
writes and reads that layout). `merge` folds B @ A into W and gives back a plain Transformer.

Which linears: names of the Transformer's projections (attention wq, wk, wv, wo; feed-forward
w1, w2, w3). The default, q and v, is the paper's choice; "all" takes every one of them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from model.config import DEFAULT_LORA_TARGETS as DEFAULT_TARGETS
from model.config import LORA_TARGETS as LINEARS


@dataclass(frozen=True)
class LoRASpec:
    """What was adapted and how; stored in an adapter checkpoint's config.json ("lora")."""
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    """Projection names (model.lora.LINEARS), or ("all",)."""
    base: str | None = None
    """The base checkpoint the adapters apply to (a folder), set when the adapters are saved."""

    def __post_init__(self):
        targets = tuple(self.targets)
        unknown = sorted(set(targets) - set(LINEARS) - {"all"})
        if unknown or not targets:
            raise ValueError(f"unknown LoRA target(s) {unknown or '(none)'}; choose from {', '.join(LINEARS)} or all")
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA needs rank >= 1, alpha > 0 and 0 <= dropout < 1 (got {self.rank}, "
                             f"{self.alpha}, {self.dropout})")
        object.__setattr__(self, "targets", LINEARS if "all" in targets else targets)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: dict) -> "LoRASpec":
        return cls(**{k: (tuple(v) if k == "targets" else v) for k, v in d.items()
                      if k in cls.__dataclass_fields__})


class LoRALinear(nn.Module):
    """y = x W^T + scale * dropout(x) A^T B^T. The base weight is the wrapped Linear's own
    Parameter under the same name (`weight`), so the model's base keys do not change."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if base.bias is not None:
            raise ValueError("LoRA here wraps bias-free linears (ownlm's projections have none)")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.scale = alpha / rank
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, device=device, dtype=dtype))
        if device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear, and the paper's reference code
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = nn.functional.linear(x, self.weight)
        return base + (self.dropout(x) @ self.lora_a.T @ self.lora_b.T) * self.scale

    def delta(self) -> torch.Tensor:
        """scale * B @ A, the update merge adds to the weight: (out, in)."""
        return (self.lora_b.float() @ self.lora_a.float()) * self.scale


def _targets(model: nn.Module, names: tuple[str, ...]):
    for module in model.modules():
        for name, child in module.named_children():
            if name in names and isinstance(child, nn.Linear):
                yield module, name, child


def apply_lora(model: nn.Module, spec: LoRASpec) -> nn.Module:
    """Wrap the spec's linears of model in LoRALinear, in place, and freeze every base parameter:
    afterwards only the adapters require gradients. Returns model, with `model.lora` = spec."""
    found = list(_targets(model, spec.targets))
    if not found:
        raise ValueError(f"the model has no linear layers named {', '.join(spec.targets)}")
    for p in model.parameters():
        p.requires_grad_(False)
    for parent, name, linear in found:
        setattr(parent, name, LoRALinear(linear, spec.rank, spec.alpha, spec.dropout))
    model.lora = spec
    return model


def lora_spec(model: nn.Module) -> LoRASpec | None:
    """The LoRASpec of a model with adapters (apply_lora), else None."""
    return getattr(model, "lora", None)


def is_adapter_key(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("lora_a", "lora_b")


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors only, by their names in the model (what an adapter checkpoint holds)."""
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if is_adapter_key(k)}


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor but the adapters: the base model's own state dict."""
    return {k: v for k, v in model.state_dict().items() if not is_adapter_key(k)}


def trainable_fraction(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / max(1, total)


@torch.no_grad()
def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (W += scale * B @ A, computed in float32) and put a
    plain nn.Linear back in its place, in place; the model is then a plain Transformer whose
    outputs equal the adapted model's. Parameters are trainable again, as in any loaded model."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                linear = nn.Linear(child.in_features, child.out_features, bias=False, device="meta")
                merged = (child.weight.float() + child.delta()).to(child.weight.dtype)
                linear.weight = nn.Parameter(merged)
                setattr(module, name, linear)
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, "lora"):
        del model.lora
    return model

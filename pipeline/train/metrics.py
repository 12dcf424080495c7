"""What the trainer measures at each log interval: throughput, MFU, memory, and the progress line.

MFU (model FLOPs utilization, PaLM, Chowdhery et al. 2022, App. B) is the model's
training FLOPs per second over the peak of the devices doing them. The model's
FLOPs per token come from `model.config.flops_per_token` (6N plus attention); the
peak from `train.peak_flops` or, for a known GPU, from the table below.
"""
from __future__ import annotations

import math
import resource
import sys

import torch

# Dense bf16 tensor-core peaks in FLOP/s (vendor datasheets, no sparsity), matched as
# substrings of torch.cuda.get_device_name() in this order (more specific names first).
# fp32 runs are measured against the same bf16 peak, as torchtitan and nanoGPT do.
PEAK_FLOPS = (
    ("GB200", 2.5e15),
    ("B200", 2.25e15),
    ("H200", 989e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("MI300X", 1307e12),
    ("MI325X", 1307e12),
    ("MI250X", 383e12),
    ("V100", 125e12),  # fp16: V100 has no bf16
)


def device_peak_flops(device: torch.device, configured: float | None = None) -> float | None:
    """Peak FLOP/s of one device: the configured value, else the table's entry for this GPU;
    None for CPUs and unknown GPUs (MFU is then not reported)."""
    if configured:
        return float(configured)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_FLOPS:
        if key in name:
            return peak
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops_per_device: float | None,
        num_devices: int) -> float | None:
    """Achieved model FLOP/s over the peak of all devices (0..1), or None without a peak."""
    if not peak_flops_per_device:
        return None
    return tokens_per_s * flops_per_token / (peak_flops_per_device * num_devices)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this worker: allocated tensor memory on a GPU, the process's peak
    resident set size (everything, not only tensors) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class Window:
    """Sums over the steps since the last log line: loss, gradient norm, step time, tokens."""

    def __init__(self):
        self.steps = 0
        self.loss = 0.0
        self.grad_norm = 0.0
        self.seconds = 0.0
        self.tokens = 0

    def add(self, loss: float, grad_norm: float, seconds: float, tokens: int) -> None:
        self.steps += 1
        self.loss += loss
        self.grad_norm += grad_norm
        self.seconds += seconds
        self.tokens += tokens

    def metrics(self, *, mean_loss: float, lr: float, epoch: float, flops_per_token: float,
                peak_flops: float | None, world: int, peak_memory: int) -> dict[str, float]:
        """The log line's numbers; mean_loss is the window's loss averaged across workers."""
        tokens_per_s = self.tokens / self.seconds if self.seconds > 0 else 0.0
        out = {
            "train/loss": mean_loss,
            "train/perplexity": math.exp(min(mean_loss, 80.0)),  # capped: exp overflows past ~709
            "train/lr": lr,
            "train/grad_norm": self.grad_norm / max(1, self.steps),
            "train/tokens_per_s": tokens_per_s,
            "train/step_time_s": self.seconds / max(1, self.steps),
            "train/epoch": epoch,
            "train/peak_memory_gb": peak_memory / 1e9,
        }
        utilization = mfu(tokens_per_s, flops_per_token, peak_flops, world)
        if utilization is not None:
            out["train/mfu"] = utilization
        return out


def progress_line(step: int, total_steps: int, metrics: dict, eta_s: float | None = None) -> str:
    """One console line per log interval (rank 0), e.g. `[train] step  20/300 | ep 0.41 |
    loss 5.1234 | ppl 168.9 | lr 1.00e-03 | gnorm 0.84 | 12,345 tok/s | mfu 31.2% | mem 1.20 GB | eta 4m10s`
    (one line on the console)."""
    parts = [f"step {step:>{len(str(total_steps))}}/{total_steps}"]
    fields = (("train/epoch", "ep {:.2f}", 1), ("train/loss", "loss {:.4f}", 1),
              ("train/perplexity", "ppl {:.1f}", 1), ("val/loss", "val_loss {:.4f}", 1),
              ("train/lr", "lr {:.2e}", 1), ("train/grad_norm", "gnorm {:.2f}", 1),
              ("train/tokens_per_s", "{:,.0f} tok/s", 1), ("train/mfu", "mfu {:.1f}%", 100),
              ("train/peak_memory_gb", "mem {:.2f} GB", 1))
    for key, fmt, scale in fields:
        if key in metrics:
            parts.append(fmt.format(scale * metrics[key]))
    if eta_s is not None and step < total_steps:
        parts.append(f"eta {_duration(eta_s)}")
    return "[train] " + " | ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"

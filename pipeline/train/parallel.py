"""Data parallel strategies: how one model becomes a model trained by many workers.

    ddp    every worker holds the whole model; gradients are all-reduced in buckets
           during backward (DistributedDataParallel). bf16 by autocast.
    fsdp2  parameters, gradients and optimizer state are sharded across the workers
           (`fully_shard` on every block, then on the root, as torchtitan does): a block's
           full weights exist only while it runs. bf16 by a MixedPrecisionPolicy (bf16
           compute, fp32 gradient reduction, fp32 master weights); optional CPU offload.

Both take the same model, optimizer and loss; a test pins that they give the same loss
curve as one process with the same global batch.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn


def compute_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """bf16 or None (plain fp32) for `train.mixed_precision` on this device."""
    if setting == "bf16" or (setting == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def parallelize(model: nn.Module, *, strategy: str, device: torch.device, world: int,
                dtype: torch.dtype | None, compile: bool = False, cpu_offload: bool = False) -> nn.Module:
    """The model wrapped for `strategy`, on `device`. Call before building the optimizer
    (FSDP2 replaces the parameters with sharded DTensors)."""
    if strategy == "ddp":
        model.to(device)
        if compile:
            model.compile()  # in place: state_dict keys stay those of the plain model
        if world == 1:
            return model
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy == "fsdp2":
        return _fully_shard(model, device=device, world=world, dtype=dtype, compile=compile,
                            cpu_offload=cpu_offload)
    raise ValueError(f"unknown strategy {strategy!r}; known: ddp, fsdp2")


def _fully_shard(model, *, device, world, dtype, compile, cpu_offload):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    if cpu_offload and device.type != "cuda":
        raise ValueError("train.cpu_offload needs GPU workers (train.use_gpu: true): it pages FSDP2 shards "
                         "between the GPU and pinned host memory")
    if not cpu_offload:
        model.to(device)
    # An explicit mesh on the workers' device type: gloo for CPU workers, NCCL for GPUs.
    mesh = init_device_mesh(device.type, (world,))
    policy = (MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype
              else MixedPrecisionPolicy())
    common = dict(mesh=mesh, mp_policy=policy, offload_policy=CPUOffloadPolicy() if cpu_offload
                  else OffloadPolicy())
    last = len(model.layers) - 1
    for i, block in enumerate(model.layers):
        if compile:
            block.compile()
        # The last block's weights are needed again at once by backward: keep them gathered.
        fully_shard(block, reshard_after_forward=i < last, **common)
    # The root group holds what no block owns: embeddings, final norm, output head (tied or not).
    fully_shard(model, **common)
    if cpu_offload:
        # Offloading manages parameters only; buffers (the RoPE tables) must sit where compute runs.
        for module in model.modules():
            for name, buffer in module.named_buffers(recurse=False):
                module._buffers[name] = buffer.to(device)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def gradient_sync(model: nn.Module, enabled: bool):
    """A context for one micro-step's backward: gradients are reduced across workers only
    when enabled (the last micro-step of an accumulated batch)."""
    if isinstance(model, nn.parallel.DistributedDataParallel) and not enabled:
        return model.no_sync()
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def autocast(device: torch.device, dtype: torch.dtype | None, model: nn.Module):
    """Autocast for forward and loss where mixed precision is not the wrapper's job."""
    if dtype is None or is_sharded(model):  # FSDP2 casts through its MixedPrecisionPolicy
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_norm_and_clip(model: nn.Module, max_norm: float | None) -> torch.Tensor:
    """The global L2 norm of the gradients (before clipping), a 0-dim tensor; clips to
    max_norm when given. Under FSDP2 the norm of the shards is reduced across workers."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

"""Data parallel strategies: how one model becomes a model trained by many workers.

    ddp    every worker holds the whole model; gradients are all-reduced in buckets
           during backward (DistributedDataParallel). bf16 by autocast.
    fsdp2  parameters, gradients and optimizer state are sharded across the workers
           (`fully_shard` on every block, then on the root, as torchtitan does): a block's
           full weights exist only while it runs. bf16 by a MixedPrecisionPolicy (bf16
           compute, fp32 gradient reduction, fp32 master weights); optional CPU offload.

Both take the same model, optimizer and loss; a test pins that they give the same loss
curve as one process with the same global batch.

A model built on the `meta` device (shapes, no storage) is materialised by `parallelize`:
under FSDP2 only after `fully_shard`, so each worker allocates its own shards and no worker
ever holds the whole model; then `init_weights` fills each shard with the rows one process
would draw from the same seed (model/init.py), or `load_weights` loads a checkpoint into the
shards, read by rank 0 alone and sent out tensor by tensor (torch.distributed.checkpoint's
`set_model_state_dict` with `broadcast_from_rank0`).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from model.checkpoint import load_model
from pipeline.storage import local_copy


def compute_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """bf16 or None (plain fp32) for `train.mixed_precision` on this device."""
    if setting == "bf16" or (setting == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def parallelize(model: nn.Module, *, strategy: str, device: torch.device, world: int,
                dtype: torch.dtype | None, compile: bool = False, cpu_offload: bool = False) -> nn.Module:
    """The model wrapped for `strategy`, on `device`. Call before building the optimizer
    (FSDP2 replaces the parameters with sharded DTensors). A model on the meta device comes
    back with storage but uninitialised weights: call init_weights or load_weights next."""
    if strategy == "ddp":
        _materialize(model, device)
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
    skeleton = on_meta(model)
    if not cpu_offload and not skeleton:
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
    if skeleton:  # each rank allocates its shards only (offloaded shards live in host memory)
        _materialize(model, torch.device("cpu") if cpu_offload else device)
    if cpu_offload:
        # Offloading manages parameters only; buffers (the RoPE tables) must sit where compute runs.
        for module in model.modules():
            for name, buffer in module.named_buffers(recurse=False):
                module._buffers[name] = buffer.to(device)
    return model


def on_meta(model: nn.Module) -> bool:
    """Whether the model is a skeleton on the meta device (no storage yet)."""
    return any(p.is_meta for p in model.parameters())


def _materialize(model: nn.Module, device: torch.device) -> None:
    """Give a meta-device model (uninitialised) storage on device, with its RoPE tables."""
    if not on_meta(model):
        return
    model.to_empty(device=device)
    if not is_sharded(model):  # to_empty gives a tied head its own tensor; FSDP2's swap keeps the tie
        model.tie_weights()
    model.init_rope()


def init_weights(model: nn.Module, seed: int) -> None:
    """The initial weights from seed, the same on every worker count: each rank fills only its
    shards, with the values one process would give those rows (Transformer.init_weights)."""
    unwrap(model).init_weights(seed)


def load_weights(model: nn.Module, path, *, rank: int) -> None:
    """A plain checkpoint's weights (`train.init_from`, an `ownlm import`ed model) into the model.

    Under FSDP2 rank 0 alone reads the file and set_model_state_dict broadcasts it one tensor at
    a time, each rank keeping its shard: the whole state dict is never on every rank. Under DDP
    every worker holds the whole model anyway and reads the file itself. `path` may be a URI: the
    worker that reads it downloads it into its own node's cache (storage.local_copy)."""
    if not is_sharded(model):
        unwrap(model).load_state_dict(load_model(local_copy(path))[0].state_dict())
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    full = load_model(local_copy(path))[0].state_dict() if rank == 0 else {}
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


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

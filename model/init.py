"""Seeded initial weights that do not depend on how a tensor is split.

A random init that draws from one global stream gives a shard different numbers than the
same rows of the whole tensor, so a model sharded before it is initialised (built on the
`meta` device, sharded, then materialised, as FSDP2 wants for models larger than a device)
would start from other weights than one process does. Here every weight matrix is filled
in fixed blocks of rows, each block from its own generator seeded by (seed, parameter name,
block index): the numbers of any row depend only on the seed, the parameter and the row, so
a rank that holds rows a..b of a sharded parameter generates only the blocks covering them
and gets exactly the rows a single process would.

Blocks are generated whole, on the CPU in float32, then copied: torch's CPU normal_ gives
values that depend on the size of the tensor filled (its vectorised tail), and the device's
own generator would give another stream on every device type.
"""
from __future__ import annotations

import hashlib

import torch

BLOCK_ELEMENTS = 1 << 18
"""About this many values per generated block (1 MiB of float32): rows are whole, so a row
longer than this is a block of its own."""


def block_seed(seed: int, name: str, block: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{name}:{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def rows_per_block(shape: tuple[int, ...]) -> int:
    row = 1
    for n in shape[1:]:
        row *= n
    return max(1, BLOCK_ELEMENTS // max(row, 1))


def local_rows(p: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the tensor this process holds, index of its first row in the whole parameter).

    A plain tensor is whole (offset 0). A DTensor (FSDP2's sharded parameters) is split along
    dim 0 only, which is how fully_shard shards; anything else is refused rather than guessed."""
    if not hasattr(p, "to_local"):
        return p, 0
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = p.to_local()
    shape, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    if any(offset[1:]) or tuple(shape[1:]) != tuple(p.shape[1:]):
        raise ValueError(f"seeded init handles parameters sharded along dim 0 only, got {p.placements}")
    return local, offset[0] if len(offset) else 0


@torch.no_grad()
def normal_(p: torch.Tensor, name: str, seed: int, std: float) -> None:
    """Fill p (whole, or this rank's dim-0 shard of it) with Normal(0, std) values that are a
    function of (seed, name, row) only."""
    if p.is_meta:  # a skeleton (loading builds one): there is nothing to fill yet
        return
    local, first = local_rows(p)
    n = local.shape[0]
    if n == 0:
        return
    per_block = rows_per_block(tuple(p.shape))
    row_shape = tuple(p.shape[1:])
    for block in range(first // per_block, (first + n - 1) // per_block + 1):
        gen = torch.Generator(device="cpu").manual_seed(block_seed(seed, name, block))
        start = block * per_block  # the block's first row in the whole parameter
        lo, hi = max(start, first), min(start + per_block, first + n)
        target = local[lo - first:hi - first]
        if hi - lo == per_block and target.device.type == "cpu" and target.dtype == torch.float32:
            target.normal_(0.0, std, generator=gen)  # a whole block in place: the same values, no copy
            continue
        values = torch.empty((per_block, *row_shape), dtype=torch.float32).normal_(0.0, std, generator=gen)
        target.copy_(values[lo - start:hi - start])


def seed_from_global_rng() -> int:
    """A seed drawn from torch's global generator: `torch.manual_seed(s); Transformer(cfg)` stays
    reproducible when no seed is given."""
    return int(torch.randint(0, 1 << 62, (), dtype=torch.int64, device="cpu"))

"""Which rows a rank holds: contiguous row shards of a flattened trajectory, and the model behind a wrapper.

Pure bookkeeping, no collectives (those are :mod:`koopman_tut.numerics.distributed`, which re-exports
these): the rows [start, stop) of a rank, the pieces of each parameter inside them, a DTensor's local
shard, and the plain model inside a DDP or ``torch.compile`` wrapper.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn as nn

Tensor = torch.Tensor


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [start, stop) of rank ``rank`` when n rows are split into contiguous shards in rank
    order; the first n % world_size ranks hold one row more. 0 <= rank < world_size."""
    n, world_size = _count("n", n, 0), _count("world_size", world_size, 1)
    if _count("rank", rank, 0) >= world_size:
        raise ValueError(f"rank must be in [0, {world_size - 1}] for world_size {world_size}, got {rank}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + int(rank < extra)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or DataParallel) wrapper or a ``torch.compile`` one
    (``_orig_mod``, whose parameters it shares), so that parameter names carry no ``module.`` or
    ``_orig_mod.`` prefix and match the plain model's; other models as they are."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def local_tensor(t: Tensor) -> Tensor:
    """This rank's shard of a DTensor (FSDP2's ``fully_shard`` parameters); a plain tensor as it is."""
    return t.to_local() if hasattr(t, "to_local") else t


def shard_pieces(shapes: list[tuple[int, ...]], rows: tuple[int, int]) -> list[tuple[int, int, int]]:
    """(i, lo, hi) for each tensor i of ``shapes`` (flattened one after another) that overlaps the
    rows [start, stop): its entries lo:hi lie in them."""
    out, o = [], 0
    for i, s in enumerate(shapes):
        size = math.prod(s)
        lo, hi = max(rows[0] - o, 0), min(rows[1] - o, size)
        if lo < hi:
            out.append((i, lo, hi))
        o += size
    return out

"""The few torch.distributed collectives the package needs, for row-sharded snapshot matrices.

When each rank holds its own rows of W (a shard of the parameters, any split, the same
snapshots), DMD needs only the sum over ranks of a small (T+1, T+1) Gram matrix and the
total row count; a global pruning threshold needs a count and a k-th value over ranks.
``group=None`` everywhere means one process (no communication); ``group=True`` means the
default process group.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

Tensor = torch.Tensor


def _group(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("group= needs torch.distributed initialised (dist.init_process_group, or torchrun)")
    return None if group is True else group


def _comm_device(group) -> torch.device:
    """NCCL reduces CUDA tensors only; gloo reduces CPU tensors."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(x: Tensor, group) -> Tensor:
    """The elementwise sum of ``x`` over the group's ranks (a new tensor on x's device)."""
    g = _group(group)
    y = x.to(_comm_device(g)).clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM, group=g)
    return y.to(x.device)


def all_reduce_max(x: Tensor, group) -> Tensor:
    g = _group(group)
    y = x.to(_comm_device(g)).clone()
    dist.all_reduce(y, op=dist.ReduceOp.MAX, group=g)
    return y.to(x.device)


def global_rows(W: Tensor, group) -> int:
    """Total number of rows (features) of W over the group (W's own count without a group)."""
    n = W.shape[-2]
    if group is None:
        return n
    return int(all_reduce_sum(torch.tensor([n], dtype=torch.int64), group).item())


def world(group) -> tuple[int, int]:
    """(rank, world size) in ``group``; (0, 1) without one."""
    if group is None:
        return 0, 1
    g = _group(group)
    return dist.get_rank(g), dist.get_world_size(g)

"""The few torch.distributed collectives the package needs, for row-sharded snapshot matrices.

When each rank holds its own rows of W (a shard of the parameters, any split, the same
snapshots), DMD needs only the sum over ranks of a small (T, T) Gram matrix and the
total row count; a global pruning threshold needs a few histograms of the scores (an
exact k-th value over ranks, :func:`top_k_mask`). ``group=None`` everywhere means one
process (no communication); ``group=True`` means the default process group.

Every function taking a group is a collective: all ranks of the group must call it, in
the same order. No collective waits for ever: each gives up after
``$KOOPMAN_TUT_COLLECTIVE_TIMEOUT`` seconds (default 300, five minutes, instead of the
process group's 30) with a TimeoutError naming the collective and the limit
(:func:`collective_timeout`); a computation over ranks first checks that every rank
called it with the same settings (:func:`koopman_tut.numerics.distributed_checks.preflight`).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from .ints import plain_int
from .shards import local_tensor, shard_pieces, shard_range, unwrap  # noqa: F401 (kt.distributed.X)

Tensor = torch.Tensor
TIMEOUT_ENV = "KOOPMAN_TUT_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT_S, MIN_TIMEOUT_S, MAX_TIMEOUT_S = 300.0, 1e-3, 1e9  # below 1 ms: no limit; above: int64 ns overflow


def check_group(group, name: str = "group", off: str = "None (one process)") -> None:
    """TypeError naming ``name`` unless ``group`` is True (the default group) or a ProcessGroup (``off``: what
    else the argument accepts, checked by the caller)."""
    if group is not True and not (dist.is_available() and isinstance(group, dist.ProcessGroup)):
        raise TypeError(f"{name} must be {off}, True (the default group) or a torch.distributed.ProcessGroup, "
                        f"got {group!r} ({type(group).__name__})")


def _group(group):
    """The process group ``group`` names (True: the default one), checked."""
    check_group(group)
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("group= needs torch.distributed initialised (dist.init_process_group, or torchrun)")
    return None if group is True else group


def _comm_device(group) -> torch.device:
    """NCCL reduces CUDA tensors only; gloo reduces CPU tensors."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def collective_timeout() -> float:
    """Seconds a collective waits for the other ranks: ``$KOOPMAN_TUT_COLLECTIVE_TIMEOUT`` (read each call), else 300."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        t = float(raw)
    except ValueError:
        t = math.nan
    if not MIN_TIMEOUT_S <= t <= MAX_TIMEOUT_S:  # torch waits in whole ms, int64 ns
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds in [{MIN_TIMEOUT_S:g}, {MAX_TIMEOUT_S:g}] "
                         f"(torch waits whole ms, 0 ms meaning no limit, and overflows past ~1e10 s), got {raw!r}")
    return t


def _timed(launch, what: str, g) -> None:
    """Start an async collective (``launch()``) and wait for it at most :func:`collective_timeout`
    seconds; a TimeoutError naming it and the limit otherwise (a RuntimeError if it failed)."""
    limit = collective_timeout()  # checked before anything is sent
    where, t0 = f"rank {dist.get_rank(g)} of {dist.get_world_size(g)}", time.monotonic()
    try:
        done = launch().wait(timeout=timedelta(seconds=limit))
    except RuntimeError as e:  # gloo: "Operation timed out!", "Connection reset by peer", ...
        if time.monotonic() - t0 < limit and "timed out" not in str(e).lower():
            raise RuntimeError(f"{what} failed on {where}: {e}. Another rank probably ended or called a "
                               f"different collective: see its error") from e
        done = False
    if done is False:  # by this package's limit, or by the process group's own, shorter timeout
        waited, env = time.monotonic() - t0, f"the limit with the environment variable {TIMEOUT_ENV}=<seconds>"
        raise TimeoutError(f"{what} did not complete within {limit if waited >= 0.9 * limit else round(waited, 1):g} "
                           f"s on {where}: another rank stalled, died or is waiting in a different collective. If a "
                           f"rank is only slow, raise " + (f"{env} (default {DEFAULT_TIMEOUT_S:g})" if waited >= 0.9 *
                           limit else f"the process group's own timeout (init_process_group(timeout=...)): it ended "
                           f"the wait before {env} ({limit:g} s)") + ". The process group is unusable now: end every rank")


def _describe(t: Tensor) -> str:
    return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def _all_reduce(y: Tensor, op, g, what: str) -> None:
    _timed(lambda: dist.all_reduce(y, op=op, group=g, async_op=True), f"all_reduce ({what}) of a "
           f"{_describe(y)} tensor", g)


def _all_gather(out: list[Tensor], t: Tensor, g, what: str) -> None:
    _timed(lambda: dist.all_gather(out, t, group=g, async_op=True), f"all_gather ({what}) of {_describe(t)} "
           f"tensors", g)


def _reduce(x: Tensor, group, op) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor (the same shape and dtype on every rank), got {type(x).__name__}")
    g = _group(group)
    y = x.to(_comm_device(g)).clone()
    name = "sum" if op == dist.ReduceOp.SUM else "max"
    if y.is_complex():  # not every backend reduces complex tensors: a sum is a sum of (re, im)
        r = torch.view_as_real(y).contiguous()
        _all_reduce(r, op, g, name)
        y = torch.view_as_complex(r)
    else:
        _all_reduce(y, op, g, name)
    return y.to(x.device)


def all_reduce_sum(x: Tensor, group) -> Tensor:
    """The elementwise sum of ``x`` over the group's ranks (a new tensor on x's device)."""
    return _reduce(x, group, dist.ReduceOp.SUM)


def all_reduce_max(x: Tensor, group) -> Tensor:
    """The elementwise maximum of real ``x`` over the group's ranks (a new tensor on x's device)."""
    return _reduce(x, group, dist.ReduceOp.MAX)


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


def all_gather_sizes(n: int, group) -> list[int]:
    """[n of rank 0, n of rank 1, ...]: one integer from every rank."""
    g = _group(group)
    t = torch.tensor([n], dtype=torch.int64, device=_comm_device(g))
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size(g))]
    _all_gather(out, t, g, "sizes")
    return [int(x.item()) for x in out]


def all_gather_rows(x: Tensor, group) -> Tensor:
    """Every rank's ``x`` (n_r, ...) concatenated in rank order (n_r may differ between ranks).

    Returns (sum_r n_r, ...) on x's device. bool tensors travel as uint8.
    """
    if not isinstance(x, Tensor) or x.ndim == 0:
        raise TypeError(f"x must be a torch.Tensor with rows (n_r, ...), got {type(x).__name__} "
                        f"{tuple(getattr(x, 'shape', ()))}")
    sizes = all_gather_sizes(x.shape[0], group)
    g = _group(group)
    wire = x.to(torch.uint8) if x.dtype == torch.bool else x
    buf = torch.zeros((max(sizes),) + tuple(x.shape[1:]), dtype=wire.dtype, device=_comm_device(g))
    buf[: x.shape[0]] = wire.to(buf.device)
    out = [torch.empty_like(buf) for _ in sizes]
    _all_gather(out, buf, g, "rows")
    return torch.cat([o[:s] for o, s in zip(out, sizes)]).to(device=x.device, dtype=x.dtype)


# ----------------------------------------------------------------------------- exact global top-k
def order_keys(x: Tensor) -> Tensor:
    """int64 keys ordered as the float64 values of ``x`` (finite; exact for float32 and below; -0.0
    counts as 0.0): IEEE sign-magnitude bits turned into two's complement. Integers are their own keys
    (float64 would merge int64 scores above 2**53)."""
    if not x.is_floating_point():
        return x.detach().reshape(-1).to(torch.int64)
    b = (x.detach().reshape(-1).to(torch.float64) + 0.0).view(torch.int64)
    return torch.where(b >= 0, b, -1 - (b & 0x7FFFFFFFFFFFFFFF))


def top_k_mask(x: Tensor, k: int, group, with_ties: bool = False):
    """(m,) bool on the CPU, True for this rank's entries among the k largest of ``x`` over ALL ranks.

    Exact, with no rank seeing another's scores: the k-th largest value (in float64, exact for
    float32 scores) is found byte by byte from eight all-reduced 256-bin histograms of
    order-preserving keys (radix select); ties at it are kept in (rank, index) order, i.e. as one
    process would keep them on the scores concatenated in rank order with a stable sort (the
    earlier entry first).

    Parameters
    ----------
    x : (m,) this rank's scores (m may differ between ranks, and may be 0); no NaN.
    k : how many to keep over all ranks, the same on every rank.
    with_ties : also return how many entries equal to the k-th largest are kept and how many there are
        (over all ranks, the same on every rank; 0, 0 when they do not straddle the cut).
    A rank whose x or k is refused raises at once; the others stop at :func:`collective_timeout`.
    """
    if not isinstance(x, Tensor) or x.ndim != 1 or x.is_complex() or x.dtype in (torch.bool, torch.uint64):
        raise TypeError(f"x must be a 1-D real tensor of scores (not bool or uint64), got {type(x).__name__} "
                        f"{tuple(getattr(x, 'shape', ()))} {getattr(x, 'dtype', '')}")
    k = plain_int(k)  # a 0-d integer tensor, as torch takes one
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ValueError(f"k must be an integer >= 0 (entries to keep over all ranks), got {k!r}")
    if x.is_floating_point() and bool(torch.isnan(x).any()):  # (+-Inf rank first and last, as a sort ranks them)
        raise ValueError("x holds NaN: a NaN score has no rank (it would be kept above every value)")
    keys = order_keys(x.cpu())
    kept = torch.zeros(keys.numel(), dtype=torch.bool)
    if k <= 0:
        return (kept, 0, 0) if with_ties else kept
    cand = torch.ones_like(kept)  # entries whose key agrees with the threshold's bytes so far
    need = k  # still to keep among the candidates
    for shift in range(56, -1, -8):
        digit = (keys >> shift) & 0xFF
        if shift == 56:
            digit = digit ^ 0x80  # the sign byte: two's complement order as unsigned
        hist = all_reduce_sum(torch.bincount(digit[cand], minlength=256), group)  # (256,) over ranks
        at_least = hist.flip(0).cumsum(0).flip(0)  # at_least[d]: candidates with digit >= d
        if int(at_least[0]) < need:
            raise ValueError(f"k = {k} exceeds the number of scores over all ranks")
        d = int(torch.nonzero(at_least >= need).max())  # the k-th largest key has digit d here
        need -= int(at_least[d] - hist[d])  # those with a larger digit are all kept
        kept |= cand & (digit > d)
        cand &= digit == d
    # cand now marks the ties, keys equal to the k-th largest; `need` of them are kept over all ranks
    ties = torch.nonzero(cand).reshape(-1)
    counts = all_gather_sizes(ties.numel(), group)
    rank = world(group)[0]
    take = min(max(need - sum(counts[:rank]), 0), ties.numel())
    kept[ties[:take]] = True
    straddle = need < sum(counts)
    return (kept, need if straddle else 0, sum(counts) if straddle else 0) if with_ties else kept


# ----------------------------------------------------------------------------- row-sharded trajectories
def gather_pieces(local: dict[str, Tensor], traj, group, fill=0) -> dict[str, Tensor]:
    """Whole tensors from every rank's pieces of a row-sharded trajectory (``TrajectoryRecorder(shard=True)``).

    Parameters
    ----------
    local : {name: tensor} on this rank, shaped like ``traj``'s pieces (e.g. scores or
        :func:`koopman_tut.pruning.global_masks`' masks from the local rows); names may be missing.
    traj : this rank's trajectory; ``traj.meta`` holds "rows", "n_total", "all_names", "all_shapes".
    fill : value for entries of names absent from ``local`` on this rank.

    Returns
    -------
    {name: tensor of the whole parameter's shape}, the same on every rank, for every name that
    any rank has in ``local``; in the dtype of the first rank's tensors (a rank holding none fills in it).
    """
    meta = traj.meta
    if "all_names" not in meta:
        raise ValueError("traj is not row-sharded (record with TrajectoryRecorder(..., shard=True))")
    ref = next(iter(local.values())) if local else torch.tensor(fill)  # device, and dtype unless another rank's
    line = json.dumps([sorted(local), str(ref.dtype).removeprefix("torch.") if local else None]) + "\n"
    lines = bytes(all_gather_rows(torch.frombuffer(bytearray(line.encode()), dtype=torch.uint8), group).tolist())
    told = [json.loads(x) for x in lines.decode().splitlines()]  # [names, dtype] per rank, no pickle
    wanted, dtype = {n for names, _ in told for n in names}, next((d for _, d in told if d), None)
    dtype = getattr(torch, dtype) if dtype else ref.dtype  # the first rank holding tensors decides for all
    flat = torch.cat([torch.zeros(0, dtype=dtype, device=ref.device)] + [
        local[n].reshape(-1).to(dtype) if n in local else torch.full((math.prod(s),), fill, dtype=dtype, device=ref.device)
        for n, s in zip(traj.names, traj.shapes)])
    full = all_gather_rows(flat, group)
    if full.numel() != int(meta["n_total"]):
        raise ValueError(f"the ranks' rows add up to {full.numel()}, the trajectory has {meta['n_total']}")
    out, o = {}, 0
    for n, s in zip(meta["all_names"], meta["all_shapes"]):
        size = math.prod(s)
        if n in wanted:
            out[n] = full[o:o + size].reshape(s)
        o += size
    return out

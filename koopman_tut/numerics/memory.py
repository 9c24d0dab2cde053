"""Free memory, and what a computation on W will allocate, checked against it before it starts.

A Gram matrix is small when W is tall (n features >> T snapshots). Passed the other way round, a
(64, 1,000,000) W asks for a (10^6, 10^6) float64 matrix, 7.3 TiB, which torch refuses with its
allocator's message or, below the machine's limit, takes (and the machine's memory with it). Each
check here raises a MemoryError that names the argument, its shape and what to do, before anything is
allocated; over ranks the callers run it in their pre-flight, so every rank refuses together.

Peak extra memory, measured (tracemalloc and torch's allocator, T = 2,000 .. 8,000), in (T, T) float64
matrices: kt.dmd's Gram route 11.8-12.8 (the pass alone 4.4-4.8: mirroring the upper triangle makes
three), kt.estimate_limit 7.5-10.8; the SVD route 8.4 float64 copies of W.
"""
from __future__ import annotations

import math
import os

import torch

PROBE_BYTES = 2**26  # smaller needs are not checked (reading the free memory costs a file read)
GRAM_COPIES = 13  # the Gram pass and the solve, in (T, T) float64 matrices (measured: up to 12.8)
PASS_COPIES = 5  # the pass alone, where it runs (a GPU: the solve runs on the CPU)
SVD_COPIES = 9  # float64 copies of W the SVD route makes (measured: 8.4)


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: free device memory; CPU: MemAvailable, within a cgroup's limit)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(free, _cgroup_room())


CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # v2, then v1: (limit, use)
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def _cgroup_room() -> float:
    """Bytes the process's cgroup (v2, or v1) lets it allocate beyond its use; inf without a limit."""
    for limit, used in CGROUP_FILES:
        try:
            with open(limit) as f, open(used) as g:
                cap = f.read().strip()
                if cap != "max" and int(cap) < 2**60:  # v1 writes "no limit" as ~2^63
                    return max(int(cap) - int(g.read().strip()), 0)
                return math.inf
        except (OSError, ValueError):
            continue
    return math.inf


def check_fits(nbytes: float, what: str, device: torch.device = torch.device("cpu")) -> None:
    """MemoryError "``what`` about N GiB, more than the F GiB free", where ``nbytes`` would not fit on ``device``."""
    if nbytes < PROBE_BYTES or device.type not in ("cpu", "cuda"):
        return
    free = available_bytes(device)
    if nbytes > free:
        raise MemoryError(f"{what} about {nbytes / 2**30:,.2f} GiB, more than the {free / 2**30:,.2f} GiB free on "
                          f"{device}")


def check_gram_fits(W: torch.Tensor, dtype: torch.dtype = torch.float64, hint: str = "", name: str = "W") -> None:
    """MemoryError, naming ``name``, its shape and ending with ``hint``, where W's (T, T) Gram in ``dtype``
    (one per leading index of W: (..., n, T)), its pass and the solve would not fit."""
    n, T = W.shape[-2], W.shape[-1]
    batch = math.prod(W.shape[:-2])
    size = T * T * torch.empty((), dtype=dtype).element_size()
    each = f" each, {batch:,} of them" if batch > 1 else ""
    what = (f"{name} has shape {tuple(W.shape)}: {T:,} snapshots (columns) of {n:,} features (rows), and its (T, T) "
            f"{dtype} Gram matrix is {size / 2**30:,.2f} GiB{each}. {name} is (n_features, n_snapshots): if its "
            f"rows are the snapshots, pass {name}.{'mT' if W.ndim > 2 else 'T'}{hint}. The pass and the solve need")
    if W.device.type == "cuda":
        check_fits(PASS_COPIES * size * batch, what, W.device)
    check_fits(GRAM_COPIES * size * batch, what)  # the solve runs on the CPU


def gram_zeros(W: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Zeros of shape W.shape[:-2] + (T, T) in ``dtype`` on W's device, for W (..., n, T), after
    :func:`check_gram_fits`."""
    check_gram_fits(W, dtype)
    return torch.zeros(tuple(W.shape[:-2]) + (W.shape[-1], W.shape[-1]), dtype=dtype, device=W.device)

"""Free memory, and the (T, T) Gram matrix of a pass over W checked against it before it is allocated.

A Gram matrix is small when W is tall (n features >> T snapshots). Passed the other way round,
a (64, 1,000,000) W asks for a (10^6, 10^6) float64 matrix: 7.3 TiB, which torch refuses with
its allocator's message, or, below the machine's limit, takes (and the machine's memory with it).
"""
from __future__ import annotations

import os

import torch

PROBE_BYTES = 2**26  # smaller Grams are allocated without reading the free memory (a file read per pass)
SOLVE_COPIES = 4  # the Gram and the (T, T) matrices the solve forms from it (assembled Gram, eigenvectors, ...)


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_gram_fits(W: torch.Tensor, dtype: torch.dtype, hint: str = "") -> None:
    """MemoryError, naming W's shape (and ending with ``hint``), where W's (T, T) Gram in ``dtype`` and
    the solve's copies of its size would not fit in the free memory of W's device (W: (..., n, T))."""
    n, T = W.shape[-2], W.shape[-1]
    size = torch.Size(tuple(W.shape[:-2]) + (T, T)).numel() * torch.empty((), dtype=dtype).element_size()
    if size < PROBE_BYTES or W.device.type not in ("cpu", "cuda"):
        return
    free = available_bytes(W.device)
    if SOLVE_COPIES * size > free:
        raise MemoryError(
            f"W has shape {tuple(W.shape)}: {T:,} snapshots (columns) of {n:,} features (rows), and its "
            f"(T, T) {dtype} Gram matrix needs {size / 2**30:,.2f} GiB ({SOLVE_COPIES} of them for the solve), "
            f"more than the {free / 2**30:,.2f} GiB free on {W.device}. W is (n_features, n_snapshots): if its "
            f"rows are the snapshots, pass W.T{hint}")


def gram_zeros(W: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Zeros of shape W.shape[:-2] + (T, T) in ``dtype`` on W's device, for W (..., n, T), after
    :func:`check_gram_fits`."""
    check_gram_fits(W, dtype)
    return torch.zeros(tuple(W.shape[:-2]) + (W.shape[-1], W.shape[-1]), dtype=dtype, device=W.device)

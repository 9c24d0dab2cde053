"""W @ C for a tall W and a small C, in float64: modes, fixed points and limits are combinations
of the snapshots with large, cancelling coefficients, so they are summed in float64 whatever
W's dtype, one chunk of rows at a time (no full-size copy)."""
from __future__ import annotations

import torch

from . import cpu_routes, native
from .snapshots import chunk_buffer, default_chunk_rows, snapshot_major

Tensor = torch.Tensor


def matmul_chunked(W: Tensor, C: Tensor, chunk_rows: int | None = None) -> Tensor:
    """W @ C for a tall real W (n, T) and a small C (T, k), computed in float64.

    Lower-precision W (float32, float16, bfloat16) is converted one chunk of rows at a
    time (no full-size copy) and multiplied in float64, so modes and fixed points carry the
    accuracy of the float64 solution, not float32 summation error amplified by large,
    cancelling coefficients (extrapolation).

    Returns
    -------
    (n, k) in W's dtype (float32 for half-precision W), on W's device.
    """
    W = W.detach()  # read, never differentiated (see snapshots' notes)
    if C.shape[1:] == (1,) and (out := native.combine(W, C[:, 0])) is not None:  # one pass, where it was built
        return out[:, None]
    C = C.detach().to(device=W.device, dtype=torch.float64).contiguous()  # a strided C slows the loop
    n, k = W.shape[0], C.shape[1]
    in_place = W.dtype == torch.float64  # float64 chunks are used as they are, no conversion
    out_dtype = torch.float32 if W.dtype in (torch.float16, torch.bfloat16) else W.dtype
    # where oneMKL runs on an Intel CPU, 1 MiB chunks and, for one output from row-major data, a float64
    # GEMV; elsewhere a multiply and a sum there (GEMV ran ~4x slower on AMD; :mod:`.cpu_routes`)
    intel = W.device.type == "cpu" and cpu_routes.mkl_on_intel()
    rowwise = k == 1 and not snapshot_major(W)
    gemv = rowwise and intel
    rows = chunk_rows or (max(1, cpu_routes.INTEL_CHUNK_ELEMENTS // W.shape[1]) if intel
                          else default_chunk_rows(W.shape[1], W.device))
    out = torch.empty(n, k, dtype=out_dtype, device=W.device)
    buf = None if in_place else chunk_buffer(W, min(rows, n))
    if rowwise:  # preallocated: a fresh multi-MiB temporary per chunk costs page faults
        prod = None if gemv else torch.empty(min(rows, n), W.shape[1], dtype=torch.float64, device=W.device)
        dot = torch.empty(min(rows, n), dtype=torch.float64, device=W.device)
    for s in range(0, n, rows):
        if in_place:
            b = W[s:s + rows]
        else:
            b = buf[: min(rows, n - s)]  # (rows, T) float64
            b.copy_(W[s:s + rows])
        if rowwise:
            e = b.shape[0]
            if gemv:
                torch.mv(b, C[:, 0], out=dot[:e])
            else:
                torch.sum(torch.mul(b, C[:, 0], out=prod[:e]), -1, out=dot[:e])  # summed in float64,
            out[s:s + e, 0] = dot[:e]  # rounded once
        else:  # (k, T) @ (T, rows): the GEMM reads b in its own order (3x faster for k = 2)
            out[s:s + rows] = (C.mT @ b.mT).mT
    return out

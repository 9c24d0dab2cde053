"""The snapshot matrix: validation, and the one-pass Gram matrix behind tall-skinny DMD.

A trajectory W = [w_0 ... w_{T-1}] of shape (n_features, n_snapshots), n >> T (Redman et
al., ICLR 2022; method of snapshots, Sirovich 1987). G = W^H W holds both X^H X and X^H Y
of exact DMD (Tu et al. 2014), since X and Y are column slices of W.
"""
from __future__ import annotations

import numpy as np
import torch

Tensor = torch.Tensor
CHUNK_ELEMENTS = 2**22  # rows per Gram chunk = this // (n_snapshots + 1): 16 MiB of float32


def as_snapshots(W, name: str = "W", min_snapshots: int = 2) -> Tensor:
    """Validate a snapshot matrix and return it as a floating torch tensor (no copy if possible).

    Parameters
    ----------
    W : torch.Tensor or numpy.ndarray, shape (n_features, n_snapshots) or (B, n_features, n_snapshots)
    """
    if isinstance(W, np.ndarray):
        if W.dtype.kind not in "fc":
            raise TypeError(f"{name} must hold floating-point values, got numpy dtype {W.dtype}")
        W = torch.from_numpy(np.ascontiguousarray(W))
    elif not isinstance(W, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray of shape "
                        f"(n_features, n_snapshots), got {type(W).__name__}")
    if not (W.is_floating_point() or W.is_complex()):
        raise TypeError(f"{name} must be floating point (float32/float64), got {W.dtype}")
    if W.dtype in (torch.float16, torch.bfloat16):
        W = W.float()
    if W.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (n_features, n_snapshots) or "
                         f"(batch, n_features, n_snapshots), got {W.ndim} dimension(s) {tuple(W.shape)}")
    if W.shape[-1] < min_snapshots:
        raise ValueError(f"{name} needs at least {min_snapshots} snapshots (columns), got {W.shape[-1]}; "
                         f"snapshots are columns: shape is (n_features, n_snapshots)")
    if W.shape[-2] < 1:
        raise ValueError(f"{name} has no features (rows)")
    return W


def check_finite(W: Tensor, name: str = "W", chunk_rows: int = 2**16) -> None:
    """Raise ValueError if W holds NaN or Inf (chunked, so no W-sized temporary)."""
    for s in range(0, W.shape[-2], chunk_rows):
        if not bool(torch.isfinite(W[..., s:s + chunk_rows, :]).all()):
            raise ValueError(f"{name} contains NaN or Inf values (first in rows {s}..{s + chunk_rows})")


def gram(W: Tensor, ref: Tensor | None = None, chunk_rows: int | None = None) -> Tensor:
    """G = W^H W in float64 on the CPU, one chunked pass over W's rows.

    Parameters
    ----------
    W : Tensor, shape (..., n, T), any device and float dtype.
    ref : Tensor, shape (..., n), optional. Reference snapshot; defaults to the last one.
        Products are taken of the deviations W - ref (small near convergence), accumulated
        in W's dtype per chunk and summed in float64, then the Gram of W is assembled exactly.
    chunk_rows : rows per chunk; peak extra memory is about chunk_rows * (T + 1) elements.

    Returns
    -------
    G : Tensor, shape (..., T, T), float64 or complex128, on the CPU.
    """
    n, T = W.shape[-2], W.shape[-1]
    ref = W[..., -1] if ref is None else ref
    chunk_rows = chunk_rows or max(1, CHUNK_ELEMENTS // (T + 1))
    acc_dtype = torch.complex128 if W.is_complex() else torch.float64
    acc = torch.zeros(W.shape[:-2] + (T + 1, T + 1), dtype=acc_dtype, device=W.device)
    buf = torch.empty(W.shape[:-2] + (min(chunk_rows, n), T + 1), dtype=W.dtype, device=W.device)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        b = buf[..., : stop - start, :]
        torch.sub(W[..., start:stop, :], ref[..., start:stop, None], out=b[..., :T])
        b[..., T] = ref[..., start:stop]
        acc += (b.mH @ b).to(acc_dtype)  # (..., T+1, T+1), small
    acc = acc.cpu()
    dd, dr, rr = acc[..., :T, :T], acc[..., :T, T], acc[..., T, T]
    # W = D + r 1^T  =>  W^H W = D^H D + (D^H r) 1^T + 1 (r^H D) + (r^H r) 1 1^T
    return dd + dr[..., :, None] + dr.conj()[..., None, :] + rr[..., None, None]

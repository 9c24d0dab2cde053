"""A window that does not move at all: every snapshot equal to the one before, bit for bit.

Training that has converged to the stored precision (steps below half an ulp of every
parameter, or lr 0) records such windows, and it is the case the paper's claim is about:
at convergence the limit is the weights themselves, and KMP is magnitude pruning. The affine
model of the differences has nothing to fit there (rank 0), but nothing is unknown either:
the limit and every forecast are the last snapshot, exactly, and trusted. The Koopman gradient is
what the recorded settings make of a zero step (-wd theta under weight decay), but not trusted: a
zero gradient and one whose steps fall below the stored precision record the same still window
(float32 quadratics stalled so: 36 gradients 100% off had passed as trusted, in a review's sweep).
Windows whose steps are only *within rounding* (not zero) are refused
instead, by name (:func:`koopman_tut.numerics.dmd_checks.no_steps_reason`): there the stored
numbers cannot say where training goes.
"""
from __future__ import annotations

import math

import torch

from .distributed import all_reduce_max
from .matmul import matmul_chunked
from .trust import Extrapolation

Tensor = torch.Tensor


def is_still(W: Tensor, group=None) -> bool:
    """Whether every column of W (n, T) equals the one before it exactly, on every rank of ``group``."""
    moved = 0.0
    for lo in range(0, W.shape[-2], 1 << 16):  # rows in chunks: no (n, T) temporary
        rows = W[..., lo: lo + (1 << 16), :]
        if not torch.equal(rows[..., 1:], rows[..., :-1]):
            moved = 1.0
            break
    if group is not None:
        moved = float(all_reduce_max(torch.tensor([moved], dtype=torch.float64), group)[0])
    return moved == 0.0


def still_estimate(W: Tensor, eigs: Tensor, holdout: int, h: float | None) -> Extrapolation:
    """The estimate of a still window W (n, T): theta(T-1+h) = W[:, -1] (h = math.inf: the limit), trusted, or
    for ``h`` None its step (a Koopman gradient's difference), zero, with ``rounding`` inf (see the module notes)."""
    T = W.shape[-1]
    coef = torch.zeros(T, 1, dtype=torch.float64)
    if h is not None:
        coef[-1] = 1
    return Extrapolation(theta=matmul_chunked(W, coef)[:, 0], eigs=eigs, drifting=eigs[:0], gain=0.0,
                         horizon=math.inf if h is not None else 0.0, spread=0.0, holdout_error=0.0, residual=0.0,
                         holdout=holdout, window=T, limit=h is not None and math.isinf(h),
                         rounding=0.0 if h is not None else math.inf)

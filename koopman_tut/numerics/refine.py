"""One more pass over W where the steps' Gram cannot resolve what the data holds.

The Gram route's float64 Gram S^H S of the steps S = [w_1 - w_0 .. w_{T-1} - w_{T-2}] (n, T-1)
carries rounding of about eps64 ||S||^2, so it sees singular values of S only down to about
sqrt(eps64) ||S||_2 (:mod:`koopman_tut.numerics.reduced`). Float32 data never holds anything
finer (its own rounding, eps32 ||W||_F, is coarser), but a float64 window whose fastest modes
have nearly decayed does: a mode at 4e-9 of the largest step is real there, the QR route keeps
it, and the Gram route alone cannot.

The fix is the idea behind shifted CholeskyQR (Fukaya, Kannan, Nakatsukasa, Yamamoto &
Yanagisawa 2020): precondition with what the Gram did resolve and take the Gram again. With
S^H S = P L P^H (computed) and D = sqrt(L + shift), shift the squared floor, the columns of
Q1 = S P D^-1 have their resolved directions at unit scale, so its float64 Gram resolves S
down to about sqrt(eps64) sqrt(shift), i.e. a few eps64 ||S||_2: what Householder QR resolves.
Q1 is formed row by row as (s_i P) D^-1, an orthogonal and a diagonal map, so each row is
backward stable (|s_i - q_i D P^H| <= ~T eps64 |s_i|): S = Q1 (D P^H) up to the data's own
rounding, and with Q1^H Q1 = R1^H R1, R1 D P^H is a factor of S, R^H R = S^H S, as accurate
as the QR route's (measured: see tests/test_limits.py, the route pair on warm windows).

:func:`refined_factor` does the same for the snapshots themselves, W = Q1 (D P^H) from W's
Gram, where kt.dmd's Gram route meets a float64 X with singular values below its floor.

It runs wherever the Gram route's floor lies above the data's rounding: for float64 data, never
for data recorded in float32 or below through the steps' Gram (only a contrived float32 window
given by its deviations' Gram, whose rounding can be coarser, may take it). The cost is one more
pass over W (the steps, one GEMM with the (T-1, T-1) preconditioner, one Gram):
``benchmarks/bench_dmd.py --dtype float64`` prints what the affine limit costs with it.
"""
from __future__ import annotations

import math
from functools import partial

import torch

from .dmd import deviation_gram_checked
from .snapshots import check_chunk_rows, chunk_buffer, default_chunk_rows, snapshot_major
from .syrk import add_upper_gram_, mirror_upper

Tensor = torch.Tensor
EPS64 = torch.finfo(torch.float64).eps


def preconditioned_step_gram(W: Tensor, chunk_rows: int | None = None, *, C: Tensor) -> Tensor:
    """The float64 Gram (q, q) of S C, S (n, T-1) the steps of W (n, T) and C (T-1, q), in one pass.

    Each chunk of rows is converted to float64, differenced there (exactly for float32 data) and
    multiplied by C before its Gram is added: S C is never formed whole. The buffers lie in W's
    memory order (:func:`~koopman_tut.numerics.snapshots.chunk_buffer`), as in the first pass.
    """
    return preconditioned_gram(W, chunk_rows, C=C, steps=True)


def preconditioned_gram(W: Tensor, chunk_rows: int | None = None, *, C: Tensor, steps: bool = False) -> Tensor:
    """The float64 Gram (q, q) of W C (or, with ``steps``, of its steps S C), in one pass over W (n, T)."""
    check_chunk_rows(chunk_rows)
    W = W.detach()
    n, T = W.shape[-2], W.shape[-1]
    rows = max(1, min(chunk_rows or default_chunk_rows(T, W.device), n))  # a rank may hold no rows
    C = C.to(device=W.device, dtype=torch.complex128 if W.is_complex() or C.is_complex() else torch.float64)
    acc = torch.zeros(C.shape[-1], C.shape[-1], dtype=C.dtype, device=W.device)
    buf, diffs = chunk_buffer(W, rows), (chunk_buffer(W, rows) if steps else None)
    by_snapshot = snapshot_major(W)  # then y is kept as y^T (q, e), in the steps' order: 1.5x faster
    y = torch.empty((C.shape[-1], rows) if by_snapshot else (rows, C.shape[-1]), dtype=C.dtype, device=W.device)
    for start in range(0, n, rows):
        e = min(rows, n - start)
        d = b = buf[:e]  # (e, T) float64
        b.copy_(W[start:start + e])
        if steps:
            d = torch.sub(b[:, 1:], b[:, :-1], out=diffs[:e, : T - 1])  # (e, T-1), the steps, in float64
        d = d if d.dtype == C.dtype else d.to(C.dtype)  # real W, complex C: as complex, exactly
        if by_snapshot:
            ye = torch.matmul(C.mT, d.mT, out=y[:, :e]).mT  # (e, q) = d C, stored as its transpose
        else:
            ye = torch.matmul(d, C, out=y[:e])  # (e, q): preconditioned
        add_upper_gram_(acc, ye)
    return mirror_upper(acc).cpu()


def refined_factor(W: Tensor, G: Tensor, group=None) -> Tensor:
    """R (q, T) with R^H R = W^H W, resolved to about the QR route's floor, from W's float64 Gram
    ``G`` (T, T) of a first pass (summed over ``group``'s ranks) and one more pass over W."""
    scale = math.sqrt(max(float(torch.linalg.eigvalsh(G)[-1]), 0.0))
    ev, P = torch.linalg.eigh(G / scale**2)
    d = (ev.clamp_min(0) + 16 * EPS64).sqrt() * scale  # shift: the Gram's floor, squared
    G1 = deviation_gram_checked(W, group=group, gram=partial(preconditioned_gram, C=P / d[None, :]))
    return gram_factor(G1) @ (d[:, None] * P.mH)


def refined_step_factor(W: Tensor, Gd: Tensor, scale: float, group=None) -> Tensor:
    """R (q, T-1) with R^H R = S^H S for the steps S of W, resolved to about the QR route's floor.

    Parameters
    ----------
    W : (n, T) the window (this rank's rows when sharded over ``group``).
    Gd : (T-1, T-1) the steps' float64 Gram from the first pass (summed over ranks).
    scale : sqrt of the largest eigenvalue of the Gram that pass accumulated (its rounding is
        ~eps64 scale^2); the preconditioner is built relative to it, so nothing underflows.
    """
    C, B = step_preconditioner(Gd, scale)
    G1 = deviation_gram_checked(W, group=group, gram=partial(preconditioned_step_gram, C=C))
    return gram_factor(G1) @ B  # S = Q1 D P^H; G1 = Q1^H Q1, resolved directions at unit scale


def step_preconditioner(Gd: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """(C, B), both (T-1, T-1), from the steps' first-pass Gram ``Gd`` and its ``scale`` (see
    :func:`refined_step_factor`): C = P D^-1 puts the directions the Gram resolved at unit scale, B = D P^H
    maps back, so gram_factor(the Gram of S C) @ B is a factor of S resolved to the QR route's floor."""
    ev, P = torch.linalg.eigh(Gd / scale**2)
    d = (ev.clamp_min(0) + 16 * EPS64).sqrt() * scale  # shift: the Gram route's floor, squared
    return P / d[None, :], d[:, None] * P.mH


def gram_factor(G: Tensor) -> Tensor:
    """R (q, m) with R^H R = G for a float64 Gram G (m, m), directions below eps64 of its largest
    eigenvalue dropped (singular values below sqrt(eps64) s_max: rounding of the Gram)."""
    ev, P = torch.linalg.eigh(G)
    keep = ev > ev.max() * EPS64
    return ev[keep].sqrt()[:, None] * P[:, keep].mH

"""What exact DMD says about data it cannot use: why nothing can be decomposed, and when the
amplitudes, fitted to the first snapshot, mean nothing; and why the affine model of a window's
differences (the limit) finds no step to fit.

Exact DMD fits its amplitudes b to the first snapshot, lstsq(modes, w_0) (Tu et al. 2014; PyDMD).
When w_0 is zero (a zero-initialised model recorded from step 0), or has no component along
the modes, b is zero and so are ``reconstruct()``, ``predict()`` and ``fixed_point()``:
:func:`warn_zero_start` says so. Zero means within the stored data's rounding, eps of its dtype
times the largest snapshot, never a multiple of the snapshot count.
"""
from __future__ import annotations

import math
import warnings

import torch

from .distributed import all_reduce_max
from .finite import outside_stacklevel

Tensor = torch.Tensor


class ZeroStartWarning(UserWarning):
    """The modes explain nothing of W's first snapshot, so exact DMD's amplitudes (fitted to it) are zero."""


class ComplexModeWarning(UserWarning):
    """The eigenvalue closest to 1 (the paper's fixed-point mode) is complex: its mode is one of a conjugate pair,
    which turns rather than settles, so it is no fixed point."""


def warn_zero_start(B: Tensor, fitted: Tensor, dtype: torch.dtype) -> None:
    """Warn (:class:`ZeroStartWarning`) when ``fitted`` (k,), the modes' fit of the first column of
    B (k, T) (the snapshots in an orthonormal basis), is zero within the rounding of ``dtype``
    relative to the largest snapshot (computed on B scaled to 1: no underflow or overflow)."""
    scale = float(B.abs().max())
    if scale == 0 or not math.isfinite(scale):
        return
    largest = float((B / scale).norm(dim=0).max())
    if float((fitted / scale).norm()) <= torch.finfo(dtype).eps * largest:
        zero = float((B[:, 0] / scale).norm()) <= torch.finfo(dtype).eps * largest
        warnings.warn(ZeroStartWarning(
            ("W's first snapshot W[:, 0] is zero (a zero-initialised model?)" if zero else
             "W's first snapshot W[:, 0] has no component along the modes (the range of W[:, 1:])")
            + ", so the amplitudes, fitted to it as exact DMD does, are all zero: reconstruct(), predict() and "
            "fixed_point() give zeros. Start the window a step later, or estimate the limit with the affine model "
            "of the differences (kt.estimate_limit(W), the default), which needs no amplitude"),
            stacklevel=outside_stacklevel())


def nothing_to_decompose(W: Tensor, group=None) -> str:
    """Why X = W[..., :-1] has no direction to decompose: too few bits for its snapshot count, too small
    for float64, zero, or all of W zero. Over ``group``'s rows (every rank reaches this together)."""
    T, eps = W.shape[-1], torch.finfo(W.dtype).eps
    X, last = W[..., :-1], W[..., -1]
    big = torch.tensor([float(X.abs().max()) if X.numel() else 0.0, float(last.abs().max()) if last.numel() else 0.0],
                       dtype=torch.float64)
    big_x, big_last = (all_reduce_max(big, group) if group is not None else big).tolist()
    if big_x > 0 and T * eps >= 1:
        return (f"{T} snapshots in {W.dtype} leave no direction above rounding: the numerical-rank tolerance, "
                f"T eps(dtype) s_max = {T * eps:.3g} s_max (numpy.linalg.matrix_rank's rule), reaches the largest "
                f"singular value. Record in float32 (dtype=), or decompose fewer snapshots")
    if big_x > 0:
        return (f"X = W[:, :-1] is too small for float64 DMD (largest |entry| {big_x:.3g}): its squares (the Gram "
                f"route, below ~1e-154) or its singular values (subnormal, below ~1e-292) underflow. Rescale all of "
                f"W (every rank's rows alike) exactly by a power of two, here torch.ldexp(W, torch.tensor("
                f"{-math.frexp(big_x)[1]})) (its largest entry to about 1): the eigenvalues do not change, the "
                f"modes scale with it")
    if big_last > 0:
        return ("X = W[:, :-1] (every snapshot but the last) is zero: a linear model w_{t+1} = A w_t cannot leave "
                "zero, so there is nothing to decompose. Start the window later, or decompose the differences")
    return "W is all zeros (numerical rank 0): nothing to decompose"


def no_steps_reason(s_max: float, T: int, delays: int, f, dtype: torch.dtype) -> str:
    """Why the affine model of a window (T snapshots of ``dtype``, ``delays``) keeps no direction of its
    differences, whose largest singular value is ``s_max``; ``f`` its factor (reduced.Factor: the
    data's rounding floor, eps, the route)."""
    if s_max > 0 and (T - delays) * f.eps >= 1:
        return (f"{T} snapshots in {dtype} leave no step above rounding: the numerical-rank tolerance, "
                f"(T - delays) eps(dtype) s_max = {(T - delays) * f.eps:.3g} s_max (numpy.linalg.matrix_rank's rule), "
                f"reaches the largest singular value of the differences. Record in float32 (dtype=), or use fewer "
                f"snapshots (every=, or a shorter window)")
    if 0 < s_max <= f.data_floor:
        finer = {torch.float16: "torch.float32", torch.bfloat16: "torch.float32", torch.float32: "torch.float64"}
        way = f"in a finer dtype (dtype={finer[dtype]}), or " if dtype in finer else ""
        return (f"the window's steps are within {dtype}'s rounding of the parameters: the differences' largest "
                f"singular value, {s_max:.3g}, is at most eps sqrt(delays + 1) ||W||_F = {f.data_floor:.3g}, as far as "
                f"rounding the snapshots to {dtype} alone can move them, so the stored snapshots cannot tell these "
                f"steps from rounding. Where training has converged, its last snapshot is the limit to within that "
                f"rounding; otherwise record {way}snapshots further apart (every=), or a window where it moves more")
    if s_max == 0 and f.data_floor > 0:  # not still (the caller checked)
        if f.gram_route:  # the squares of steps below ~1e-154 of float64's range vanish as well
            return ("every difference of the window but the last is zero, or too small for the Gram route's squares "
                    "(below ~1e-154): record a window that ends later, or use method='svd'")
        return ("the window moves only at its last step: every difference before it is zero, so the affine model has "
                "no step to learn the dynamics from. Record a window that ends later")
    return ("the window does not move: every difference is zero or within its dtype's rounding "
            "(eps ||W||_F), or (Gram route) below ~1e-154, where its squares vanish: rescale it")

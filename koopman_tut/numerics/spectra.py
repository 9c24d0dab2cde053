"""Koopman spectra of training runs and the distance between them (Redman et al., NeurIPS 2024).

*Identifying Equivalent Training Dynamics* (Redman, Bello-Rivas, Fonoberova, Mohr, Kevrekidis,
Mezic; arXiv:2302.09160): two training runs are equivalent (topologically conjugate) when the
Koopman spectra of their trajectories agree, since a conjugacy h (x -> h(x)) maps Koopman
eigenfunctions to eigenfunctions with the same eigenvalues. The recipe, as in the authors' code:

* time-delay embed each run, z_t = [x_t; x_{t+1}; ...; x_{t+k}] (:func:`delay_embed`);
* pool the pairs (z_t, z_{t+1}) of several runs as the columns of X and Y and take the exact
  DMD (Tu et al. 2014) of the pairs (:func:`spectrum`);
* compare two spectra by the optimal one-to-one matching of eigenvalues in the complex plane,
  the mean matched distance (:func:`wasserstein`).

The significance test is this package's own design (:func:`permutation_test`: whole replicate
spectra relabelled, between-group minus within-group distance); the authors' code instead swaps
each optimally matched pair of eigenvalues between the two spectra by a coin flip, per seed.

Why a DMD of pairs here and not :func:`koopman_tut.numerics.dmd`: ``kt.dmd`` decomposes ONE snapshot
matrix (X = W[:, :-1], Y = W[:, 1:]); pooled runs are not one sequence (the last state of a run
is not followed by the first of the next), and the embedded matrices are small
((k+1) d rows), so :func:`dmd_pairs` takes a float64 thin SVD of X directly. It keeps the
project's conventions: the mean is never subtracted, singular values within the data's
rounding are numerically zero, and eigenvalues come in
:func:`koopman_tut.numerics.eig_order.canonical_order`. The experiments live in
:mod:`koopman_tut.numerics.equivalence`; the momentum-aware limit may reuse :func:`delay_embed`.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Sequence

import numpy as np
import torch

from .eig_order import canonical_order
from .spectral_distance import (PermutationResult, _check_count, distance_matrix,  # noqa: F401 (re-exported)
                                permutation_test, wasserstein)
from .equivalence import equivalence_runs
from .finite import check_finite, outside_stacklevel
from .snapshots import as_snapshots

Tensor = torch.Tensor
Array = Tensor | np.ndarray


class ResolutionWarning(UserWarning):
    """Some of the modes asked for lie below the stored data's rounding: they are reported as eigenvalue 0."""


def delay_embed(x: Array, delays: int) -> Array:
    """Time-delay embedding of one trajectory (features, time).

    Parameters
    ----------
    x : torch.Tensor (any device) or numpy.ndarray, shape (d, T); columns are states.
    delays : k >= 0, the number of delays (k = 0 returns ``x`` itself).

    Returns
    -------
    Same type, dtype and device as ``x``, shape ((k+1) d, T-k): column t is
    [x_t; x_{t+1}; ...; x_{t+k}] (block j holds x_{t+j}, as in the authors' code).
    """
    delays = _check_count(delays, "delays", minimum=0)
    as_snapshots(x, name="x", min_snapshots=delays + 1)  # type, dtype and shape checks, no copy
    if x.ndim != 2:
        raise ValueError(f"x must have shape (d, T), got {tuple(x.shape)}")
    T = x.shape[1]
    blocks = [x[:, j:T - delays + j] for j in range(delays + 1)]
    return np.concatenate(blocks, 0) if isinstance(x, np.ndarray) else torch.cat(blocks, 0)


def _as_runs(runs) -> list[Tensor]:
    """A list of (d, T_i) tensors from one (d, T) run, a (N, d, T) stack or a sequence of runs."""
    if isinstance(runs, (np.ndarray, Tensor)):
        if runs.ndim not in (2, 3) or runs.shape[0] == 0:
            raise ValueError(f"runs must be a (d, T) run or a non-empty (N, d, T) stack, got shape {tuple(runs.shape)}")
        runs = [runs] if runs.ndim == 2 else list(runs)
    elif not isinstance(runs, Sequence) or isinstance(runs, str) or len(runs) == 0:
        raise TypeError("runs must be a (d, T) array, a (N, d, T) stack or a non-empty sequence of (d, T) "
                        f"arrays (tensors or ndarrays), got {type(runs).__name__}")
    out = [as_snapshots(r, name=f"runs[{i}]") for i, r in enumerate(runs)]
    for i, r in enumerate(out):
        if r.ndim != 2:
            raise ValueError(f"every run must have shape (d, T) (features, time): runs[{i}] has shape {tuple(r.shape)}")
        if r.is_complex():
            raise TypeError(f"runs must be real (trajectories of real parameters): runs[{i}] is {r.dtype}")
    if len({r.shape[0] for r in out}) > 1 or len({r.device for r in out}) > 1:
        raise ValueError(f"runs must share d and device, got shapes {[tuple(r.shape) for r in out]}")
    return out


def pairs(runs, delays: int = 0) -> tuple[Tensor, Tensor]:
    """The pooled regression pairs of several runs: X (n, m) and Y (n, m), in the runs' dtype where they share one
    (the embedding copies values: nothing is rounded, and :func:`dmd_pairs` reads the precision from it), else float64.

    Column j of X is an embedded state z_t of some run and column j of Y its successor
    z_{t+1} in the same run; n = (k+1) d, m = sum_i (T_i - k - 1). Runs may differ in length.
    Runs of different dtypes give float64 pairs: pass :func:`dmd_pairs` the coarsest run's eps (``eps=``), as
    :func:`spectrum` does.
    """
    delays = _check_count(delays, "delays", minimum=0)
    runs = _as_runs(runs)
    short = [i for i, r in enumerate(runs) if r.shape[1] < delays + 2]
    if short:
        raise ValueError(f"runs {short} are too short: {delays} delays need T >= {delays + 2} snapshots per run, "
                         f"got shape {tuple(runs[short[0]].shape)} (a run is (d, T): features in rows, snapshots in "
                         f"columns; transpose a (T, d) run)")
    for i, r in enumerate(runs):  # each run's own row and column in the message
        check_finite(r, name=f"runs[{i}]")
    dtype = runs[0].dtype if len({r.dtype for r in runs}) == 1 else torch.float64
    Z = [delay_embed(r.to(dtype), delays) for r in runs]
    return torch.cat([z[:, :-1] for z in Z], 1), torch.cat([z[:, 1:] for z in Z], 1)


def dmd_pairs(X: Array, Y: Array, modes: int | None = None, eps: float | None = None) -> Tensor:
    """Eigenvalues of the exact-DMD operator A = Y X^+ fitted to pairs (columns of X -> Y).

    With X = U S V^H (thin, float64), A~ = U_r^H Y V_r S_r^-1 over the r kept directions; the
    operator Y X_r^+ has the r eigenvalues of A~ and is zero on the other directions. So the
    spectrum returned always has ``modes`` entries (n when None): A~'s eigenvalues, then zeros
    for directions beyond the numerical rank, which hold no data. Numerically zero: singular
    values at or below max(eps ||X||_F, max(n, m) eps64 s_max). The first term bounds the
    stored data's rounding (each entry off by at most eps/2 of itself, so a perturbation of
    spectral norm <= eps/2 ||X||_F); the second is the float64 SVD's own backward error
    (numpy.linalg.matrix_rank's rule).

    Where the first term cuts directions the second would keep (data stored in float32 or
    float16 whose singular values reach its rounding before ``modes`` are found), a
    :class:`ResolutionWarning` says how many of the zeros mark the limit of the stored precision:
    from such data no rule can tell a direction no run explores (whose rounding fills it) from a
    mode smaller than the rounding, which the same runs stored in float64 resolve (measured:
    OMD's runs of :func:`equivalence_example` stored in float32 keep 8 of their 10 eigenvalues,
    0.14 from the float64 spectrum, where OMD and OGD are 0.008 apart). A distance between
    spectra of two precisions counts those zeros as eigenvalues.

    Parameters
    ----------
    X, Y : (n, m) real tensors or ndarrays, the same shape and device; columns are states; finite.
    modes : keep the ``modes`` largest singular directions (the authors' ``k_mode``); None: all n.
    eps : machine epsilon of the data's precision, 0 < eps < 1; default: the coarser of X's and Y's dtypes' (float64's
        for integer data). float32 values given as float64 need ``eps=torch.finfo(torch.float32).eps``, or their
        rounding is kept as modes (float32 runs of a 4-D linear system, 2 delays: 0.29-0.36 off, 1e-9 with it).

    Returns
    -------
    (modes,) complex128 eigenvalues on X's device, in canonical order.
    """
    X, Y = (as_snapshots(v, name=k, min_snapshots=1) for k, v in (("X", X), ("Y", Y)))
    if X.ndim != 2 or X.shape != Y.shape or X.is_complex() or Y.is_complex() or X.device != Y.device:
        raise ValueError(f"X and Y must be real (n, m) tensors of one shape and device, got {tuple(X.shape)} "
                         f"and {tuple(Y.shape)}")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < 1):
        raise ValueError(f"eps must be None or the data's machine epsilon, a number in (0, 1), got {eps!r}")
    check_finite(X, name="X")
    check_finite(Y, name="Y")
    n = X.shape[0]
    if modes is not None:
        modes = _check_count(modes, "modes", minimum=1)
        if modes > n:
            raise ValueError(f"modes must be at most the embedded dimension {n}, got {modes}")
    count = n if modes is None else modes
    U, s, Vh = torch.linalg.svd(X.to(torch.float64), full_matrices=False)
    eps64 = torch.finfo(torch.float64).eps
    eps = float(max(torch.finfo(v.dtype).eps if v.is_floating_point() else eps64 for v in (X, Y)) if eps is None
                else eps)
    svd_floor = max(X.shape) * eps64 * float(s[0])
    frob = float(s[0]) * float((s / s[0]).norm()) if float(s[0]) > 0 else 0.0  # ||X||_F; s.norm() overflows past 1e154
    tol = max(eps * frob, svd_floor)
    r = min(count, int((s > tol).sum()))
    _warn_lost(min(count, int((s > svd_floor).sum())) - r, count, eps, tol, r)
    A = (U[:, :r].mT @ Y.to(torch.float64) @ Vh[:r].mT) / s[None, :r]
    lam = torch.linalg.eigvals(A.cpu()) if r else torch.zeros(0, dtype=torch.complex128)
    lam = torch.cat([lam, torch.zeros(count - r, dtype=torch.complex128)])
    return lam[canonical_order(lam)].to(X.device)


def _warn_lost(lost: int, count: int, eps: float, tol: float, kept: int) -> None:
    """The :class:`ResolutionWarning` of :func:`dmd_pairs`: ``lost`` directions the data holds (above the
    SVD's floor) that its precision cannot resolve (below ``tol``)."""
    if lost > 0:
        warnings.warn(ResolutionWarning(
            f"{lost} of the {count} modes asked for lie at or below the stored data's rounding (eps {eps:.1e} "
            f"times ||X||_F, {tol:.2e}) and are reported as eigenvalue 0: this precision cannot tell whether the "
            f"runs have modes there (the same runs stored in float64 may resolve them); compare spectra of runs "
            f"stored in one precision, or ask for at most {kept} modes"), stacklevel=outside_stacklevel())


def spectrum(runs, delays: int = 0, modes: int | None = None) -> Tensor:
    """Koopman spectrum of one or more runs: exact DMD of their pooled, delay-embedded pairs.

    Parameters
    ----------
    runs : one (d, T) trajectory, a (N, d, T) stack, or a sequence of (d, T_i) trajectories
        (torch tensors on one device, or numpy arrays); columns are states (features, time).
    delays : k, the number of time delays (embedded dimension n = (k+1) d).
    modes : number of DMD modes (rank of the SVD truncation); None keeps all n.

    Returns
    -------
    (modes or n,) complex128 eigenvalues on the runs' device, canonical order (descending
    modulus); directions the data never explores contribute eigenvalue 0 (see :func:`dmd_pairs`).

    Notes
    -----
    With all modes kept, runs mapped by an invertible linear change of coordinates (x -> P x)
    give the same spectrum up to rounding: that is what makes conjugate runs comparable, as long as
    P is well conditioned: an ill-conditioned P (condition number about 1e5 for the runs of
    notebook 07) pushes a direction of the moved data below the rank cut, which drops it (an
    eigenvalue becomes 0) without a warning, since such a cut is also how directions no run
    explores are told apart. A
    truncated spectrum (``modes`` below n) is not invariant: the truncation keeps the leading
    singular directions of X, which depend on the coordinates' scales. On an exactly linear 4-D
    system with eigenvalues 0.95, 0.8, 0.5, 0.3 and a random P with one row scaled by 1e3, all modes
    stay within 1e-12 and ``modes=3`` moves 0.02-0.07 (five seeds, ``tests/test_spectra.py``).
    Compare truncated spectra only of runs recorded in the same coordinates at the same scales.
    """
    rs = _as_runs(runs)
    X, Y = pairs(rs, delays)
    return dmd_pairs(X, Y, modes, eps=max(torch.finfo(r.dtype).eps for r in rs))


def equivalence_example(delays: int = 4, modes: int | None = None) -> dict[str, Tensor]:
    """Redman et al.'s first experiment: spectra of OMD, OGD and bisection on sum(tan x).

    25 runs per algorithm (:func:`koopman_tut.numerics.equivalence.equivalence_runs`), ``delays`` delays,
    all modes (or ``modes``), pooled. OMD and OGD are conjugate (x = exp(u)), bisection is not.

    Returns
    -------
    {"OMD", "OGD", "bisection"}: (2 (delays+1),) complex128 eigenvalues each, canonical order.
    """
    return {name: spectrum(runs, delays, modes) for name, runs in equivalence_runs().items()}

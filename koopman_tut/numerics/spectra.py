"""Koopman spectra of training runs and the distance between them (Redman et al., NeurIPS 2024).

*Identifying Equivalent Training Dynamics* (Redman, Bello-Rivas, Fonoberova, Mohr, Kevrekidis,
Mezic; arXiv:2302.09160): two training runs are equivalent (topologically conjugate) when the
Koopman spectra of their trajectories agree, since a conjugacy h (x -> h(x)) maps Koopman
eigenfunctions to eigenfunctions with the same eigenvalues. The recipe, as in the authors' code:

* time-delay embed each run, z_t = [x_t; x_{t+1}; ...; x_{t+k}] (:func:`delay_embed`);
* pool the pairs (z_t, z_{t+1}) of several runs as the columns of X and Y and take the exact
  DMD (Tu et al. 2014) of the pairs (:func:`spectrum`);
* compare two spectra by the optimal one-to-one matching of eigenvalues in the complex plane,
  the mean matched distance (:func:`wasserstein`), and test it by relabelling replicates
  (:func:`permutation_test`).

Why a DMD of pairs here and not :func:`koopman_tut.numerics.dmd`: ``kt.dmd`` decomposes ONE snapshot
matrix (X = W[:, :-1], Y = W[:, 1:]); pooled runs are not one sequence (the last state of a run
is not followed by the first of the next), and the embedded matrices are small
((k+1) d rows), so :func:`dmd_pairs` takes a float64 thin SVD of X directly. It keeps the
project's conventions: the mean is never subtracted, singular values within the data's
rounding are numerically zero, and eigenvalues come in
:func:`koopman_tut.numerics.dmd_result.canonical_order`. The experiments live in
:mod:`koopman_tut.numerics.equivalence`; the momentum-aware limit may reuse :func:`delay_embed`.
"""
from __future__ import annotations

import itertools
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .dmd_result import canonical_order
from .equivalence import equivalence_runs
from .finite import check_finite
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
    _check_count(delays, "delays", minimum=0)
    as_snapshots(x, name="x", min_snapshots=delays + 1)  # type, dtype and shape checks, no copy
    if x.ndim != 2:
        raise ValueError(f"x must have shape (d, T), got {tuple(x.shape)}")
    T = x.shape[1]
    blocks = [x[:, j:T - delays + j] for j in range(delays + 1)]
    return np.concatenate(blocks, 0) if isinstance(x, np.ndarray) else torch.cat(blocks, 0)


def _check_count(value, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


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
    if any(r.ndim != 2 for r in out):
        raise ValueError("every run must have shape (d, T) (features, time)")
    if any(r.is_complex() for r in out):
        raise TypeError("runs must be real: trajectories of real parameters")
    if len({r.shape[0] for r in out}) > 1 or len({r.device for r in out}) > 1:
        raise ValueError(f"runs must share d and device, got shapes {[tuple(r.shape) for r in out]}")
    return out


def pairs(runs, delays: int = 0) -> tuple[Tensor, Tensor]:
    """The pooled regression pairs of several runs: X (n, m) and Y (n, m), float64.

    Column j of X is an embedded state z_t of some run and column j of Y its successor
    z_{t+1} in the same run; n = (k+1) d, m = sum_i (T_i - k - 1). Runs may differ in length.
    """
    _check_count(delays, "delays", minimum=0)
    runs = _as_runs(runs)
    short = [i for i, r in enumerate(runs) if r.shape[1] < delays + 2]
    if short:
        raise ValueError(f"runs {short} are too short: {delays} delays need T >= {delays + 2} snapshots per run")
    for i, r in enumerate(runs):  # each run's own row and column in the message
        check_finite(r, name=f"runs[{i}]")
    Z = [delay_embed(r.to(torch.float64), delays) for r in runs]
    X, Y = torch.cat([z[:, :-1] for z in Z], 1), torch.cat([z[:, 1:] for z in Z], 1)
    check_finite(X, name="runs")  # float16/bfloat16 runs are finite; their float64 embedding is too
    return X, Y


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
    float16 whose singular values fall below its rounding before ``modes`` are found), a
    :class:`ResolutionWarning` says how many of the zeros stand for the data's precision rather
    than for directions no run explores: a distance to a spectrum of the same runs stored in
    float64 counts them as eigenvalues 0 (measured: OMD's runs of :func:`equivalence_example`
    stored in float32 keep 8 of their 10 eigenvalues, 0.14 from the float64 spectrum).

    Parameters
    ----------
    X, Y : (n, m) real tensors or ndarrays, the same shape and device; columns are states; finite.
    modes : keep the ``modes`` largest singular directions (the authors' ``k_mode``); None: all n.
    eps : machine epsilon of the data's precision, 0 < eps < 1 (default float64's).

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
        _check_count(modes, "modes", minimum=1)
        if modes > n:
            raise ValueError(f"modes must be at most the embedded dimension {n}, got {modes}")
    count = n if modes is None else modes
    U, s, Vh = torch.linalg.svd(X.to(torch.float64), full_matrices=False)
    eps64 = torch.finfo(torch.float64).eps
    eps = eps64 if eps is None else float(eps)
    svd_floor = max(X.shape) * eps64 * float(s[0])
    tol = max(eps * float(s.norm()), svd_floor)
    r = min(count, int((s > tol).sum()))
    lost = min(count, int((s > svd_floor).sum())) - r  # directions the data holds but its precision cannot resolve
    if lost > 0:
        warnings.warn(ResolutionWarning(
            f"{lost} of the {count} modes asked for lie below the data's rounding (eps {eps:.1e} times ||X||_F, "
            f"{tol:.2e}): they are reported as eigenvalue 0, a statement about the storage precision, not the "
            f"dynamics; compare spectra of runs stored in the same precision, or ask for at most {r} modes"),
            stacklevel=3)
    A = (U[:, :r].mT @ Y.to(torch.float64) @ Vh[:r].mT) / s[None, :r]
    lam = torch.linalg.eigvals(A.cpu()) if r else torch.zeros(0, dtype=torch.complex128)
    lam = torch.cat([lam, torch.zeros(count - r, dtype=torch.complex128)])
    return lam[canonical_order(lam)].to(X.device)


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
    """
    rs = _as_runs(runs)
    X, Y = pairs(rs, delays)
    return dmd_pairs(X, Y, modes, eps=max(torch.finfo(r.dtype).eps for r in rs))


def _points(e, name: str) -> np.ndarray:
    e = e.detach().cpu().numpy() if isinstance(e, Tensor) else np.asarray(e)
    if e.ndim != 1 or e.size == 0 or e.dtype.kind not in "iufc":
        raise ValueError(f"{name} must be a non-empty 1-D set of eigenvalues, got shape {e.shape}, dtype {e.dtype}")
    if not np.isfinite(e).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return e.astype(np.complex128)


def wasserstein(e1: Array, e2: Array) -> float:
    """Wasserstein-1 distance between two equal-size eigenvalue sets (points in the complex plane).

    The optimal one-to-one assignment minimizing the summed |e1_i - e2_j| (scipy's
    ``linear_sum_assignment``), then the mean matched distance: for uniform measures on two
    sets of the same size this IS the Wasserstein-1 distance (Birkhoff: an optimal transport
    plan can be taken to be a permutation). Sets of different sizes are refused: compare
    spectra with the same number of modes (``spectrum(..., modes=)``).

    Parameters
    ----------
    e1, e2 : (r,) complex (or real) eigenvalues, tensors or arrays.
    """
    a, b = _points(e1, "e1"), _points(e2, "e2")
    if a.size != b.size:
        raise ValueError(f"e1 and e2 must have the same number of eigenvalues, got {a.size} and {b.size}; "
                         "take both spectra with the same modes=")
    # a power of two at least half of every |value|: a - b cannot overflow near 1e308, dividing by it is exact
    scale = math.ldexp(1.0, math.frexp(max(float(np.abs(a).max()), float(np.abs(b).max())))[1] - 1)
    D = np.abs(a[:, None] / scale - b[None, :] / scale)
    rows, cols = linear_sum_assignment(D)
    return float(D[rows, cols].mean()) * scale


def distance_matrix(spectra: Sequence[Array]) -> np.ndarray:
    """(N, N) symmetric matrix of :func:`wasserstein` distances between N spectra."""
    N = len(spectra)
    D = np.zeros((N, N))
    for i, j in itertools.combinations(range(N), 2):
        D[i, j] = D[j, i] = wasserstein(spectra[i], spectra[j])
    return D


@dataclass
class PermutationResult:
    """Outcome of :func:`permutation_test`.

    statistic : mean between-group distance minus mean within-group distance.
    p_value : share of relabellings (the observed one included) whose statistic is >= it.
    between, within : the two means. n_relabellings : how many were drawn; exact : all enumerated.
    """

    statistic: float
    p_value: float
    between: float
    within: float
    n_relabellings: int
    exact: bool


def _group(spectra, name: str) -> list:
    """A group of spectra as a list: any iterable of 1-D eigenvalue sets (a list, a generator, the rows of an array)."""
    if isinstance(spectra, (str, bytes, dict)) or not hasattr(spectra, "__iter__"):
        raise TypeError(f"{name} must be a sequence of spectra (1-D eigenvalue sets), got {type(spectra).__name__}")
    return list(spectra)


def _between_minus_within(D: np.ndarray, in_a: np.ndarray) -> tuple[float, float, float]:
    between = D[np.ix_(in_a, ~in_a)].mean()
    iu = np.triu_indices(len(in_a), 1)
    same = (in_a[:, None] == in_a[None, :])[iu]
    within = D[iu][same].mean()
    return float(between - within), float(between), float(within)


def permutation_test(spectra_a: Sequence[Array], spectra_b: Sequence[Array], n_permutations: int = 2000,
                     seed: int = 0) -> PermutationResult:
    """Do two groups of spectra differ more than spectra within a group? A permutation test.

    Each group holds independent replicates (e.g. one pooled spectrum per seed). The statistic
    is the mean between-group :func:`wasserstein` distance minus the mean within-group one;
    under the null hypothesis (all replicates exchangeable: the same dynamics) every
    relabelling into groups of the same sizes is equally likely, so
    p = #{relabellings with statistic >= observed} / #relabellings is a valid p-value,
    P(p <= alpha) <= alpha. All C(n_a + n_b, n_a) relabellings are enumerated when there are at
    most ``n_permutations``; otherwise ``n_permutations`` random ones plus the observed one.

    Parameters
    ----------
    spectra_a, spectra_b : at least 2 spectra each, all of the same size.
    n_permutations : relabellings to draw when enumeration would take more.
    seed : seeds the random relabellings (unused when exact).
    """
    spectra_a, spectra_b = _group(spectra_a, "spectra_a"), _group(spectra_b, "spectra_b")
    na, nb = len(spectra_a), len(spectra_b)
    if na < 2 or nb < 2:
        raise ValueError(f"each group needs at least 2 spectra (replicates), got {na} and {nb}")
    _check_count(n_permutations, "n_permutations", minimum=1)
    D = distance_matrix(list(spectra_a) + list(spectra_b))
    n = na + nb
    labels = np.arange(n) < na
    stat, between, within = _between_minus_within(D, labels)
    exact = math.comb(n, na) <= n_permutations
    if exact:
        groups = (np.isin(np.arange(n), c) for c in itertools.combinations(range(n), na))
    else:
        rng = np.random.default_rng(seed)
        groups = itertools.chain([labels], (rng.permutation(labels) for _ in range(n_permutations)))
    null = np.array([_between_minus_within(D, g)[0] for g in groups])
    tol = 1e-12 * max(1.0, float(np.abs(D).max()))  # the same relabelling summed in another order
    p = float((null >= stat - tol).mean())
    return PermutationResult(stat, p, between, within, len(null), exact)


def equivalence_example(delays: int = 4, modes: int | None = None) -> dict[str, Tensor]:
    """Redman et al.'s first experiment: spectra of OMD, OGD and bisection on sum(tan x).

    25 runs per algorithm (:func:`koopman_tut.numerics.equivalence.equivalence_runs`), ``delays`` delays,
    all modes (or ``modes``), pooled. OMD and OGD are conjugate (x = exp(u)), bisection is not.

    Returns
    -------
    {"OMD", "OGD", "bisection"}: (2 (delays+1),) complex128 eigenvalues each, canonical order.
    """
    return {name: spectrum(runs, delays, modes) for name, runs in equivalence_runs().items()}

"""Exact Dynamic Mode Decomposition in PyTorch, for tall snapshot matrices.

Exact DMD (Tu, Rowley, Luchtenburg, Brunton & Kutz 2014, "On dynamic mode decomposition:
theory and applications", J. Comput. Dyn.) of a snapshot matrix W = [w_0 ... w_{T-1}] of
shape (n_features, n_snapshots), as used by Redman et al. (ICLR 2022, arXiv:2110.14856)
on the parameter trajectory of a neural network: X = W[:, :-1], Y = W[:, 1:],
X = U S V^H, A~ = U^H Y V S^-1, A~ w = lambda w, mode = Y V S^-1 w (PyDMD's scaling).
The mean is never subtracted: that would remove the eigenvalue-1 (fixed point) mode.

Two routes give the same answer:

* ``"svd"``: a thin SVD of X in float64. Resolves singular values down to ~eps64 * s_max;
  costs a float64 copy of W. ``method="auto"`` picks it when n_features * n_snapshots <= 2**22,
  or when W is wide (more snapshots than features: its (T, T) Gram is larger than W).
* ``"gram"``: the method of snapshots for n_features >> n_snapshots. One chunked pass over W
  builds G = W^H W (T, T) in float64 (float64 rounding only, whatever the BLAS, see
  :mod:`koopman_tut.numerics.snapshots`); it holds both X^H X = G[:-1, :-1] and X^H Y = G[:-1, 1:].
  The SVD of X follows from the eigendecomposition of X^H X, which resolves singular
  values down to ~sqrt(eps64) * s_max (1.5e-8 of the largest). Its eigenvalues and fixed
  point agree with the float64 SVD route to about eps64 * (s_max / s_r)^2 (s_r the smallest
  kept singular value), whatever the BLAS, thread count or CPU kernels.

Rank: singular values at or below T * eps * s_max, eps that of the data's dtype
(numpy.linalg.matrix_rank's rule with the snapshot count in place of max(n, T)),
are dropped on both routes, and on the Gram route also those below its own floor
2 sqrt(eps64) s_max; for float32 data the first dominates, so both routes keep the same
rank. Float64 data can hold directions between the two (modes that have nearly decayed):
where X has singular values below, or within 3.5e3 of, the Gram's floor (resolved there to worse than
1e-8 of their size), the Gram route reads W once more
(:func:`koopman_tut.numerics.refine.refined_factor`, preconditioned with what the first Gram
resolved) and then solves as the SVD route does, so both keep the same modes. Amplitudes come from the Gram too; modes are formed lazily (:mod:`koopman_tut.numerics.dmd_result`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .dmd_result import DMDBatch, DMDResult, powers  # noqa: F401  (powers: re-exported)
from .eig_order import canonical_order
from .distributed import all_reduce_sum, global_rows
from .distributed_checks import checked_preflight
from .dmd_checks import ZeroStartWarning, nothing_to_decompose, warn_zero_start  # noqa: F401 (re-exported)
from .finite import NonFiniteGram, check_finite
from .memory import SVD_COPIES, check_fits, check_gram_fits
from .snapshots import as_snapshots, assemble_gram, check_chunk_rows, deviation_gram

Tensor = torch.Tensor

_SVD_MAX_ELEMENTS = 2**22  # auto picks the float64 SVD route below this size
# The Gram's rounding, eps64 s_max^2 = floor^2 / 4 on each s^2 (floor = 2 sqrt(eps64) s_max), is floor^2 / (8 s^2)
# of s: above 1e-8 for s within sqrt(1 / 8e-8) = 3.5e3 of the floor, where float64 data is read once more
_NEAR = (1 / 8e-8) ** 0.5


def _check_svd_rank(svd_rank, name: str = "svd_rank") -> None:
    """PyDMD's meanings; a float >= 1 is refused (PyDMD reads it as no truncation, not as a rank)."""
    integer = isinstance(svd_rank, (int, np.integer)) and not isinstance(svd_rank, bool)
    real = isinstance(svd_rank, (float, np.floating))
    if (integer and (svd_rank == -1 or svd_rank >= 0)) or (real and (svd_rank == 0 or 0 < svd_rank < 1)):
        return
    hint = (f" (a float >= 1 is ambiguous: PyDMD reads it as no truncation; pass int({svd_rank}) for a rank "
            f"or -1 for no truncation)" if real and svd_rank >= 1 else "")
    raise ValueError(f"{name} must be -1 (no truncation), 0 (optimal hard threshold), a float in (0, 1) "
                     f"(energy fraction) or an integer >= 1 (rank), got {svd_rank!r}{hint}")


def choose_rank(s: Tensor, svd_rank, shape: tuple[int, int], tol: float) -> int:
    """Rank kept for singular values ``s`` (descending, float64) of X of ``shape`` (n, m), with PyDMD's meaning of
    svd_rank. Singular values at or below ``tol`` are never kept (numerical rank), whatever svd_rank asks."""
    s = s[: min(shape)]  # the Gram route yields m values; X has min(n, m)
    numerical = int((s > tol).sum())
    if svd_rank == 0:  # Gavish & Donoho 2014, as PyDMD's compute_rank: the median of all min(n, m) values, those a
        vals = torch.zeros(min(shape), dtype=torch.float64)  # route does not return as 0 (the Gram route's refined
        vals[:s.numel()] = s  # factor holds fewer, none above the data's rounding)
        beta = min(shape) / max(shape)
        omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
        rank = int((s > omega * float(torch.quantile(vals, 0.5))).sum())  # numpy's median
    elif 0 < svd_rank < 1:
        energy = torch.cumsum(s**2, 0) / (s**2).sum()
        rank = int(torch.searchsorted(energy, torch.tensor([float(svd_rank)], dtype=energy.dtype))) + 1
    elif svd_rank >= 1:
        rank = int(svd_rank)
    else:
        rank = s.numel()
    return max(1, min(rank, numerical)) if numerical > 0 else 0


# ----------------------------------------------------------------------------- solver
def _rank_tolerance(s_max: float, T: int, dtype: torch.dtype, n_rows: int, gram_route: bool = False) -> float:
    """Singular values at or below this are numerically zero.

    s_max * T * eps(dtype): numpy.linalg.matrix_rank's rule with the snapshot count in place of max(n, T), a margin
    of 2 sqrt(T) above the stored data's own rounding (at most eps/2 per entry, so a perturbation of norm <= eps/2
    sqrt(T) s_max). In float16 / bfloat16 that cut is coarse (31 snapshots: 3% / 24% of s_max) and drops directions
    above their rounding; record in float32 to keep them. At least sqrt(max(n, T)) eps64 s_max, the float64
    computation's own rounding over sums of n terms (it grows like sqrt(n) eps64 with high probability: Higham &
    Mary 2019, probabilistic rounding error analysis; torch's SVD of exact rank-4 float64 data, T = 10, left up to
    6 eps64 s_max at n = 2e4 and 32 at n = 4.2e5, above T eps64: the SVD route kept 1-2 rounding modes there).
    On the Gram route also 2 sqrt(eps64) s_max: the float64 eigensolver of X^H X resolves squared singular
    values to ~eps64 s_max^2. For float32 data the first term is the largest (T >= 2, n < 1e18), so every route
    keeps the same numerical rank.
    """
    tol = s_max * max(T * torch.finfo(dtype).eps, math.sqrt(max(n_rows, T)) * torch.finfo(torch.float64).eps)
    if gram_route:
        tol = max(tol, 2 * math.sqrt(torch.finfo(torch.float64).eps) * s_max)
    return tol


def _solve(W: Tensor, s_all: Tensor, V_all: Tensor, atilde, B: Tensor, n_rows: int, svd_rank, tol: float,
           group=None):
    """DMD from small float64 matrices (all on the CPU), for W (this rank's rows of ``group``'s, for messages).

    s_all (R,) descending singular values of X and V_all (m, R) its right singular vectors;
    atilde(r) returns A~ = U_r^H Y V_r S_r^-1 (r, r); B (k, T) = Q^H W for an orthonormal
    basis Q of range(W), used to fit amplitudes without forming any mode.
    Returns eigs (r,), amplitudes (r,), singular values (r,), coef (T, r) with modes = W @ coef.
    """
    T = B.shape[-1]
    r = choose_rank(s_all, svd_rank, (n_rows, T - 1), tol)
    if r == 0 or float(s_all[r - 1]) < torch.finfo(torch.float64).tiny:  # S^-1 of a subnormal overflows
        raise ValueError(nothing_to_decompose(W, group))
    cdt = torch.complex128
    s, V = s_all[:r], V_all[:, :r].to(cdt)
    lam, w = torch.linalg.eig(atilde(r))  # real A~ (real data): LAPACK dgeev, exact conjugate pairs
    perm = canonical_order(lam)  # LAPACK's order depends on rounding: never hand it out
    lam, w = lam[perm], w[:, perm]
    coef = torch.zeros(T, r, dtype=cdt)
    coef[1:] = (V / s.to(cdt)[None, :]) @ w  # modes = Y V S^-1 w = W @ coef
    B = B.to(cdt)
    modes = B @ coef  # the modes in the basis Q
    b = torch.linalg.lstsq(modes, B[:, :1]).solution[:, 0]  # lstsq(modes, w_0)
    warn_zero_start(B, modes @ b, W.dtype)
    return lam, b, s, coef


def dmd(W: Tensor | np.ndarray, svd_rank: int | float = -1, method: str = "auto",
        chunk_rows: int | None = None, group=None, acc: Tensor | None = None) -> DMDResult | DMDBatch:
    """Exact DMD of a snapshot matrix (features, time), on the data's device.

    Parameters
    ----------
    W : torch.Tensor or numpy.ndarray, shape (n_features, n_snapshots), or
        (B, n_features, n_snapshots) for B independent DMDs in one pass.
        float16/bfloat16/float32/float64 (or complex), any device; never copied whole.
        Columns are snapshots, as in PyDMD.
    svd_rank : -1 no truncation (singular values below the numerical-rank tolerance are
        still dropped, so rank-deficient data never gives NaN/Inf); 0 optimal hard
        threshold (Gavish-Donoho); float in (0, 1) energy fraction; int k rank k
        (a float >= 1 is refused: PyDMD would read it as no truncation).
    method : "auto", "gram" (method of snapshots, one pass) or "svd" (float64 thin SVD).
        "auto" uses "svd" when n_features * n_snapshots <= 2**22 or there are more snapshots
        than features, and "gram" otherwise.
    chunk_rows : rows per chunk on the Gram route (memory/speed trade-off; the result does
        not depend on it beyond float64 rounding).
    group : a torch.distributed process group (or ``True`` for the default group) when
        each rank holds its own rows of W (any split, same snapshots): the small Gram
        matrices are summed with one all-reduce, every rank solves the same small problem
        and gets identical eigenvalues, amplitudes and singular values; modes, predictions
        and fixed points are the rank's own rows. Uses the Gram route.
    acc : optional precomputed :func:`koopman_tut.numerics.snapshots.deviation_gram` of W (summed
        over ranks when sharded); skips the pass over W (Gram route).

    Returns
    -------
    DMDResult for 2-D W, DMDBatch (a sequence of DMDResult) for 3-D W. ``eigs`` (r,), ``amplitudes`` (r,),
    ``singular_values`` (r,) live on W's device; ``modes`` (n_features, r) are formed lazily.

    Examples
    --------
    >>> res = dmd(W)                  # W: (n, T)
    >>> theta_star = res.fixed_point()  # (n,), the eigenvalue-1 mode times its amplitude
    """
    W, method = (_prepare(W, svd_rank, method, chunk_rows, group, acc is not None) if group is None else
                 _prepare_over_ranks(W, svd_rank, method, chunk_rows, group, acc))
    if method == "svd" and acc is None:
        if W.ndim == 3:
            return DMDBatch.each(W.shape[0], lambda i: _from_svd(W[i], svd_rank))
        return _from_svd(W, svd_rank)
    if acc is None:
        acc = deviation_gram_checked(W, chunk_rows, group)
    elif group is None:
        check_acc(acc, W)
    G, n = assemble_gram(acc), global_rows(W, group)
    if n == 0:  # every rank holds none (one may)
        raise ValueError("W has no features (rows) on any rank of the group: nothing to decompose")
    if W.ndim == 3:
        return DMDBatch.each(W.shape[0], lambda i: _from_gram(W[i], G[i], svd_rank, n, group))
    return _from_gram(W, G, svd_rank, n, group)


def _prepare(W, svd_rank, method, chunk_rows, group, has_acc: bool = False) -> tuple[Tensor, str]:
    W = as_snapshots(W, min_snapshots=2, min_rows=0 if group is not None else 1)  # a rank may hold none
    _check_svd_rank(svd_rank)
    check_chunk_rows(chunk_rows)
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"method must be 'auto', 'gram' or 'svd', got {method!r}")
    if group is not None and method == "svd":
        raise ValueError("method='svd' needs all rows in one process; with group= use 'gram' or 'auto'")
    if method == "auto":
        small = W.shape[-2] * W.shape[-1] <= _SVD_MAX_ELEMENTS  # wide W: (T, T) is larger than W (a given acc is not)
        method = "svd" if group is None and not has_acc and (small or W.shape[-1] > W.shape[-2]) else "gram"
    if method == "svd":
        check_fits(SVD_COPIES * (16 if W.is_complex() else 8) * W.numel(),
                   f"W has shape {tuple(W.shape)}, and kt.dmd's SVD route (method='svd') makes about {SVD_COPIES} "
                   f"float64 copies of it:")
        check_finite(W)
    else:  # before any pass (and, over ranks, in the pre-flight): every rank refuses together
        check_gram_fits(W, torch.complex128 if W.is_complex() else torch.float64,
                        "" if group is not None else "; for more snapshots than features, method='svd'")
    return W, method


def _prepare_over_ranks(W, svd_rank, method, chunk_rows, group, acc) -> tuple[Tensor, str]:
    """:func:`_prepare` on every rank, then the pre-flight, before any other collective: the ranks must agree
    (else gloo aborts, or results differ), and a rank refusing its input makes every rank raise."""
    def check():
        V, m = _prepare(W, svd_rank, method, chunk_rows, group)
        if acc is not None:
            check_acc(acc, V)
        return {"T (snapshots)": V.shape[-1], "dtype": V.dtype, "batch": tuple(V.shape[:-2]), "svd_rank": svd_rank,
                "method": m, "acc given": acc is not None, "acc (summed over the ranks)": acc}, (V, m)
    return checked_preflight("kt.dmd", group, check, "Every rank passes its own rows of W only")


def check_acc(acc, W: Tensor) -> None:
    """``acc`` must be a precomputed Gram of W: a float64 (complex128) tensor of shape W.shape[:-2] + (T, T)."""
    want = tuple(W.shape[:-2]) + (W.shape[-1], W.shape[-1])
    if not isinstance(acc, Tensor) or acc.dtype not in (torch.float64, torch.complex128) or tuple(acc.shape) != want:
        got = f"{tuple(acc.shape)} {acc.dtype}" if isinstance(acc, Tensor) else type(acc).__name__
        raise ValueError(f"acc must be W's deviation Gram (snapshots.deviation_gram(W), summed over the ranks), a "
                         f"float64 tensor of shape {want}, got {got}")
    if not bool(torch.isfinite(acc).all()):
        raise ValueError("acc holds NaN or Inf: a Gram of finite snapshots is finite (recompute it, or rescale W)")


def deviation_gram_checked(W: Tensor, chunk_rows=None, group=None, gram=deviation_gram) -> Tensor:
    """:func:`koopman_tut.numerics.snapshots.deviation_gram` (or another one-pass ``gram`` such as
    :func:`~koopman_tut.numerics.snapshots.step_gram`), summed over ``group``'s ranks, checked finite
    (NaN/Inf in W shows up in it, so finiteness is checked for free)."""
    acc = gram(W, chunk_rows)
    if group is not None:
        acc = all_reduce_sum(acc, group)
    if not bool(torch.isfinite(acc).all()):
        check_finite(W)  # names the entry when the data itself is at fault (on this rank)
        raise NonFiniteGram("W")
    return acc


def _from_svd(W: Tensor, svd_rank) -> DMDResult:
    """Route "svd": thin SVD of X in float64 (no squared condition number)."""
    Z = W.to(device="cpu", dtype=torch.complex128 if W.is_complex() else torch.float64)
    return _from_factor(W, Z, svd_rank, W.shape[0], "svd")


def _from_factor(W: Tensor, Z: Tensor, svd_rank, n_rows: int, method: str, group=None) -> DMDResult:
    """DMD of W from Z (q, T) on the CPU, float64 or complex128, with Z^H Z = W^H W (W itself, or a
    factor: X = W[:, :-1] and Z[:, :-1] share singular values and right singular vectors)."""
    U, s, Vh = torch.linalg.svd(Z[:, :-1], full_matrices=False)
    V = Vh.mH

    def atilde(r):
        return (U[:, :r].mH @ Z[:, 1:] @ V[:, :r]) / s[None, :r]

    Q, _ = torch.linalg.qr(Z)  # basis of range(Z), which may exceed range(X)
    tol = _rank_tolerance(float(s[0]), W.shape[-1], W.dtype, n_rows)
    lam, b, s_r, coef = _solve(W, s, V, atilde, Q.mH @ Z, n_rows, svd_rank, tol, group)
    return _pack(W, lam, b, s_r, coef, method)


def _from_gram(W: Tensor, G: Tensor, svd_rank, n_rows: int, group=None) -> DMDResult:
    """Route "gram": everything from G = W^H W (float64); X^H X = G[:-1,:-1], X^H Y = G[:-1,1:]."""
    m = G.shape[-1] - 1
    if 0 < float(G[:m, :m].diagonal().real.max()) < 2.0**-968:  # products below ~n 2^-1022 / eps64: subnormal digits
        raise ValueError(nothing_to_decompose(W, group))  # names the rescaling (an exact power of two)
    evals, evecs = torch.linalg.eigh(G[:m, :m])  # X^H X = V S^2 V^H, ascending
    s, V = evals.flip(0).clamp_min(0).sqrt(), evecs.flip(1)
    tol = _rank_tolerance(float(s[0]), W.shape[-1], W.dtype, n_rows, gram_route=True)  # the Gram's floor
    if _rank_tolerance(float(s[0]), W.shape[-1], W.dtype, n_rows) < tol and int((s > _NEAR * tol).sum()) < min(n_rows, m):
        from .refine import refined_factor  # float64 data finer than the Gram resolves: one more pass
        return _from_factor(W, refined_factor(W, G, group), svd_rank, n_rows, "gram", group)

    def atilde(r):  # U^H Y V S^-1 = S^-1 V^H (X^H Y) V S^-1
        Vr = V[:, :r]
        return (Vr.mH @ G[:m, 1:] @ Vr) / (s[:r, None] * s[None, :r])

    ev, P = torch.linalg.eigh(G)  # W = Q D^1/2 P^H  =>  Q^H W = D^-1/2 P^H G
    keep = ev > ev.max() * G.shape[-1] * torch.finfo(torch.float64).eps * 16
    B = (P[:, keep].mH @ G) / ev[keep].sqrt()[:, None]
    lam, b, s_r, coef = _solve(W, s, V, atilde, B, n_rows, svd_rank, tol, group)
    return _pack(W, lam, b, s_r, coef, "gram")


def _pack(W, lam, b, s, coef, method) -> DMDResult:
    cdtype = torch.complex64 if W.dtype in (torch.float32, torch.complex64) else torch.complex128
    rdtype = torch.float32 if cdtype == torch.complex64 else torch.float64
    dev = W.device
    return DMDResult(eigs=lam.to(cdtype).to(dev), amplitudes=b.to(cdtype).to(dev),
                     singular_values=s.to(rdtype).to(dev), coef=coef, W=W, method=method)

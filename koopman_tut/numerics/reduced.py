"""The small float64 pieces of the affine Koopman model: the differences' factor on every route, the delay
embedding done on the Gram, one rank rule, and the reduced operator.

The affine model of a window W = [w_0 .. w_{T-1}] (n, T) is exact DMD (Tu et al. 2014) of its successive
differences d_t = w_{t+1} - w_t, optionally delay-embedded: with k delays the state is z_t = [w_t; w_{t-1};
..; w_{t-k}] (the heavy-ball and Nesterov recursions are second order in w, first order in z = [w_t; w_{t-1}]:
Takens-style delay coordinates, as in Hankel DMD, Arbabi & Mezic 2017). The embedded differences e_j (j = 0 ..
m-1, m = T-1-k) have blocks e_j[i] = d_{k+j-i}, so their Gram is a sum of shifted blocks of Gd, the differences':

    E^H E = sum_{i=0}^{k} Gd[i:i+m, i:i+m]

and no second pass over W is needed. Everything downstream needs only a factor R (., m) with E^H E = R^H R: a
Householder QR of E in float64 (small windows: the accurate route) or the eigendecomposition of E^H E (the
Gram route, one pass over W).

**One rank rule on every route.** Gavish & Donoho's optimal hard threshold (2014) is omega(beta) * median(s)
over the min(n_rows, m - 1) singular values of X = E[:, :-1]. Each route resolves singular values only down to
its own floor, and a median over the values that survived that cut depends on the route. Here the median is
taken over the full set of min(n_rows, m - 1) values, every value at or below one common floor, the stored
data's rounding (below), counted as zero, on every route; so the threshold is the same whichever route ran,
and so is the rank. Every route resolves the values above that floor: where the data's rounding is finer than
the Gram's floor (float64 data: a window whose fastest modes have decayed to between the two is real there,
and so is noise at 1e-13 .. 1e-10 of the parameters), the Gram route reads W once more
(:mod:`koopman_tut.numerics.refine`) and resolves the differences as the QR route does: then the two routes
differ by no more than the QR route differs from itself on the same rows in another order. (Zeroing the
values below the Gram's floor made the median 0 on such noise: 98 modes of it kept, a limit 4e-10 off warned.)
Float32 data never takes that pass: eps32 ||W||_F is at or above 4 sqrt(eps64) ||S||_2, as ||S||_2 <= 2 ||W||_F.

**The Gram route's floor.** The Gram route accumulates the steps' Gram S^H S itself
(:func:`~koopman_tut.numerics.snapshots.step_gram`), in float64, with rounding of about eps64 ||S||^2: it
resolves the differences' singular values down to about sqrt(eps64) ||S||_2. Formed as M^H (D^H D) M from the
deviations' Gram (what ``acc=`` passes) the rounding is eps64 ||D||^2 instead, and near convergence the
deviations from the last snapshot are tens of steps long: tens of times coarser. Measured on noise-free
float64 windows (n = 3e3 .. 4e5, 0 or 1 delay) the largest spurious value was 2.6 sqrt(eps64) times the norm
of the Gram's columns; the floor is 4 sqrt(eps64 (k+1)) times it (||S||_2, or ||D||_2 from ``acc``).

**Numerically zero.** A difference is computed from stored numbers that each carry a rounding of up to eps/2
of their size (eps of the data's dtype), so the differences E differ from the exact ones by at most eps
sqrt(k+1) ||W||_F in norm: a direction below that is rounding. This floor is relative to the size of the
parameters, not to the (much smaller) size of the steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .dmd import choose_rank, deviation_gram_checked
from .dmd_result import powers
from .eig_order import canonical_order
from .refine import gram_factor, refined_step_factor
from .trust import RESIDUAL_TOL
from .finite import check_finite
from .floors import data_floor, eps_of, gram_floor, gram_floors
from .memory import check_fits, check_gram_fits
from .snapshots import deviation_from_steps, difference_gram, difference_matrix, step_gram

Tensor = torch.Tensor
EPS64 = torch.finfo(torch.float64).eps
SMALL = 2**22  # the QR route below this many elements of W (as kt.dmd's "svd" route)


def delay_gram(Gd: Tensor, delays: int) -> Tensor:
    """Gram (m, m) of the delay-embedded differences, m = T-1-delays, from the plain differences'
    Gram ``Gd`` (T-1, T-1): the sum of its delays+1 shifted diagonal blocks (no pass over W)."""
    m = Gd.shape[-1] - delays
    return sum(Gd[..., i:i + m, i:i + m] for i in range(delays + 1))


def delay_differences(D: Tensor, delays: int) -> Tensor:
    """The embedded differences E ((delays+1) n, m) of the differences D (n, T-1): block i of column j is d_{k+j-i}."""
    m = D.shape[-1] - delays
    return torch.cat([D[:, delays - i: delays - i + m] for i in range(delays + 1)], 0)


@dataclass
class Factor:
    """R (q, m) with E^H E = R^H R for the embedded differences E; Rd (p, T-1) the same for the
    plain differences D (norms of combinations of differences: ||D c|| = ||Rd c||, no pass over
    W); the route; the data's rounding floor (see the module notes) and eps of its dtype."""

    R: Tensor
    Rd: Tensor
    gram_route: bool
    data_floor: float
    eps: float  # of the data's dtype
    gram_floor: float = 0.0  # what the Gram route resolves (module notes), computed on every route


def difference_factor(W: Tensor, delays: int, acc: Tensor | None, group, method: str,
                      sacc: Tensor | None = None) -> Factor:
    """The factor of W's (delay-embedded) differences on the route ``method`` asks for.

    "svd" (or "auto" for a small W on one process): Householder QR of E in float64, which resolves
    singular values down to the data's rounding; "gram" (or a large / sharded W): from the
    float64 steps' Gram (:func:`~koopman_tut.numerics.snapshots.step_gram`: one pass over W, or
    ``sacc`` when given, with ``acc`` its deviations' Gram if the caller has it already), or from
    a deviations' Gram ``acc`` alone when that is what the caller has.
    """
    T = W.shape[-1]
    check_gram_fits(W, torch.float64)  # every route forms (T, T) matrices: M, the factors
    M = difference_matrix(T)
    small = group is None and acc is None and sacc is None and W.shape[0] * T <= SMALL
    if method == "svd" or (method == "auto" and small):
        check_finite(W)
        Wd = W.to(device="cpu", dtype=torch.float64)
        D = Wd @ M
        R = torch.linalg.qr(delay_differences(D, delays), mode="r")[1]
        frob = norm(Wd)  # ||W||_F, no over/underflow
        Rd = torch.linalg.qr(D, mode="r")[1] if delays else R
        scale = float(torch.linalg.matrix_norm(Rd, 2)) if Rd.numel() else 0.0  # ||D||_2: the steps'
        return Factor(R, Rd, False, data_floor(frob, W.dtype, delays), eps_of(W.dtype), gram_floor(scale, delays))
    if acc is None and sacc is None:
        sacc = deviation_gram_checked(W, group=group, gram=step_gram)
    if sacc is not None:  # the steps' Gram itself: rounding relative to the steps
        Gd = accumulated = sacc[: T - 1, : T - 1]
        acc = deviation_from_steps(sacc) if acc is None else acc  # for ||W||_F only
    else:  # from the deviations' Gram: rounding relative to the deviations (module notes)
        Gd, accumulated = difference_gram(acc), acc[: T - 1, : T - 1]
    floors = gram_floors(accumulated, acc, W.dtype, delays)  # the accumulated Gram's rounding, the data's
    scale, frob = floors.scale, floors.frob
    if 0 < scale < 2.0**-484 or (scale == 0 and 0 < frob < 2.0**-450):  # squares below ~2^-968: subnormal
        raise ValueError(f"W is too small for the Gram route: its steps' largest squared singular value "
                         f"({scale**2:.1e}) lies within 2**54 of float64's underflow, where the Gram loses digits; "
                         "multiply W by a power of two (e.g. 2**500), or use method='svd'")
    if floors.refine:  # the data (float64) holds finer directions than the Gram resolves
        Rd = refined_step_factor(W, Gd, scale, group)  # one more pass: the QR route's resolution (refine.py)
        R = torch.linalg.qr(delay_differences(Rd, delays), mode="r")[1] if delays else Rd
        return Factor(R, Rd, False, floors.data, eps_of(W.dtype), floors.gram)
    Rd = gram_factor(Gd)
    return Factor(gram_factor(delay_gram(Gd, delays)) if delays else Rd, Rd, True, floors.data,
                  eps_of(W.dtype), floors.gram)


def numerical_tol(s_max: float, cols: int, f: Factor) -> float:
    """Singular values of X (., cols) at or below this are numerically zero on ``f``'s route:
    (cols+2) eps s_max (eps of the data's dtype; numpy.linalg.matrix_rank's rule), the data's
    rounding ``f.data_floor``, and on the Gram route ``f.gram_floor`` (module notes)."""
    return max((cols + 2) * f.eps * s_max, f.data_floor, f.gram_floor if f.gram_route else 0.0)


def numerical_rank(s: Tensor, cols: int, f: Factor) -> int:
    """How many of the singular values ``s`` (descending) of X (., cols) lie above :func:`numerical_tol`."""
    return int((s > numerical_tol(float(s[0]), cols, f)).sum()) if s.numel() else 0


def affine_rank(s: Tensor, svd_rank, n_rows: int, cols: int, f: Factor) -> int:
    """The rank kept for the singular values ``s`` (descending) of X = E[:, :-1] (n_rows, cols).

    Singular values at or below :func:`numerical_tol` are never kept. svd_rank = 0 is
    Gavish-Donoho's threshold omega(beta) median(s) with the median over all min(n_rows, cols)
    values, those at or below the data's rounding ``f.data_floor`` counted as zero: every route resolves
    the values above it (the Gram route with its second pass where its own floor is coarser), so the
    threshold and the rank are the same on every route (module notes).

    The threshold estimates a noise level from the median, which assumes noise fills most of the
    spectrum. A window the model at its numerical rank fits to rounding (:func:`fits_to_rounding`:
    an affine iteration, noise-free) has no noise to cut, and when its modes fill more than half
    the spectrum the median is a real mode's: there the numerical rank is kept.
    Other svd_rank values mean what they mean in PyDMD (:func:`koopman_tut.numerics.dmd.choose_rank`).
    """
    if not s.numel():
        return 0
    tol = numerical_tol(float(s[0]), cols, f)
    numerical = int((s > tol).sum())
    if svd_rank != 0 or numerical == 0:
        return choose_rank(s, svd_rank, (n_rows, cols), tol)
    full = min(n_rows, cols)
    vals = torch.zeros(full, dtype=torch.float64)
    kept = s[:full][s[:full] > f.data_floor]
    vals[: kept.numel()] = kept
    beta = full / max(n_rows, cols)
    omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
    rank = max(1, min(int((s > omega * median(vals)).sum()), numerical))
    return numerical if rank < numerical and fits_to_rounding(f.R, numerical, tol) else rank


def norm(x: Tensor) -> float:
    """The 2-norm of all entries of ``x`` (Frobenius for a matrix), scaled by the largest entry first so
    that no square overflows or underflows (float64 squares overflow from ~1e154)."""
    top = float(x.abs().max()) if x.numel() else 0.0
    return top * float(torch.linalg.vector_norm(x / top)) if 0 < top < math.inf else (top if x.numel() else 0.0)


def median(x: Tensor) -> float:
    """The median of a 1-D tensor, the mean of the two middle values for an even count (as numpy's
    and Gavish & Donoho's; torch's ``median`` returns the lower one)."""
    return float(torch.quantile(x.to(torch.float64), 0.5))


def fits_to_rounding(R: Tensor, r: int, tol: float) -> bool:
    """Whether the rank-r model of the embedded differences (factor R (q, m)) predicts every next
    difference to within rounding, and rounding is negligible beside them: the misfit
    ||Y - U_r U_r^H Y||_F (Y = E[:, 1:], U_r the leading left singular vectors of X = E[:, :-1])
    at most 10 sqrt(m) tol (tol the level below which a singular value is rounding: a rounding
    perturbation of spectral norm tol has Frobenius norm <= sqrt(m) tol) and at most
    RESIDUAL_TOL = 1e-5 of ||Y||_F (:mod:`koopman_tut.numerics.trust`: a deterministic window's misfit;
    steps only a few roundings long fit "to rounding" too, and there rounding is the noise)."""
    misfit = misfit_at(R, r)
    return misfit <= 10 * math.sqrt(R.shape[1]) * tol and misfit <= RESIDUAL_TOL * norm(R[:, 1:])


def misfit_at(R: Tensor, r: int) -> float:
    """||Y - U_r U_r^H Y||_F: how far the rank-r model of the factor R (q, m) misses the next differences."""
    U = torch.linalg.svd(R[:, :-1], full_matrices=False)[0][:, :r]
    Y = R[:, 1:]
    return norm(Y - U @ (U.mH @ Y))


def untruncated(f: Factor, s: Tensor, rank: int, cols: int) -> Reduced | None:
    """The model at the numerical rank of X (singular values ``s``), when ``rank`` is below it and that
    model fits the window deterministically (misfit at most RESIDUAL_TOL of ||Y||): then what the rank
    cut is dynamics, not noise (check 5 of :mod:`koopman_tut.numerics.trust`); else None."""
    numerical = numerical_rank(s, cols, f)
    if rank >= numerical or not misfit_at(f.R, numerical) <= RESIDUAL_TOL * norm(f.R[:, 1:]):
        return None
    return Reduced(f.R, numerical)


class Reduced:
    """Exact DMD of the embedded differences from their factor R (q, m), rank r: all in coefficients on E's m columns.

    Attributes
    ----------
    atilde : (r, r) the reduced operator U^H Y V S^-1 (X = E[:, :-1] = U S V^H, Y = E[:, 1:]).
    z : (r,) the last embedded difference in reduced coordinates.
    lift, ulift : (m, r) with E @ lift = Y V S^-1 and E @ ulift = U.
    eigs, eigvecs : canonical-order eigenvalues (r,) and eigenvectors (r, r) of atilde.
    amplitudes : (r,) per mode, least squares over all m differences.
    residual : ||Y - U A~ U^H X||_F / ||Y||_F, the one-step misfit of the model over the window.
    """

    def __init__(self, R: Tensor, r: int):
        m = R.shape[1]
        U, s, Vh = torch.linalg.svd(R[:, :-1], full_matrices=False)
        U, s, V = U[:, :r], s[:r], Vh[:r].mH
        self.atilde = (U.mH @ R[:, 1:] @ V) / s[None, :]
        self.z = U.mH @ R[:, -1]
        self.lift, self.ulift = torch.zeros(m, r, dtype=R.dtype), torch.zeros(m, r, dtype=R.dtype)
        self.lift[1:] = self.ulift[:-1] = V / s[None, :]
        eigs, eigvecs = torch.linalg.eig(self.atilde)  # real in: exact conjugate pairs
        perm = canonical_order(eigs)
        self.eigs, self.eigvecs = eigs[perm], eigvecs[:, perm]
        self.amplitudes = self._fit_amplitudes(U.mH @ R)
        res = R[:, 1:] - U @ (self.atilde @ (U.mH @ R[:, :-1]))  # Y - U A~ U^H X, in R's coordinates
        ynorm = norm(R[:, 1:])
        self.residual = norm(res) / ynorm if ynorm > 0 else 0.0

    def _fit_amplitudes(self, Z: Tensor) -> Tensor:
        """Least-squares q minimising sum_j ||Q diag(mu^j) q - z_j||^2 over the reduced coordinates z_j (columns
        of Z, (r, m)) of all m differences: a fit to the whole window."""
        Q = self.eigvecs
        if not Q.numel():  # rank 0, a still window (still.py): no mode to fit
            return torch.zeros(0, dtype=torch.complex128)
        m, r = Z.shape[1], Q.shape[1]  # (m r, r) complex128, and least squares' copy of it
        check_fits(2 * 16 * m * r * r, f"the affine model's amplitude fit over {m:,} differences at rank {r:,} "
                   f"(a lower svd_rank, e.g. 0, the default for more rows than snapshots, or a shorter window) needs")
        pw = powers(self.eigs, torch.arange(m).numpy())  # (r, m)
        A = (Q[None, :, :] * pw.T[:, None, :]).reshape(-1, r)
        return torch.linalg.lstsq(A, Z.to(torch.complex128).T.reshape(-1, 1)).solution[:, 0]

    def limit_coef(self) -> Tensor:
        """(m,) c with E @ c = Y V S^-1 (I - A~)^-1 U^H e_{m-1}: the geometric tail, solved directly."""
        eye = torch.eye(self.atilde.shape[0], dtype=self.atilde.dtype)
        return self.lift @ torch.linalg.solve(eye - self.atilde, self.z)

    def apply(self, f: Tensor) -> Tensor:
        """(m,) c with E @ c = Y V S^-1 Q diag(f) Q^-1 U^H e_{m-1}, f (r,) per mode."""
        Q = self.eigvecs
        w = Q @ (f.to(torch.complex128) * torch.linalg.solve(Q, self.z.to(torch.complex128)))
        return (self.lift.to(torch.complex128) @ w).real

    def smoothed(self, f: Tensor) -> Tensor:
        """(m,) c with E @ c = U Q diag(f q), q the fitted amplitudes (f = mu^j: the model's e_j)."""
        w = self.eigvecs @ (f.to(torch.complex128) * self.amplitudes)
        return (self.ulift.to(torch.complex128) @ w).real

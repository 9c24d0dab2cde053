"""Where a trajectory is heading: its limit and its forecast, from DMD of its differences.

Treat a window of training as an affine map theta(t+1) = A theta(t) + c (linear dynamics
plus a fixed point; the Koopman view of training near a stable fixed point, Redman et al.
ICLR 2022). The successive differences d(t) = theta(t+1) - theta(t) then evolve linearly,
d(t+1) = A d(t), with no eigenvalue-1 term to find. Exact DMD of the differences (Tu et
al. 2014) gives the reduced operator A~ = U^H Y V S^-1 on X = [d_0 .. d_{T-3}] = U S V^H,
Y = [d_1 .. d_{T-2}], and the exact-DMD lift of A is Y V S^-1 A~^(k-1) U^H for A^k. The
future, anchored at the last observed difference d_{T-2}, is a geometric sum:

    theta(T-1+h) = theta(T-1) + Y V S^-1 sum_{j<h} A~^j U^H d_{T-2}
    theta*       = theta(T-1) + Y V S^-1 (I - A~)^-1 U^H d_{T-2}          (h -> inf)

This is vector extrapolation (minimal / reduced rank polynomial extrapolation: Sidi, Ford
and Smith 1987, "Acceleration of convergence of vector sequences", SIAM J. Numer. Anal.)
in Koopman terms. Unlike the end-of-window slow part of a DMD of the snapshots (the last
snapshot minus transients that already decayed), it estimates the LIMIT, so it can differ
from the last snapshot and can be checked against where training really goes.

Conditioning: a mode with per-snapshot eigenvalue mu is amplified by 1 / |1 - mu| (the
``gain``). The limit is solved directly, (I - A~) w = U^H d_{T-2}, so it does not suffer
from ill-conditioned eigenvectors when eigenvalues cluster. Modes within ``drift_tol``
of 1, or with |mu| >= 1 (a short window cannot tell slow growth from persistence), have
no finite limit: they are summed over a stated horizon of ``max_horizon`` snapshots
(|mu| > 1 projected onto the unit circle) and a :class:`DriftWarning` names them.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from .dmd import _check_svd_rank, _rank_tolerance, choose_rank, deviation_gram_checked
from .dmd_result import canonical_order, powers
from .distributed import global_rows
from .snapshots import as_snapshots, check_finite, difference_gram, difference_matrix, matmul_chunked

Tensor = torch.Tensor


class DriftWarning(UserWarning):
    """The window still drifts: some per-snapshot eigenvalue of the differences is (near) 1 or above."""


def geometric_sums(mu: Tensor, h: float) -> Tensor:
    """sum_{j=0}^{h-1} mu^j = (1 - mu^h) / (1 - mu) for (r,) complex mu; h = math.inf gives
    1 / (1 - mu) (which needs |mu| < 1); mu = 1 gives h."""
    mu = mu.to(torch.complex128)
    one = (mu - 1).abs() < 1e-12
    safe = torch.where(one, torch.zeros_like(mu), mu)
    out = 1 / (1 - safe) if math.isinf(h) else (1 - powers(safe, h)[:, 0]) / (1 - safe)
    return torch.where(one, torch.full_like(mu, h), out)


@dataclass
class Extrapolation:
    """The limit (or a forecast) of a window and how far to trust it.

    Attributes
    ----------
    theta : (n,) the estimate, in the snapshots' dtype (float32 for half-precision data).
    eigs : (r,) complex, per-snapshot eigenvalues of the differences.
    drifting : (k,) complex, those treated as drifting (within drift_tol of 1, or |mu| >= 1).
    gain : max over the other modes of 1 / |1 - mu| (how much the tail amplifies a mode).
    horizon : snapshots summed for drifting modes (math.inf if none drifts).
    """

    theta: Tensor
    eigs: Tensor
    drifting: Tensor
    gain: float
    horizon: float


class AffineModel:
    """The reduced affine Koopman model of a window: A~ (r, r), the lift back to the snapshots,
    and the last observed difference in reduced coordinates.

    Parameters
    ----------
    W : (n_features, n_snapshots), T >= 3, any real float dtype, any device (not copied).
    svd_rank : PyDMD's meanings, applied to the differences.
    acc : optional :func:`koopman_tut.snapshots.deviation_gram` of W (summed over ranks).
    group : torch.distributed group when each rank holds its own rows of W.
    """

    def __init__(self, W, svd_rank: int | float = -1, acc: Tensor | None = None, group=None):
        W = as_snapshots(W, min_snapshots=3)
        if W.ndim != 2:
            raise ValueError(f"W must have shape (n_features, n_snapshots), got {tuple(W.shape)}")
        if W.is_complex():
            raise TypeError(f"W must be real (a parameter trajectory) for the affine model, got {W.dtype}; "
                            "kt.dmd decomposes complex snapshots")
        _check_svd_rank(svd_rank)
        self.W, T = W, W.shape[-1]
        M = difference_matrix(T)  # (T, T-1): differences D = W @ M
        R, gram_route = self._factor(W, M, acc, group)  # D = Q R, Q orthonormal (never formed)
        U, s, Vh = torch.linalg.svd(R[:, :-1], full_matrices=False)
        tol = _rank_tolerance(float(s[0]) if s.numel() else 0.0, T, W.dtype, gram_route)
        r = choose_rank(s, svd_rank, (global_rows(W, group), T - 2), tol) if s.numel() else 0
        if r == 0:
            raise ValueError("the window does not move (all differences are zero): nothing to extrapolate")
        U, s, V = U[:, :r], s[:r], Vh[:r].mH
        self.atilde = (U.mH @ R[:, 1:] @ V) / s[None, :]  # (r, r)
        self.z = U.mH @ R[:, -1]  # (r,) the last difference d_{T-2} in reduced coordinates
        lift = torch.zeros(T - 1, r, dtype=R.dtype)
        lift[1:] = V / s[None, :]  # Y V S^-1 = D @ lift
        self.lift = M @ lift  # (T, r): W @ self.lift = Y V S^-1
        ulift = torch.zeros(T - 1, r, dtype=R.dtype)
        ulift[:-1] = V / s[None, :]  # U = X V S^-1 = D @ ulift
        self.ulift = M @ ulift  # (T, r): W @ self.ulift = U
        eigs, eigvecs = torch.linalg.eig(self.atilde)  # complex128 out; real in: exact conjugate pairs
        perm = canonical_order(eigs)
        self.eigs, self.eigvecs = eigs[perm], eigvecs[:, perm]
        self.amplitudes = self._fit_amplitudes(U.mH @ R)  # (r,) per mode, fitted to every difference

    @staticmethod
    def _factor(W: Tensor, M: Tensor, acc, group) -> tuple[Tensor, bool]:
        """(R, gram_route) with D^H D = R^H R: a Householder QR of D in float64 when W is
        small (the accurate route), else from the eigendecomposition of the differences' Gram."""
        small = group is None and acc is None and W.shape[0] * W.shape[1] <= 2**22
        if small:
            check_finite(W)
            D = W.to(device="cpu", dtype=torch.float64) @ M
            return torch.linalg.qr(D, mode="r")[1], False
        if acc is None:
            acc = deviation_gram_checked(W, group=group)
        ev, P = torch.linalg.eigh(difference_gram(acc))
        keep = ev > ev.max() * ev.numel() * torch.finfo(torch.float64).eps * 16
        return ev[keep].sqrt()[:, None] * P[:, keep].mH, True

    def _fit_amplitudes(self, Z: Tensor) -> Tensor:
        """Least-squares amplitudes q minimising sum_t ||Q diag(mu^t) q - z_t||^2 over the
        reduced coordinates z_t (columns of Z, (r, T-1)) of all T-1 differences: a fit to
        the whole window, not to one (noisy) difference."""
        Q = self.eigvecs  # (r, r)
        pw = powers(self.eigs, torch.arange(Z.shape[1]).numpy())  # (r, T-1): mu_i^t
        A = (Q[None, :, :] * pw.T[:, None, :]).reshape(-1, Q.shape[1])  # (T-1)*r equations
        b = Z.to(torch.complex128).T.reshape(-1, 1)
        return torch.linalg.lstsq(A, b).solution[:, 0]

    def smoothed(self, f: Tensor) -> Tensor:
        """Coefficients c (T,) with W @ c = U Q diag(f * q), q the fitted amplitudes: e.g.
        f = mu^t gives the model's difference d(t) fitted to the whole window."""
        w = self.eigvecs @ (f.to(torch.complex128) * self.amplitudes)
        return (self.ulift.to(torch.complex128) @ w).real

    def apply(self, f: Tensor) -> Tensor:
        """Coefficients c (T,) with W @ c = Y V S^-1 Q diag(f) Q^-1 U^H d_{T-2}, f (r,) per mode."""
        Q = self.eigvecs
        w = Q @ (f.to(torch.complex128) * torch.linalg.solve(Q, self.z.to(torch.complex128)))
        return (self.lift.to(torch.complex128) @ w).real

    def extrapolate(self, h: float = math.inf, drift_tol: float = 1e-3, max_horizon: float | None = None,
                    warn: bool = True) -> Extrapolation:
        """theta(T-1+h), h >= 0 snapshots past the last one; h = math.inf gives the limit theta*.

        Parameters
        ----------
        drift_tol : eigenvalues within this distance of 1 (or with |mu| >= 1) have no usable
            limit; for h = inf they are summed over ``max_horizon`` snapshots and reported.
        max_horizon : that horizon (default 1 / drift_tol snapshots).
        warn : emit a :class:`DriftWarning` when h = inf and some mode drifts.
        """
        if not h >= 0:
            raise ValueError(f"h must be >= 0 (snapshots ahead) or math.inf, got {h!r}")
        if not drift_tol > 0:
            raise ValueError(f"drift_tol must be > 0, got {drift_tol!r}")
        max_horizon = 1 / drift_tol if max_horizon is None else max_horizon
        if not max_horizon > 0 or math.isinf(max_horizon):
            raise ValueError(f"max_horizon must be a finite number > 0, got {max_horizon!r}")
        mu = self.eigs
        drifting = ((mu - 1).abs() < drift_tol) | (mu.abs() >= 1)
        held = torch.where(mu.abs() > 1, mu / mu.abs(), mu)
        if math.isinf(h) and not bool(drifting.any()):  # the limit, solved directly
            eye = torch.eye(self.atilde.shape[0], dtype=self.atilde.dtype)
            w = torch.linalg.solve(eye - self.atilde, self.z)
            coef = self.lift @ w
        else:
            f = torch.where(drifting, geometric_sums(held, max_horizon if math.isinf(h) else h),
                            geometric_sums(mu, h))
            coef = self.apply(f)
        coef = coef.clone()
        coef[-1] += 1  # + theta(T-1)
        theta = matmul_chunked(self.W, coef[:, None])[:, 0]
        if warn and math.isinf(h) and bool(drifting.any()):
            warnings.warn(DriftWarning(
                f"the window still drifts: eigenvalue(s) {_fmt(mu[drifting])} of the differences lie within "
                f"{drift_tol:g} of 1 or on/outside the unit circle, so the trajectory has no limit in this "
                f"window; their modes were summed over {max_horizon:g} snapshots. Record a later or longer "
                f"window, or read this estimate as a {max_horizon:g}-snapshot forecast"), stacklevel=3)
        finite = mu[~drifting]
        gain = float((1 / (1 - finite).abs()).max()) if finite.numel() else 0.0
        return Extrapolation(theta=theta, eigs=mu, drifting=mu[drifting], gain=gain,
                             horizon=max_horizon if bool(drifting.any()) else math.inf)


def _fmt(z: Tensor, k: int = 4) -> str:
    vals = [complex(v) for v in z[:k]]
    text = ", ".join(f"{v.real:.5f}{v.imag:+.5f}j" if abs(v.imag) > 1e-12 else f"{v.real:.5f}" for v in vals)
    return text + (f" (+{z.numel() - k} more)" if z.numel() > k else "")

"""Exact Dynamic Mode Decomposition in PyTorch, for tall snapshot matrices.

Exact DMD (Tu, Rowley, Luchtenburg, Brunton & Kutz 2014, "On dynamic mode decomposition:
theory and applications", J. Comput. Dyn.) of a snapshot matrix W = [w_0 ... w_{T-1}] of
shape (n_features, n_snapshots), as used by Redman et al. (ICLR 2022, arXiv:2110.14856)
on the parameter trajectory of a neural network: X = W[:, :-1], Y = W[:, 1:],
X = U S V^H, A~ = U^H Y V S^-1, A~ w = lambda w, mode = Y V S^-1 w (PyDMD's scaling).
The mean is never subtracted: that would remove the eigenvalue-1 (fixed point) mode.

Two routes give the same answer:

* ``"svd"``: a thin SVD of X in float64. Most accurate; costs a float64 copy of W.
  Chosen by ``method="auto"`` for small problems (n_features * n_snapshots <= 2**22).
* ``"gram"``: the method of snapshots for n_features >> n_snapshots. One pass over W
  builds the Gram matrix G = W^H W (T, T), which holds both X^H X = G[:-1, :-1] and
  X^H Y = G[:-1, 1:]. To keep float32 input fast *and* accurate, each chunk of rows is
  taken relative to a reference snapshot w_ref (the last one): the chunk [W - w_ref, w_ref]
  has small entries near convergence, its Gram is accumulated in the input dtype and
  summed in float64, and the full Gram is assembled from it in float64. The SVD of X
  follows from the eigendecomposition of the small Gram. Singular values below the
  Gram's noise floor, sqrt(eps) times the deviations' norm (about 3e-4 of it in float32,
  1.5e-8 in float64) or 3e-8 of the largest, are dropped; use ``method="svd"`` when such
  directions matter (ill-conditioned, small problems). See :mod:`koopman_tut.snapshots`.

Amplitudes come from the Gram too (no mode is formed); modes are computed lazily, one
more pass over W, and only for the modes asked for (``result.mode(i)``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .snapshots import as_snapshots, check_finite, gram

Tensor = torch.Tensor

_SVD_MAX_ELEMENTS = 2**22  # auto picks the float64 SVD route below this size


def _check_svd_rank(svd_rank) -> None:
    ok = isinstance(svd_rank, (int, float, np.integer, np.floating)) and not isinstance(svd_rank, bool)
    if ok and (svd_rank == -1 or svd_rank == 0 or 0 < svd_rank < 1
               or (svd_rank >= 1 and float(svd_rank).is_integer())):
        return
    raise ValueError("svd_rank must be -1 (no truncation), 0 (optimal hard threshold), a float in (0, 1) "
                     f"(energy fraction) or an integer >= 1 (rank), got {svd_rank!r}")


def choose_rank(s: Tensor, svd_rank, shape: tuple[int, int], tol: float) -> int:
    """Rank kept for singular values ``s`` (descending, float64) of X of ``shape`` (n, m), with
    PyDMD's meaning of svd_rank. Singular values at or below ``tol`` are never kept
    (numerical rank), whatever svd_rank asks.
    """
    s = s[: min(shape)]  # the Gram route yields m values; X has min(n, m)
    numerical = int((s > tol).sum())
    if svd_rank == 0:  # Gavish & Donoho 2014, as PyDMD's compute_rank
        beta = min(shape) / max(shape)
        omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
        rank = int((s > omega * s.median()).sum())
    elif 0 < svd_rank < 1:
        energy = torch.cumsum(s**2, 0) / (s**2).sum()
        rank = int(torch.searchsorted(energy, torch.tensor([float(svd_rank)], dtype=energy.dtype))) + 1
    elif svd_rank >= 1:
        rank = int(svd_rank)
    else:
        rank = s.numel()
    return max(1, min(rank, numerical)) if numerical > 0 else 0


def powers(eigs: Tensor, t) -> Tensor:
    """lambda_i ** t_j, shape (r, k) complex128 on the CPU (principal branch for non-integer t).

    lambda ** 0 is 1 for every eigenvalue, 0 included (exp(0 * log 0) alone would give NaN).
    """
    lam = torch.as_tensor(eigs).cpu().to(torch.complex128)
    tt = torch.as_tensor(np.atleast_1d(np.asarray(t, dtype=np.float64)))
    out = torch.exp(tt[None, :] * torch.log(lam)[:, None])
    return torch.where(tt[None, :] == 0, torch.ones_like(out), out)


# ----------------------------------------------------------------------------- result
@dataclass
class DMDResult:
    """Exact DMD of one snapshot matrix; quantities on the data's device.

    Attributes
    ----------
    eigs : (r,) complex. Discrete-time eigenvalues, per snapshot step.
    amplitudes : (r,) complex. Least-squares fit of the modes to the first snapshot.
    singular_values : (r,) real. Kept singular values of X = W[:, :-1].
    modes : (n_features, r) complex, computed on first access (one pass over W).
    """

    eigs: Tensor
    amplitudes: Tensor
    singular_values: Tensor
    coef: Tensor = field(repr=False)  # (T, r) complex128 CPU: modes = W @ coef
    W: Tensor = field(repr=False)  # (n, T) the data; held by reference, never copied
    method: str = "gram"
    _modes: Tensor | None = field(default=None, repr=False)

    @property
    def rank(self) -> int:
        return int(self.eigs.numel())

    # -- modes, formed from the data only when asked for
    def combine(self, weights: Tensor, real: bool = True) -> Tensor:
        """Linear combinations of the modes, sum_i weights[i, j] * modes[:, i], in one pass over W.

        Computed as W @ (coef @ weights), without forming the modes.

        Parameters
        ----------
        weights : (r,) or (r, k) complex.
        real : return the real part (for real data). Otherwise complex, built without a
            complex copy of W (real and imaginary coefficients are interleaved so the real
            product's output already is the complex result's memory).

        Returns
        -------
        (n_features,) or (n_features, k), on W's device.
        """
        weights = torch.as_tensor(weights).to(torch.complex128)
        if weights.ndim == 1:
            return self.combine(weights[:, None], real)[:, 0]
        c = self.coef @ weights.to(self.coef.device)  # (T, k) complex128
        W = self.W
        if W.is_complex():
            return W @ c.to(W.dtype).to(W.device)
        if real:
            return W @ c.real.to(W.dtype).to(W.device)
        c2 = torch.view_as_real(c).reshape(c.shape[0], -1)  # (T, 2k): re0, im0, re1, im1, ...
        out = W @ c2.to(W.dtype).to(W.device)  # (n, 2k)
        return torch.view_as_complex(out.reshape(out.shape[0], -1, 2))

    @property
    def modes(self) -> Tensor:
        """(n_features, r) complex DMD modes (exact, PyDMD's scaling). Cached after the first call."""
        if self._modes is None:
            self._modes = self.combine(torch.eye(self.rank, dtype=torch.complex128), real=False)
        return self._modes

    def mode(self, index: int | Sequence[int]) -> Tensor:
        """Only the mode(s) asked for: (n_features,) for an int, (n_features, k) for a list."""
        idx = torch.as_tensor(index).reshape(-1)
        E = torch.eye(self.rank, dtype=torch.complex128)[:, idx]
        out = self.combine(E, real=False)
        return out[:, 0] if isinstance(index, (int, np.integer)) else out

    # -- eigenvalue look-ups
    def closest(self, value: complex = 1.0) -> int:
        """Index of the eigenvalue closest to ``value`` (default 1: the fixed-point mode)."""
        return int(torch.argmin((self.eigs.cpu().to(torch.complex128) - complex(value)).abs()))

    def near(self, value: complex = 1.0, radius: float = 0.05) -> Tensor:
        """Indices (k,) of eigenvalues within ``radius`` of ``value``, closest first."""
        d = (self.eigs.cpu().to(torch.complex128) - complex(value)).abs()
        idx = torch.nonzero(d <= radius).reshape(-1)
        return idx[torch.argsort(d[idx])]

    # -- dynamics
    def _dynamics(self, t, indices=None) -> tuple[Tensor, bool]:
        """Weights amplitudes * eigs**t, shape (r, k); zero outside ``indices``."""
        scalar = np.ndim(t) == 0
        weights = self.amplitudes.cpu().to(torch.complex128)[:, None] * powers(self.eigs, t)  # (r, k)
        if indices is not None:
            keep = torch.zeros(self.rank, dtype=torch.bool)
            keep[torch.as_tensor(indices, dtype=torch.long)] = True
            weights[~keep] = 0
        return weights, scalar

    def predict(self, t, indices=None, real: bool = True) -> Tensor:
        """State(s) sum_i b_i lambda_i^t phi_i at time(s) t (snapshot-index units, t=0 is W[:, 0]).

        Parameters
        ----------
        t : float or array of k floats.
        indices : optional mode indices to include (default all).
        real : return the real part (for real data; the imaginary part is rounding only
            when all members of each conjugate pair are included).

        Returns
        -------
        Tensor, (n_features,) for scalar t, else (n_features, k).
        """
        weights, scalar = self._dynamics(t, indices)
        out = self.combine(weights, real=real)
        return out[:, 0] if scalar else out

    def reconstruct(self, real: bool = True) -> Tensor:
        """(n_features, n_snapshots) DMD reconstruction of the data."""
        return self.predict(np.arange(self.W.shape[-1]), real=real)

    def fixed_point(self, value: complex = 1.0) -> Tensor:
        """Real (n_features,) vector: the mode with eigenvalue closest to ``value`` times its amplitude."""
        return self.predict(0, indices=[self.closest(value)])

    def slow_part(self, radius: float = 0.1, t: float | None = None) -> Tensor:
        """Real (n_features,) slow part of the trajectory at time t: sum of b_i lambda_i^t phi_i
        over the eigenvalues within ``radius`` of 1 (default t: the last snapshot).

        The stable estimate of where a drifting trajectory is heading: DMD can split the slow
        dynamics into a complex pair near 1 or two close real eigenvalues whose amplitudes
        cancel; their sum is meaningful where one such mode alone is not. Taken at the end of
        the window, it is the last state with the fast transients removed; it equals
        :meth:`fixed_point` when a single eigenvalue, exactly 1, lies within the radius.
        """
        idx = self.near(1.0, radius)
        if idx.numel() == 0:
            idx = torch.tensor([self.closest(1.0)])
        return self.predict(self.W.shape[-1] - 1 if t is None else t, indices=idx)


class DMDBatch(list):
    """Results of a batched call: a list of :class:`DMDResult`, one per leading index."""

    @property
    def eigs(self) -> list[Tensor]:
        return [r.eigs for r in self]


# ----------------------------------------------------------------------------- solver
def _rank_tolerance(s_max: float, T: int, dtype: torch.dtype, dev_norm: float | None = None) -> float:
    """Singular values at or below this are numerically zero.

    As numpy.linalg.matrix_rank, s_max * T * eps(dtype), with the snapshot count in place of
    max(n, T) (the data's own rounding over T columns). On the Gram route (``dev_norm`` given:
    the 2-norm of the deviations W - w_ref, whose Gram is accumulated in W's dtype) also
    below the Gram's noise floor: sqrt(eps) times dev_norm (rounding in the products), and
    2 sqrt(eps64) times s_max (the float64 eigensolver).
    """
    eps = torch.finfo(dtype).eps
    tol = s_max * T * eps
    if dev_norm is not None:
        tol = max(tol, math.sqrt(eps) * dev_norm, 2 * math.sqrt(torch.finfo(torch.float64).eps) * s_max)
    return tol


def _solve(s_all: Tensor, V_all: Tensor, atilde, B: Tensor, n_rows: int, svd_rank, tol: float):
    """DMD from small float64 matrices (all on the CPU).

    s_all (R,) descending singular values of X and V_all (m, R) its right singular vectors;
    atilde(r) returns A~ = U_r^H Y V_r S_r^-1 (r, r); B (k, T) = Q^H W for an orthonormal
    basis Q of range(W), used to fit amplitudes without forming any mode.
    Returns eigs (r,), amplitudes (r,), singular values (r,), coef (T, r) with modes = W @ coef.
    """
    T = B.shape[-1]
    r = choose_rank(s_all, svd_rank, (n_rows, T - 1), tol)
    if r == 0:
        raise ValueError("W has numerical rank 0 (all snapshots are zero): nothing to decompose")
    cdt = torch.complex128
    s, V = s_all[:r], V_all[:, :r].to(cdt)
    lam, w = torch.linalg.eig(atilde(r).to(cdt))
    coef = torch.zeros(T, r, dtype=cdt)
    coef[1:] = (V / s.to(cdt)[None, :]) @ w  # modes = Y V S^-1 w = W @ coef
    B = B.to(cdt)
    b = torch.linalg.lstsq(B @ coef, B[:, :1]).solution[:, 0]  # lstsq(modes, w_0)
    return lam, b, s, coef


def dmd(W, svd_rank=-1, method: str = "auto", chunk_rows: int | None = None):
    """Exact DMD of a snapshot matrix (features, time), on the data's device.

    Parameters
    ----------
    W : torch.Tensor or numpy.ndarray, shape (n_features, n_snapshots), or
        (B, n_features, n_snapshots) for B independent DMDs in one pass.
        float32 or float64 (or complex), any device. Columns are snapshots, as in PyDMD.
    svd_rank : -1 no truncation (singular values below the numerical-rank tolerance are
        still dropped, so rank-deficient data never gives NaN/Inf); 0 optimal hard
        threshold (Gavish-Donoho); float in (0, 1) energy fraction; int k rank k.
    method : "auto", "gram" (method of snapshots, one pass) or "svd" (float64 thin SVD).
        "auto" uses "svd" when n_features * n_snapshots <= 2**22 and "gram" above.
    chunk_rows : rows per chunk on the Gram route (memory/speed trade-off).

    Returns
    -------
    DMDResult (or DMDBatch of them for 3-D input). ``eigs`` (r,), ``amplitudes`` (r,),
    ``singular_values`` (r,) live on W's device; ``modes`` (n_features, r) are formed lazily.

    Examples
    --------
    >>> res = dmd(W)                  # W: (n, T)
    >>> theta_star = res.fixed_point()  # (n,), the eigenvalue-1 mode times its amplitude
    """
    W = as_snapshots(W)
    _check_svd_rank(svd_rank)
    if method not in ("auto", "gram", "svd"):
        raise ValueError(f"method must be 'auto', 'gram' or 'svd', got {method!r}")
    n, T = W.shape[-2], W.shape[-1]
    if method == "auto":
        method = "svd" if n * T <= _SVD_MAX_ELEMENTS else "gram"
    if method == "svd":
        check_finite(W)
    if W.ndim == 3:
        if method == "gram":
            Gs = _checked_gram(W, chunk_rows)
            return DMDBatch(_from_gram(W[i], Gs[i], svd_rank) for i in range(W.shape[0]))
        return DMDBatch(_from_svd(W[i], svd_rank) for i in range(W.shape[0]))
    if method == "gram":
        return _from_gram(W, _checked_gram(W, chunk_rows), svd_rank)
    return _from_svd(W, svd_rank)


def _checked_gram(W: Tensor, chunk_rows) -> Tensor:
    """The Gram matrix; NaN/Inf in W shows up in it, so finiteness is checked for free."""
    G = gram(W, chunk_rows=chunk_rows)
    if not bool(torch.isfinite(G).all()):
        check_finite(W)  # names the rows when the data itself is at fault
        raise ValueError("W^H W overflows: rescale W (its entries are too large for its dtype)")
    return G


def _from_svd(W: Tensor, svd_rank) -> DMDResult:
    """Route "svd": thin SVD of X in float64 (no squared condition number)."""
    W64 = W.to(device="cpu", dtype=torch.complex128 if W.is_complex() else torch.float64)
    U, s, Vh = torch.linalg.svd(W64[:, :-1], full_matrices=False)
    V = Vh.mH

    def atilde(r):
        return (U[:, :r].mH @ W64[:, 1:] @ V[:, :r]) / s[None, :r]

    Q, _ = torch.linalg.qr(W64)  # basis of range(W), which may exceed range(X)
    tol = _rank_tolerance(float(s[0]), W.shape[-1], W.dtype)
    lam, b, s_r, coef = _solve(s, V, atilde, Q.mH @ W64, W.shape[0], svd_rank, tol)
    return _pack(W, lam, b, s_r, coef, "svd")


def _from_gram(W: Tensor, G: Tensor, svd_rank) -> DMDResult:
    """Route "gram": everything from G = W^H W (T, T) float64; X^H X = G[:-1,:-1], X^H Y = G[:-1,1:]."""
    m = G.shape[-1] - 1
    evals, evecs = torch.linalg.eigh(G[:m, :m])  # X^H X = V S^2 V^H, ascending
    s, V = evals.flip(0).clamp_min(0).sqrt(), evecs.flip(1)

    def atilde(r):  # U^H Y V S^-1 = S^-1 V^H (X^H Y) V S^-1
        Vr = V[:, :r]
        return (Vr.mH @ G[:m, 1:] @ Vr) / (s[:r, None] * s[None, :r])

    ev, P = torch.linalg.eigh(G)  # W = Q D^1/2 P^H  =>  Q^H W = D^-1/2 P^H G
    keep = ev > ev.max() * G.shape[-1] * torch.finfo(torch.float64).eps * 16
    B = (P[:, keep].mH @ G) / ev[keep].sqrt()[:, None]
    # deviations D = W - w_ref 1^T (w_ref the last snapshot): D^H D from G, for the tolerance
    Gd = G - G[:, -1:] - G[-1:, :] + G[-1, -1]
    dev_norm = float(torch.linalg.eigvalsh(Gd)[-1].clamp_min(0).sqrt())
    tol = _rank_tolerance(float(s[0]), G.shape[-1], W.dtype, dev_norm)
    lam, b, s_r, coef = _solve(s, V, atilde, B, W.shape[-2], svd_rank, tol)
    return _pack(W, lam, b, s_r, coef, "gram")


def _pack(W, lam, b, s, coef, method) -> DMDResult:
    cdtype = torch.complex64 if W.dtype in (torch.float32, torch.complex64) else torch.complex128
    rdtype = torch.float32 if cdtype == torch.complex64 else torch.float64
    dev = W.device
    return DMDResult(eigs=lam.to(cdtype).to(dev), amplitudes=b.to(cdtype).to(dev),
                     singular_values=s.to(rdtype).to(dev), coef=coef, W=W, method=method)

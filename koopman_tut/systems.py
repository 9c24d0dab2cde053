"""Dynamical systems with known Koopman spectra: oracles for DMD and teaching examples.

* A linear map x(t+1) = A x(t): Koopman eigenvalues of the full-state observable are the
  eigenvalues of A.
* Gradient descent on a quadratic loss 0.5 (x - x*)^T H (x - x*) with step lr:
  x(t+1) - x* = (I - lr H)(x(t) - x*), so the eigenvalues are 1 - lr h_i and 1, whose mode
  is the minimizer x* (Redman et al., ICLR 2022: the eigenvalue-1 mode is where training heads).
* ``trajectory_like``: a large synthetic "parameter trajectory" (fixed point plus decaying
  modes plus a little minibatch noise), the shape of data DMD meets in pruning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def linear_system(eigs, n_steps: int, dim: int | None = None, seed: int = 0):
    """Snapshots of x(t+1) = A x(t) where A has the given real eigenvalues.

    Parameters
    ----------
    eigs : (d,) real eigenvalues of A.
    n_steps : number of steps; the result has n_steps + 1 snapshots.
    dim : state dimension >= d (default d); extra dimensions are a random embedding.

    Returns
    -------
    W : ndarray (dim, n_steps + 1) float64, A : ndarray (dim, dim)
    """
    eigs = np.asarray(eigs, dtype=np.float64)
    d = eigs.size
    dim = d if dim is None else dim
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((dim, d))  # eigenvectors, embedded in R^dim
    pinv = np.linalg.pinv(basis)
    A = basis @ np.diag(eigs) @ pinv
    x = basis @ rng.standard_normal(d)
    W = np.empty((dim, n_steps + 1))
    for t in range(n_steps + 1):
        W[:, t] = x
        x = A @ x
    return W, A


@dataclass
class QuadraticGD:
    """Gradient descent on 0.5 (x - x*)^T H (x - x*) with a rank-k Hessian H in R^dim.

    Attributes
    ----------
    W : (dim, n_steps + 1) iterates x(0..n_steps).
    x_star : (dim,) the minimizer reached (x(0) - x* lies in range(H)).
    hessian : (dim, dim) H, rank k.
    hess_eigs : (k,) nonzero Hessian eigenvalues h_i.
    eigs : (k + 1,) Koopman eigenvalues 1 - lr h_i and 1, sorted descending.
    """

    W: np.ndarray
    x_star: np.ndarray
    hessian: np.ndarray
    hess_eigs: np.ndarray
    lr: float

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """(dim,) gradient H (x - x*) of the loss at x."""
        return self.hessian @ (x - self.x_star)

    @property
    def eigs(self) -> np.ndarray:
        return np.sort(np.r_[1.0, 1.0 - self.lr * self.hess_eigs])[::-1]


def quadratic_gd(hess_eigs, lr: float, n_steps: int, dim: int = 20, seed: int = 0) -> QuadraticGD:
    """Run gradient descent on a quadratic with Hessian eigenvalues ``hess_eigs`` (k of them)
    embedded in R^dim, k <= dim. With k < dim, x* is independent of the k decaying
    directions and a DMD of the iterates sees it as a separate eigenvalue-1 mode; with
    k = dim (a full-rank Hessian) the iterates span only R^dim, and only a method that
    models the constant (DMD of the differences) can recover x*."""
    h = np.asarray(hess_eigs, dtype=np.float64)
    k = h.size
    if k > dim:
        raise ValueError(f"dim must be at least the number of Hessian eigenvalues ({k}), got dim={dim}")
    rng = np.random.default_rng(seed)
    B = np.linalg.qr(rng.standard_normal((dim, k)))[0]  # (dim, k) orthonormal
    H = B @ np.diag(h) @ B.T
    x_star = rng.standard_normal(dim)
    x = x_star + B @ rng.standard_normal(k)
    W = np.empty((dim, n_steps + 1))
    for t in range(n_steps + 1):
        W[:, t] = x
        x = x - lr * H @ (x - x_star)
    return QuadraticGD(W=W, x_star=x_star, hessian=H, hess_eigs=h, lr=lr)


def trajectory_like(n: int, T: int, n_modes: int = 12, noise: float = 1e-4, seed: int = 0,
                    dtype=torch.float32, device="cpu") -> torch.Tensor:
    """A (n, T) synthetic parameter trajectory: theta* + sum_i lambda_i^t a_i v_i + noise.

    theta* ~ N(0, 0.05^2) (weights of a trained layer), decaying modes with eigenvalues in
    (0.5, 0.99) and amplitudes 1e-2, plus a random-walk noise of scale ``noise`` (minibatch
    SGD). Built chunk by chunk in place, so no temporary exceeds a few MB.
    """
    g = torch.Generator().manual_seed(seed)
    lam = torch.linspace(0.5, 0.99, n_modes, dtype=torch.float64)
    powers = lam[:, None] ** torch.arange(T, dtype=torch.float64)[None, :]  # (k, T)
    W = torch.empty(n, T, dtype=dtype, device=device)
    step = max(1, 2**18 // T)
    for s in range(0, n, step):
        e = min(s + step, n)
        base = 0.05 * torch.randn(e - s, 1, generator=g, dtype=torch.float64)
        modes = 1e-2 * torch.randn(e - s, n_modes, generator=g, dtype=torch.float64)
        walk = noise * torch.randn(e - s, T, generator=g, dtype=torch.float64).cumsum(1)
        W[s:e] = (base + modes @ powers + walk).to(dtype).to(device)
    return W

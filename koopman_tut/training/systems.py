"""Dynamical systems with known Koopman spectra: oracles for DMD and teaching examples.

* A linear map x(t+1) = A x(t): Koopman eigenvalues of the full-state observable are the
  eigenvalues of A.
* Gradient descent on a quadratic loss 0.5 (x - x*)^T H (x - x*) with step lr:
  x(t+1) - x* = (I - lr H)(x(t) - x*), so the eigenvalues are 1 - lr h_i and 1, whose mode
  is the minimizer x* (Redman et al., ICLR 2022: the eigenvalue-1 mode is where training heads).
* ``trajectory_like``: a large synthetic "parameter trajectory" (fixed point plus decaying
  modes plus a little minibatch noise), the shape of data DMD meets in pruning.
* ``quadratic_sgd``: torch.optim.SGD (plain, heavy ball or Nesterov) on a quadratic, recorded by
  a TrajectoryRecorder: momentum makes training second order, and the limit is x* exactly.
* ``affine_window``: a fixed point plus given decaying modes plus measurement noise.
* ``softmax_sgd``: full-batch SGD on L2-regularised softmax regression of scikit-learn's digits: a
  loss that is not quadratic but strictly convex, so its limit is known (by Newton's method).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..numerics.optimizer_settings import contraction  # noqa: F401 (systems.contraction, as before)
from .system_checks import check_contracts, check_decaying, check_sizes, real_eigs


def linear_system(eigs, n_steps: int, dim: int | None = None, seed: int = 0):
    """Snapshots of x(t+1) = A x(t) where A has the given real eigenvalues.

    Parameters
    ----------
    eigs : (d,) real, finite eigenvalues of A (TypeError for complex ones, ValueError for NaN or inf).
    n_steps : number of steps; the result has n_steps + 1 snapshots.
    dim : state dimension >= d (default d; ValueError below d); extra dimensions are a random embedding.

    Returns
    -------
    W : ndarray (dim, n_steps + 1) float64, A : ndarray (dim, dim)
    """
    eigs = real_eigs(eigs, "real eigenvalues (A is real with exactly these)")
    d = eigs.size
    n_steps, dim = check_sizes(n_steps=(n_steps, 0), dim=(d if dim is None else dim, 1))
    if not np.isfinite(eigs).all():
        raise ValueError(f"eigs must be finite real numbers, got {eigs.tolist()!r:.100}")
    if dim < d:
        raise ValueError(f"dim must be at least the number of eigenvalues ({d}), got dim={dim}: A would have others")
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
    models the constant (DMD of the differences) can recover x*. ValueError, as :func:`quadratic_sgd`, unless
    every h > 0 and every step contracts (|1 - lr h| < 1): otherwise x* is not where the iterates go."""
    h = np.asarray(hess_eigs, dtype=np.float64)
    k, (n_steps, dim) = h.size, check_sizes(n_steps=(n_steps, 0), dim=(dim, 1))
    if k > dim:
        raise ValueError(f"dim must be at least the number of Hessian eigenvalues ({k}), got dim={dim}")
    check_contracts(0, h, lr, 0.0, False, 0.0)
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
    n, T, n_modes = check_sizes(n=(n, 1), T=(T, 1), n_modes=(n_modes, 0))
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


@dataclass
class QuadraticRun:
    """A recorded window of torch.optim.SGD on a quadratic loss (see :func:`quadratic_sgd`).

    Attributes
    ----------
    traj : the Trajectory recorded by :class:`~koopman_tut.TrajectoryRecorder` (n = dim).
    x_star : (dim,) float64, the minimizer of what training minimises (the loss + wd/2 ||x||^2): where it is heading.
    hessian : (dim, dim) float64 H (+ wd I with weight decay wd), rank k (dim with weight decay).
    weight_decay : the optimizer's weight decay wd.
    """

    traj: "object"
    x_star: torch.Tensor
    hessian: torch.Tensor
    weight_decay: float = 0.0

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """(dim,) H (x - x*) at x: the gradient of what training minimises, weight decay's wd x included."""
        return self.hessian @ (x.double() - self.x_star)

    def backprop_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """(dim,) the loss's own gradient at x, what backprop puts in ``.grad`` (weight decay not included): what
        ``kt.koopman(traj).gradient()`` estimates, as it undoes weight decay."""
        return self.gradient(x) - self.weight_decay * x.double()


def quadratic_sgd(hess_eigs, lr: float, momentum: float = 0.0, nesterov: bool = False, warmup: int = 100,
                  n_steps: int = 80, dim: int = 20, seed: int = 0, dtype=torch.float64, dampening: float = 0.0,
                  weight_decay: float = 0.0, lr_lambda=None, momentum_at=None, path=None,
                  grad_noise: float = 0.0) -> QuadraticRun:
    """Train x (a bias-free nn.Linear(dim, 1)) by torch.optim.SGD on 0.5 (x - x*)^T H (x - x*)
    and record steps warmup .. warmup + n_steps with a TrajectoryRecorder.

    Heavy ball (momentum > 0) and Nesterov (nesterov=True) make training a second-order
    recursion x(t+1) = x(t) + beta (x(t) - x(t-1)) - lr g(...): its limit is x*, exactly.

    Parameters
    ----------
    hess_eigs : (k,) positive Hessian eigenvalues, k <= dim (H = B diag(h) B^T, B random orthonormal).
    lr, momentum, nesterov, dampening, weight_decay : the optimizer's settings (with weight decay
        wd the limit is the minimiser of the loss + wd/2 ||x||^2, and ``hessian`` is H + wd I).
    lr_lambda : an lr schedule, LambdaLR's factor of the step (stepped after every step), or None.
    momentum_at : the momentum of step s (a function of s = 0, 1, ..., set before the step, as
        OneCycleLR cycles it), or None for ``momentum`` throughout.
    path : record into this disk file (``TrajectoryRecorder(path=)``) instead of memory.
    grad_noise : std of Gaussian noise added to every gradient (a minibatch stand-in; seeded by ``seed``).
    warmup, n_steps, dtype : steps before the window, its length (n_steps + 1 snapshots), the model's and its dtype.
    """
    from ..recording.recorder import TrajectoryRecorder  # recording sits below the systems

    h = torch.as_tensor(np.asarray(hess_eigs, dtype=np.float64))
    warmup, n_steps, dim = check_sizes(warmup=(warmup, 0), n_steps=(n_steps, 0), dim=(dim, 1))
    if h.numel() > dim:
        raise ValueError(f"dim must be at least the number of Hessian eigenvalues ({h.numel()}), got dim={dim}")
    for s in range(warmup + n_steps):  # x_star is where training goes only if every step contracts
        check_contracts(s, h.numpy() + weight_decay, lr * (lr_lambda(s) if lr_lambda is not None else 1.0),
                         float(momentum_at(s)) if momentum_at is not None else momentum, nesterov, dampening)
    g = torch.Generator().manual_seed(seed)
    B = torch.linalg.qr(torch.randn(dim, h.numel(), generator=g, dtype=torch.float64))[0]
    H = B @ torch.diag(h) @ B.T
    x_star = torch.randn(dim, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(dim, 1, bias=False).to(dtype)
    with torch.no_grad():
        model.weight.copy_((x_star + B @ torch.randn(h.numel(), generator=g, dtype=torch.float64))[None])
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov, dampening=dampening,
                          weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda is not None else None
    rec = TrajectoryRecorder(model, opt, start=warmup, stop=warmup + n_steps, dtype=dtype, path=path)
    Hd, xs, gn = H.to(dtype), x_star.to(dtype), torch.Generator().manual_seed(seed + 1)
    for s in range(warmup + n_steps):
        if momentum_at is not None:
            opt.param_groups[0]["momentum"] = float(momentum_at(s))
        opt.zero_grad()
        e = model.weight[0] - xs
        (0.5 * e @ Hd @ e).backward()
        if grad_noise:
            model.weight.grad += grad_noise * torch.randn(dim, generator=gn, dtype=torch.float64).to(dtype)
        opt.step()
        if schedule is not None:
            schedule.step()
    rec.remove()
    if weight_decay:  # the regularised loss: (H + wd I) x = H x*
        H = H + weight_decay * torch.eye(dim, dtype=torch.float64)
        x_star = torch.linalg.solve(H, (H - weight_decay * torch.eye(dim, dtype=torch.float64)) @ x_star)
    return QuadraticRun(traj=rec.trajectory(copy=True), x_star=x_star, hessian=H, weight_decay=float(weight_decay))


def affine_window(n: int, T: int, eigs, noise: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A window (n, T) of x(t) = x* + sum_i c_i mu_i^t b_i (+ noise), float64, and its limit x* (n,).

    Gradient descent on a quadratic seen in its eigenbasis: b_i orthonormal, mu_i = 1 - lr h_i the
    given real eigenvalues (|mu_i| < 1), c_i ~ N(0, 1), x* ~ N(0, I); ``noise`` adds independent
    N(0, noise^2) to every entry (measurement noise, the regime where a window cannot resolve
    modes slower than itself).
    """
    mu = torch.as_tensor(check_decaying(eigs))
    k, (n, T) = mu.numel(), check_sizes(n=(n, 1), T=(T, 1))
    if k > n:
        raise ValueError(f"n must be at least the number of eigenvalues ({k}), got n={n}")
    g = torch.Generator().manual_seed(seed)
    B = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))[0]
    x_star = torch.randn(n, generator=g, dtype=torch.float64)
    c = torch.randn(k, generator=g, dtype=torch.float64)
    W = x_star[:, None] + B @ (c[:, None] * mu[:, None] ** torch.arange(T, dtype=torch.float64)[None])
    return W + noise * torch.randn(n, T, generator=g, dtype=torch.float64), x_star


def softmax_sgd(lr: float = 0.5, momentum: float = 0.0, nesterov: bool = False, warmup: int = 100,
                n_steps: int = 80, weight_decay: float = 1e-3, seed: int = 0) -> QuadraticRun:
    """Full-batch torch.optim.SGD on softmax regression of digits (nn.Linear(64, 10), float64,
    inputs / 16) with weight decay, recording steps warmup .. warmup + n_steps; ``x_star`` is the
    minimiser of the regularised loss (unique: it is strictly convex), found by Newton's method
    to a gradient below 1e-12 (the same for every optimizer and seed; ``hessian`` is its Hessian
    there, so ``gradient`` is the gradient's linearisation at x*). A non-quadratic known answer: every linear
    model of the window (the affine Koopman model, the secant limit) is exact only as the window nears the limit.
    """
    warmup, n_steps = check_sizes(warmup=(warmup, 0), n_steps=(n_steps, 0))
    X, y = _digits()
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's generator
        torch.manual_seed(seed)
        model = torch.nn.Linear(64, 10).double()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                          weight_decay=weight_decay)
    from ..recording.recorder import TrajectoryRecorder

    rec = TrajectoryRecorder(model, opt, start=warmup, stop=warmup + n_steps, dtype=torch.float64)
    for _ in range(warmup + n_steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    rec.remove()
    x_star, H = _softmax_limit(float(weight_decay))
    return QuadraticRun(rec.trajectory(copy=True), x_star.clone(), H.clone(), float(weight_decay))


@functools.lru_cache(maxsize=None)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X / 16.0), torch.tensor(y)


@functools.lru_cache(maxsize=4)
def _softmax_limit(weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x* (650,), Hessian there): Newton's method on softmax_sgd's loss, weight then bias."""
    X, y = _digits()

    def loss(v: torch.Tensor) -> torch.Tensor:
        z = X @ v[:640].view(10, 64).T + v[640:]
        return torch.nn.functional.cross_entropy(z, y) + 0.5 * weight_decay * (v ** 2).sum()

    x = torch.zeros(650, dtype=torch.float64)
    for _ in range(50):
        g = torch.autograd.functional.jacobian(loss, x)
        H = torch.autograd.functional.hessian(loss, x)
        if float(g.norm()) < 1e-12:
            return x, H
        x = x - torch.linalg.solve(H, g)
    raise RuntimeError(f"Newton's method did not converge (gradient {float(g.norm()):.1e})")

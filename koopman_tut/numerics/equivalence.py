"""Three optimizers with known (non-)equivalences: the first experiment of Redman et al. (NeurIPS 2024).

Ghai, Lu & Hazan (2022, "Non-convex online learning via algorithmic equivalence",
arXiv:2205.15235): online mirror descent (OMD) with the log-barrier regularizer
R(x) = -sum(log x_i) and online gradient descent (OGD) on the reparameterized loss f(exp(u))
are equivalent under x = exp(u) (exactly in the small-step limit), while the bisection method
on the same loss is not. Redman et al. (arXiv:2302.09160, Fig. 2) recover this from Koopman
spectra; the setup here is theirs: f(x) = sum(tan x_i), d = 2, T = 100, eta = 1e-2, the box
[1/T, 1]^d, 25 starts on a 5 x 5 grid per algorithm, 4 delays, all modes, runs pooled.

One difference is this tutorial's choice: the authors' bisection returns as soon as f(z) is
exactly 0 (20 of the 25 starts, once float64 runs out of digits) and
leaves the rest of its preallocated run at 0, a jump to the origin that bisection does not
make; here a bisection that has found its root stays there (``at_root="stay"``, the default).
``at_root="zeros"`` runs it as their code does and gives their published spectrum
(:data:`PUBLISHED_BISECTION`).

Projections are exact: the Bregman divergence of R and the squared Euclidean distance are
separable and convex in each coordinate with their minimum at the unprojected point, so both
projections onto a box are coordinate-wise clipping (the authors minimize numerically with
L-BFGS-B, which reaches the same point). NumPy float64 only; no training stack involved.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .reals import is_finite, shown

T_STEPS, DIM, ETA = 100, 2, 1e-2
LOW = 1.0 / T_STEPS  # the box [1/T, 1]^d
# the eigenvalues Redman et al. published for OMD and OGD (4 delays, all 10 modes, 25 runs pooled: the
# *_eigs.npy files of their repository, william-redman/Identifying_Equivalent_Training_Dynamics), rounded here
# to 5 decimals: a spectrum that reproduces them lies within 5e-6 of each
PUBLISHED = {"OMD": (0.9979, 0.99644, 0.98379, 0.97988, 0.93197, 0.92458, 0.80117, 0.79254, 0.56513, 0.55814),
             "OGD": (1.00048, 0.99856, 0.99368, 0.98665, 0.94882, 0.93482, 0.81756, 0.79991, 0.57102, 0.55551)}
# and for bisection as their code runs it (``at_root="zeros"``), the six eigenvalues of modulus above 1e-3 in
# canonical order, to 5 decimals; their other four lie within 2e-4 of 0, fourth roots of rounding about a
# nilpotent block (the runs' jump to 0 and the zeros after it), different in every computation
PUBLISHED_BISECTION = (0.98024, 0.17922 + 0.46644j, 0.17922 - 0.46644j, 0.43982,
                       -0.20703 + 0.23192j, -0.20703 - 0.23192j)


def _check_run(start, lo: float, hi: float, name: str, steps=1, eta=ETA) -> np.ndarray:
    """A start in the box [lo, hi]^d as a 1-D float64 array, ``steps`` an integer >= 1 and ``eta`` a finite
    number > 0; errors name the argument."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not (is_finite(eta) and eta > 0):
        raise ValueError(f"eta must be a finite step size > 0, got {shown(eta)}")
    try:
        x = np.asarray(start, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a 1-D array of numbers, got {start!r}") from e
    if x.ndim != 1 or x.size == 0 or not (np.isfinite(x).all() and (x >= lo).all() and (x <= hi).all()):
        raise ValueError(f"{name} must be a non-empty 1-D array in the box [{lo:.4g}, {hi:.4g}]^d, got {start!r}")
    return x


def _sec2(x: np.ndarray) -> np.ndarray:
    return 1.0 / np.cos(x) ** 2  # d/dx tan x


def loss(x: np.ndarray) -> float:
    """f(x) = sum_i tan(x_i)."""
    return float(np.tan(x).sum())


def mirror_descent(x0: np.ndarray, steps: int = T_STEPS, eta: float = ETA) -> np.ndarray:
    """OMD with R(x) = -sum log x: y = (grad R)^-1(grad R(x) - eta grad f(x)), i.e.
    1/y = 1/x + eta sec^2(x), then the Bregman projection onto [1/T, 1]^d. Returns (d, steps) in x."""
    x = _check_run(x0, LOW, 1.0, "x0", steps, eta)
    out = [x]
    for _ in range(steps - 1):
        y = 1.0 / (1.0 / x + eta * _sec2(x))
        x = np.clip(y, LOW, 1.0)
        out.append(x)
    return np.stack(out, 1)


def gradient_descent(u0: np.ndarray, steps: int = T_STEPS, eta: float = ETA) -> np.ndarray:
    """OGD on f(exp(u)) (gradient exp(u) sec^2(exp(u))), Euclidean projection onto
    [log(1/T), 0]^d. Returns (d, steps), recorded in u (not mapped back to x)."""
    u = _check_run(u0, math.log(LOW), 0.0, "u0", steps, eta)
    out = [u]
    for _ in range(steps - 1):
        v = u - eta * np.exp(u) * _sec2(np.exp(u))
        u = np.clip(v, np.log(LOW), 0.0)
        out.append(u)
    return np.stack(out, 1)


def bisection(a0: np.ndarray, b0: np.ndarray, steps: int = T_STEPS, at_root: str = "stay") -> np.ndarray:
    """Bisection on f with whole vectors: z = (a + b) / 2 replaces a if f(z) < 0, b if f(z) > 0
    (f(a0) < 0 < f(b0) required). Returns (d, steps) in z.

    ``at_root``: what a run does once f(z) is exactly 0: "stay" at z (this tutorial's choice: the
    method has found its root), or "zeros", as the authors' code does (it returns, and the rest of
    its preallocated run keeps its initial zeros).
    """
    if at_root not in ("stay", "zeros"):
        raise ValueError(f"at_root must be 'stay' or 'zeros', got {at_root!r}")
    a, b = (_check_run(v, -np.pi / 2, np.pi / 2, k, steps) for k, v in (("a0", a0), ("b0", b0)))  # tan's branch
    if a.shape != b.shape:
        raise ValueError(f"a0 and b0 must have the same shape, got {a.shape} and {b.shape}")
    if not loss(a) < 0 < loss(b):
        raise ValueError(f"bisection needs f(a0) < 0 < f(b0), got f(a0)={loss(a):.3g}, f(b0)={loss(b):.3g}")
    z = (a + b) / 2
    out = np.zeros((a.size, steps))
    out[:, 0] = z
    for t in range(1, steps):
        fz = loss(z)
        if fz < 0:
            a = z
        elif fz > 0:
            b = z
        elif at_root == "zeros":
            break
        z = (a + b) / 2
        out[:, t] = z
    return out


def grid(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """(2, n*n) starts: np.meshgrid of np.linspace(lo, hi, n) in both coordinates, flattened."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n (starts per coordinate) must be an integer >= 1, got {n!r}")
    return np.reshape(np.meshgrid(np.linspace(lo, hi, n), np.linspace(lo, hi, n)), (2, n * n))


def equivalence_runs(n: int = 5, at_root: str = "stay") -> dict[str, list[np.ndarray]]:
    """The n*n trajectories (each (2, T) float64) of every algorithm, keyed "OMD", "OGD", "bisection".

    Starts: x0 in [0.1, 0.9]^2; u0 in [-2.3, -0.1]^2; a0 in [-4/3, -1/3]^2, b0 in [1/7, 8/7]^2.
    ``at_root``: :func:`bisection`'s, "stay" (this tutorial's) or "zeros" (the authors' code).
    """
    x0, u0 = grid(0.1, 0.9, n), grid(-2.3, -0.1, n)
    a0, b0 = grid(-4 / 3, -1 / 3, n), grid(1 / 7, 8 / 7, n)
    return {"OMD": [mirror_descent(x0[:, i]) for i in range(n * n)],
            "OGD": [gradient_descent(u0[:, i]) for i in range(n * n)],
            "bisection": [bisection(a0[:, i], b0[:, i], at_root=at_root) for i in range(n * n)]}

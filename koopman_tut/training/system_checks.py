"""Argument checks of the known-answer systems (:mod:`koopman_tut.training.systems`).

A system built from a bad argument would hand back a wrong known answer (an x* the window never
reaches, an empty window), so each argument is checked first and refused by name.
"""
from __future__ import annotations

import numpy as np

from ..numerics.optimizer_settings import contraction
from ..recording.recorder_checks import _check_int


def check_sizes(**sizes: tuple[object, int]) -> list[int]:
    """Each ``name=(value, minimum)`` as an int >= minimum, in order; TypeError / ValueError naming it."""
    return [_check_int(name, value, minimum) for name, (value, minimum) in sizes.items()]


def real_eigs(eigs, expected: str) -> np.ndarray:
    """``eigs`` as (k,) float64; TypeError "eigs must be ``expected``" for complex ones, text or None."""
    given = np.asarray(eigs)
    if given.dtype.kind not in "iuf":
        raise TypeError(f"eigs must be {expected}, got {given.dtype.name} {eigs!r:.100}")
    return given.astype(np.float64).reshape(-1)


def check_decaying(eigs) -> np.ndarray:
    """``eigs`` as (k,) float64 real eigenvalues inside the unit circle: the window's limit x* exists only then."""
    mu = real_eigs(eigs, "real eigenvalues with |mu| < 1")
    if not (np.abs(mu) < 1).all():  # NaN too
        raise ValueError(f"eigs must be real with |mu| < 1, got {mu.tolist()!r:.100}: a mode that does not decay "
                         f"never reaches x*, which is then not the window's limit")
    return mu


def check_contracts(s: int, h: np.ndarray, lr: float, beta: float, nesterov: bool, dampening: float) -> None:
    """ValueError unless every Hessian eigenvalue ``h`` > 0 and step ``s`` contracts the error along each."""
    if not (np.asarray(h) > 0).all():  # NaN too
        raise ValueError(f"hess_eigs must be > 0 (plus weight_decay, where given), got {np.min(h):g}: along a "
                         f"curvature <= 0 x_star is a saddle or flat, not the minimizer training goes to, at any lr")
    rho = contraction(h, lr, beta, nesterov, dampening)
    if not rho < 1:
        raise ValueError(f"lr={lr:g} with momentum={beta:g} (nesterov={nesterov}) makes step {s} expand the "
                         f"error along a Hessian eigenvalue (spectral radius {rho:.4g} >= 1): training diverges, "
                         f"and rounding, not x_star, decides where it goes; take a smaller lr")

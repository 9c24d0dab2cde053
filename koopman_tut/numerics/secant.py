"""The secant limit: where SGD is heading, from the gradients its recorded steps imply.

A window of torch.optim.SGD with a snapshot at every step says more than where the weights went:
undoing the optimizer turns each step into the gradient that made it. With the step's direction
s_t = -(x_{t+1} - x_t) / lr_t (lr_t the learning rate of the step leaving x_t):

* plain SGD: s_t = g(x_t);
* heavy ball: s_t is the momentum buffer, s_t = beta s_{t-1} + (1 - dampening) g(x_t), so
  g_t = s_t - beta s_{t-1} = (1 - dampening) g(x_t), at p_t = x_t;
* Nesterov (dampening 0): s_t = g(x_t) + beta b_t, so g_t = s_t - beta s_{t-1} =
  (1 + beta) g(x_t) - beta g(x_{t-1}): the gradient at p_t = x_t + beta (x_t - x_{t-1}) on a
  quadratic (to first order elsewhere).

On a quadratic the gradients' differences are the Hessian times the points' differences,
g_{j+1} - g_j = H (p_{j+1} - p_j), and g(x*) = 0, so x* = p_last - dP c where dG c = g_last (least
squares): a Newton step with the Hessian known on the span of the steps, the multisecant
quasi-Newton condition (Nocedal & Wright, "Numerical Optimization", 2nd ed. 2006, ch. 6; Fang &
Saad 2009, "Two classes of multisecant methods for nonlinear acceleration", Numer. Linear Algebra
Appl. 16). It needs only the directions the steps span (8 for a rank-8 Hessian, with or without
momentum), where the Koopman limit needs every mode of the iteration (16 under momentum).

It is exact on a quadratic by construction. On a minibatch window each g_t is a minibatch
gradient: the least squares then fits their noise, and only measurement says how well it
predicts (notebook 05 and ``benchmarks/secant_limit.py``). Everything is computed from the
differences' factor (one pass over W, or a float64 QR for small W) and one more pass for the
combination of snapshots, as MPE and RRE are.
"""
from __future__ import annotations

import math

import torch

from .reduced import Factor, difference_factor, numerical_tol
from .snapshots import difference_matrix

Tensor = torch.Tensor


def secant_combination(W: Tensor, meta: dict, stride: int, factor: Factor | None = None) -> Tensor:
    """(T,) float64 weights c, summing to 1, with the secant limit = W @ c.

    Parameters
    ----------
    W : (n_features, T) snapshots, one per optimizer step.
    meta : a Trajectory's ``meta`` (optimizer, lr / lrs, momentum, dampening, nesterov, groups).
    stride : optimizer steps between snapshots (must be 1).
    factor : W's differences' factor when the caller has it (no pass over W then).
    """
    T = W.shape[-1]
    why = unreadable(meta, stride, T)
    if why:
        raise ValueError(f"method='secant' {why}")
    beta, lrs = float(meta.get("momentum") or 0.0), _lrs(meta, T)
    nesterov = bool(meta.get("nesterov")) and beta > 0  # dampening scales every gradient alike: no part here
    first = 1 if beta else 0  # the first gradient the window implies
    # in the coordinates of the steps D = [d_0 .. d_{T-2}] (n, T-1): s = D diag(-1/lr)
    S = torch.diag(-1.0 / lrs)  # (T-1, T-1)
    KG = S[:, first:] - beta * S[:, :-1] if beta else S  # (T-1, m) gradients g_first .. g_{T-2}
    m = KG.shape[1]
    E = torch.eye(T - 1, dtype=torch.float64)
    KdP = E[:, first:-1]  # (T-1, m-1) the points' steps p_{t+1} - p_t = d_t, t = first .. T-3
    if nesterov:  # p_t = x_t + beta d_{t-1}: p_{t+1} - p_t = d_t + beta (d_t - d_{t-1})
        KdP = KdP + beta * (KdP - E[:, first - 1:-2])
    KdG = KG[:, 1:] - KG[:, :-1]  # (T-1, m-1)
    f = difference_factor(W, 0, None, None, "auto") if factor is None else factor
    A, b = f.Rd @ KdG, f.Rd @ KG[:, -1]
    s_max = float(torch.linalg.matrix_norm(f.Rd, 2))
    s_A = float(torch.linalg.matrix_norm(A, 2)) if A.numel() else 0.0
    tol = numerical_tol(s_max, T - 2, f) * float(torch.linalg.matrix_norm(KdG, 2))  # D's rounding through KdG
    coef = min_norm_lstsq(A, b, tol / s_A) if s_A > tol else torch.zeros(m - 1, dtype=torch.float64)
    # x* = p_last - dP coef; p_last = x_{T-2} (+ beta d_{T-3} under Nesterov), all as weights of W
    M = difference_matrix(T)  # (T, T-1): D = W M
    c = torch.zeros(T, dtype=torch.float64)
    c[T - 2] = 1
    if nesterov:
        c += beta * M[:, T - 3]
    return c - M @ (KdP @ coef)


def unreadable(meta: dict, stride: int, T: int) -> str | None:
    """Why the secant cannot read the gradients back from this recording (None when it can)."""
    opt = meta.get("optimizer")
    if opt != "SGD":
        return (f"undoes torch.optim.SGD's steps and needs a Trajectory recorded from it (traj.meta['optimizer'] "
                f"== 'SGD'), got {opt!r}" + (": pass a Trajectory, not a snapshot matrix" if opt is None else ""))
    if stride != 1:
        return (f"needs a snapshot at every optimizer step (each step gives one gradient), got snapshots {stride} "
                f"steps apart; record with every=1")
    groups = meta.get("groups") or [meta]
    keys = ("momentum", "dampening", "nesterov")
    if len({tuple(float(g.get(k) or 0) for k in keys) for g in groups}) > 1:
        return (f"needs one momentum, dampening and nesterov for every parameter group, got "
                f"{[{k: g.get(k) for k in keys} for g in groups]}")
    group_lrs = meta.get("group_lrs")
    if (any(len(set(row)) > 1 for row in group_lrs) if group_lrs is not None
            else len({g.get("lr") for g in groups}) > 1):
        return ("needs one learning rate for every parameter group at each step (the gradient is the step over "
                "its lr); this window's groups have different ones")
    lr = _lrs(meta, T)
    if not bool(((lr > 0) & (lr < math.inf)).all()):
        return f"needs a positive, finite learning rate at every step (traj.meta['lrs'] / ['lr']), got {lr.tolist()[:8]}"
    first = 1 if float(meta.get("momentum") or 0.0) else 0
    if T - first < 3:
        return f"needs at least {3 + first} snapshots{' under momentum' if first else ''}, got {T}"
    return None


def _lrs(meta: dict, T: int) -> Tensor:
    """(T-1,) float64: the lr of each step, the step t -> t+1 logged with snapshot t+1 (``meta['lrs']``)."""
    lrs = meta.get("lrs")
    if lrs is not None and len(lrs) == T:
        return torch.tensor([float(v) for v in lrs[1:]], dtype=torch.float64)
    return torch.full((T - 1,), float(meta.get("lr") or 0.0), dtype=torch.float64)


def gap(W: Tensor, meta: dict, stride: int, factor: Factor, coef: Tensor) -> float:
    """||W coef - secant limit||, from the differences' factor (no pass over W); ``coef`` (T,)
    float64 sums to 1. ValueError where the secant cannot read the recording (:func:`unreadable`)."""
    v = coef - secant_combination(W, meta, stride, factor)  # sums to 0: W v = D y, y = -cumsum(v)[:-1]
    return float(torch.linalg.vector_norm(factor.Rd @ -torch.cumsum(v, 0)[:-1]))


def min_norm_lstsq(A: Tensor, b: Tensor, rcond: float) -> Tensor:
    """Minimum-norm least squares, singular values below rcond * s_max of A treated as zero."""
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)
    keep = s > rcond * (float(s[0]) if s.numel() else 0.0)
    return Vh[keep].mH @ ((U[:, keep].mH @ b) / s[keep])

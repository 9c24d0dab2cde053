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

It is exact on a quadratic in exact arithmetic. In floating point, undoing the optimizer divides
by the lr and differences the steps twice, which amplifies the snapshots' rounding: directions
whose gradient differences fall below that bound are cut (float32 recordings whose steps are a few
roundings of the parameters lose most of them), and the step misses what they carried. The fit's
``misfit``, the share of the last gradient the gradients' differences leave unexplained, reports
that, and a window too short for the directions training moves in; above ``TRUST_TOL`` the estimate
warns (:class:`SecantFit`). On a minibatch window each g_t is a minibatch gradient: the least squares
then fits their noise, and only measurement says how well it predicts (notebook 05 and
``benchmarks/secant_limit.py``). Everything is computed from the differences' factor (one pass over
W, or a float64 QR for small W) and one more pass for the combination of snapshots, as MPE and RRE are.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import torch

from .reduced import Factor, difference_factor, numerical_tol
from .snapshots import difference_matrix
from .trust import TRUST_TOL, UntrustedLimitWarning

Tensor = torch.Tensor


@dataclass
class SecantFit:
    """The secant limit of a window as weights of its snapshots, and how far it can be believed.

    Attributes
    ----------
    coef : (T,) float64 weights, summing to 1: the secant limit is W @ coef.
    misfit : ||dG c - g_last|| / ||g_last||, the share of the last gradient the gradients'
        differences leave unexplained: 0 on a quadratic whose steps span every direction it moves
        in; more where the window is too short for them, where directions are lost below the
        data's rounding once the optimizer is undone (the least squares cuts them at a bound), or
        where the gradients carry minibatch noise or curvature that changes along the window.
    conditioning : how far refits to the differences' factor plus two rounding-sized random
        perturbations move the limit, relative to ||x* - x_{T-1}|| (as check 4 of
        :mod:`koopman_tut.numerics.trust`): the slow directions, small in gradient units, carry
        most of the distance left, and a fit that rounding moves does not pin them.
    """

    coef: Tensor
    misfit: float
    conditioning: float = 0.0

    @property
    def reliable(self) -> bool:
        return self.misfit <= TRUST_TOL and self.conditioning <= TRUST_TOL


def secant_fit(W: Tensor, meta: dict, stride: int, factor: Factor | None = None) -> SecantFit:
    """The secant limit of W (n_features, T), one snapshot per optimizer step, from a recording's
    ``meta`` (optimizer, lr / lrs, momentum, nesterov, groups); ``factor`` is W's plain
    differences' factor (delays 0) when the caller has it (no pass over W then)."""
    T = W.shape[-1]
    why = unreadable(meta, stride, T)
    if why:
        raise ValueError(f"method='secant' {why}")
    beta, lrs = float(meta.get("momentum") or 0.0), _lrs(meta, T)
    nesterov = bool(meta["nesterov"]) if beta > 0 and "nesterov" in meta else False
    first = 1 if beta else 0  # the first gradient the window implies (dampening scales them all alike)
    # in the coordinates of the steps D = [d_0 .. d_{T-2}] (n, T-1): s = D diag(-1/lr)
    S = torch.diag(-1.0 / lrs)  # (T-1, T-1)
    KG = S[:, first:] - beta * S[:, :-1] if beta else S  # (T-1, m) gradients g_first .. g_{T-2}
    E = torch.eye(T - 1, dtype=torch.float64)
    KdP = E[:, first:-1]  # (T-1, m-1) the points' steps p_{t+1} - p_t = d_t, t = first .. T-3
    if nesterov:  # p_t = x_t + beta d_{t-1}: p_{t+1} - p_t = d_t + beta (d_t - d_{t-1})
        KdP = KdP + beta * (KdP - E[:, first - 1:-2])
    KdG = KG[:, 1:] - KG[:, :-1]  # (T-1, m-1)
    f = difference_factor(W, 0, None, None, "auto") if factor is None else factor
    floor = numerical_tol(float(torch.linalg.matrix_norm(f.Rd, 2)), T - 2, f)  # D's rounding
    tol = floor * float(torch.linalg.matrix_norm(KdG, 2))  # D's rounding through KdG: a bound

    def solve(R: Tensor) -> tuple[Tensor, float]:  # (x* - p_last in D's coordinates (T-1,), misfit)
        A, b = R @ KdG, R @ KG[:, -1]
        s_A = float(torch.linalg.matrix_norm(A, 2))
        coef = min_norm_lstsq(A, b, tol / s_A) if s_A > tol else torch.zeros(KdG.shape[1], dtype=torch.float64)
        misfit = float(torch.linalg.vector_norm(A @ coef - b) / torch.linalg.vector_norm(b)) if b.any() else 0.0
        return -KdP @ coef, misfit

    y, misfit = solve(f.Rd)
    # x* = p_last + D y; p_last = x_{T-2} (+ beta d_{T-3} under Nesterov) = x_{T-1} - D u
    u = E[:, T - 2] - (beta * E[:, T - 3] if nesterov else 0.0)
    level = max(f.data_floor, f.gram_floor if f.gram_route else 0.0)  # as check 4 of .trust perturbs
    g, moves = torch.Generator().manual_seed(0), []
    for _ in range(2 if level > 0 else 0):
        delta = torch.randn(f.Rd.shape, generator=g, dtype=torch.float64)
        moves.append(float(torch.linalg.vector_norm(f.Rd @ (y - solve(f.Rd + delta * (level / delta.norm()))[0]))))
    size = float(torch.linalg.vector_norm(f.Rd @ (y - u)))  # ||x* - x_{T-1}||
    M = difference_matrix(T)  # (T, T-1): D = W M
    c = torch.zeros(T, dtype=torch.float64)
    c[T - 1] = 1
    return SecantFit(c + M @ (y - u), misfit, max(moves, default=0.0) / size if size > 0 else 0.0)


def warn_unreliable(fit: SecantFit, stacklevel: int = 3) -> None:
    """UntrustedLimitWarning saying why the secant limit cannot be believed (nothing when it can)."""
    if fit.reliable:
        return
    why = []
    if not fit.misfit <= TRUST_TOL:
        why.append(f"the gradients' differences leave {fit.misfit:.2g} of the last gradient unexplained (a window "
                   f"too short for the directions training moves in, minibatch noise, or curvature that changes "
                   f"along the window)")
    if not fit.conditioning <= TRUST_TOL:
        why.append(f"perturbations as small as the data's rounding move it by {fit.conditioning:.2g} of its size "
                   f"(directions lost once the optimizer is undone: record in float64)")
    warnings.warn(UntrustedLimitWarning(f"the secant limit cannot be trusted (up to {TRUST_TOL:g}): "
                                        + "; and ".join(why)), stacklevel=stacklevel)


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
    for where, g in [("traj.meta", meta)] + [(f"traj.meta['groups'][{i}]", g) for i, g in enumerate(groups)]:
        if not isinstance(g.get("nesterov", False), bool):
            return f"needs {where}['nesterov'] True or False, got {g['nesterov']!r}"
        if not all(isinstance(g.get(k) or 0, (int, float)) for k in ("momentum", "dampening")):
            return (f"needs {where}['momentum'] and ['dampening'] numbers, got {g.get('momentum')!r}, "
                    f"{g.get('dampening')!r}")
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
        return (f"needs a positive, finite learning rate at every step (traj.meta['lrs'] / ['lr']), "
                f"got {lr.tolist()[:8]}")
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


def plain_factor(f: Factor, delays: int) -> Factor:
    """The plain differences' factor from a delay-embedded one: Rd, with the floors of delays 0
    (the embedded ones carry sqrt(delays + 1))."""
    k = math.sqrt(delays + 1)
    return replace(f, R=f.Rd, data_floor=f.data_floor / k, gram_floor=f.gram_floor / k)


def gap(W: Tensor, fit: SecantFit, factor: Factor, coef: Tensor) -> float:
    """||W coef - W fit.coef||, from the plain differences' factor (no pass over W); ``coef`` (T,)
    float64 sums to 1 as ``fit.coef`` does."""
    v = coef - fit.coef  # sums to 0: W v = D y, y = -cumsum(v)[:-1]
    return float(torch.linalg.vector_norm(factor.Rd @ -torch.cumsum(v, 0)[:-1]))


def min_norm_lstsq(A: Tensor, b: Tensor, rcond: float) -> Tensor:
    """Minimum-norm least squares, singular values below rcond * s_max of A treated as zero."""
    U, s, Vh = torch.linalg.svd(A, full_matrices=False)
    keep = s > rcond * (float(s[0]) if s.numel() else 0.0)
    return Vh[keep].mH @ ((U[:, keep].mH @ b) / s[keep])

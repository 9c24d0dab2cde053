"""The secant limit: where SGD is heading, from the gradients its recorded steps imply.

A window of torch.optim.SGD with a snapshot at every step says more than where the weights went:
undoing the optimizer turns each step into the gradient that made it. With the step's direction
s_t = -(x_{t+1} - x_t) / lr_t, and lr_t, beta_t (momentum), dampening_t those of the step leaving
x_t (logged per snapshot, :mod:`koopman_tut.recording.settings_log`: a schedule may change them):

* plain SGD: s_t = g(x_t);
* heavy ball: s_t is the momentum buffer, s_t = beta_t s_{t-1} + (1 - dampening_t) g(x_t), so
  g(x_t) = (s_t - beta_t s_{t-1}) / (1 - dampening_t);
* Nesterov (dampening 0): s_t = g(x_t) + beta_t b_t with the buffer b_t = beta_t b_{t-1} + g(x_t).
  Eliminating the buffers, s_t / beta_t - b s_{t-1} = a g(x_t) - b g(x_{t-1}) with
  a = (1 + beta_t) / beta_t, b = beta_t / beta_{t-1}: (a - b) times the gradient at
  p_t = x_t + c_t (x_t - x_{t-1}), c_t = b / (a - b), on a quadratic (to first order elsewhere).
  With a constant momentum that is s_t - beta s_{t-1} = g(p_t), p_t = x_t + beta (x_t - x_{t-1}).
  A momentum that jumps so that a ~ b reads the gradient far beyond x_t (c_t > 100): refused.

Each step's undoing needs the buffer the step before left: a buffer replaced inside the window (the
optimizer's state cleared or loaded: ``restarts`` in the settings log) is refused, naming the
window after it; so are settings that change what is differentiated (the weight decay, Nesterov).

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
warns (:class:`SecantFit`). A misfit in gradient units understates the distance the slow directions
carry, so where it lies above its rounding bound the fit of the window without its last snapshot must
also agree (``spread``). On a minibatch window each g_t is a minibatch gradient: the least squares
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
from .optimizer_settings import check_settings, other_momentum, settings_at

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
    spread : how far the secant limit of the window without its last snapshot lies from this one,
        relative to ||x* - x_{T-1}|| (as check 4's refit): the misfit is in gradient units, where the
        slow directions a short window misses are small, so a misfit of 0.02-0.04 let limits 21-52% off
        pass (heavy ball and Nesterov on a rank-6 quadratic, 7-8 snapshots; a review); inf where that
        window is too short for a fit; 0 where the misfit lies within its rounding bound (the steps'
        rounding through the gradients), which an exact fit leaves. A bias both fits share is not seen,
        and that bound grows with the fit's coefficients, so some far-off fits skip the refit: measured in
        docs/trust.md ("The secant limit's own check").
    """

    coef: Tensor
    misfit: float
    conditioning: float = 0.0
    spread: float = 0.0

    @property
    def resolved(self) -> bool:
        """Misfit and conditioning within TRUST_TOL (check 6 of the Koopman limit reads the secant then)."""
        return self.misfit <= TRUST_TOL and self.conditioning <= TRUST_TOL

    @property
    def reliable(self) -> bool:
        return self.resolved and self.spread <= TRUST_TOL


def secant_fit(W: Tensor, meta: dict, stride: int, factor: Factor | None = None) -> SecantFit:
    """The secant limit of W (n_features, T), one snapshot per optimizer step, from a recording's
    ``meta`` (optimizer, lr / lrs, momentum, nesterov, groups); ``factor`` is W's plain
    differences' factor (delays 0) when the caller has it (no pass over W then)."""
    T = W.shape[-1]
    why = unreadable(meta, stride, T)
    if why:
        raise ValueError(f"method='secant' {why}")
    lrs, beta, damp, nesterov = _steps(meta, T)
    f = difference_factor(W, 0, None, None, "auto") if factor is None else factor
    z, misfit, conditioning, noise = _fit(f, lrs, beta, damp, nesterov, perturb=True)
    first = 1 if bool((beta > 0).any()) else 0
    # the window without its last snapshot: its fit against this one, unless the last gradient is explained to
    # within the rounding bound (then no direction it moves in is unseen: exact on a quadratic)
    spread = 0.0 if misfit <= noise else math.inf
    if misfit > noise and T - 1 - first >= 3:
        zs = _fit(replace(f, Rd=f.Rd[:, :-1]), lrs[:-1], beta[:-1], damp[:-1], nesterov, perturb=False)[0]
        size = float(torch.linalg.vector_norm(f.Rd @ z))  # ||x* - x_{T-1}||; x*_s - x_{T-1} = D [zs; -1]
        moved = float(torch.linalg.vector_norm(f.Rd @ (z - torch.cat([zs, zs.new_tensor([-1.0])]))))
        spread = moved / size if size > 0 else 0.0 if moved == 0 else math.inf
    M = difference_matrix(T)  # (T, T-1): D = W M
    c = torch.zeros(T, dtype=torch.float64)
    c[T - 1] = 1
    return SecantFit(c + M @ z, misfit, conditioning, spread)


def _fit(f: Factor, lrs: Tensor, beta: Tensor, damp: Tensor, nesterov: bool, perturb: bool
         ) -> tuple[Tensor, float, float, float]:
    """(x* - x_{T-1} in the coordinates of the steps D (T-1,), misfit, conditioning, the misfit's rounding) of the window whose
    steps' factor is ``f.Rd`` (., T-1) and whose steps have ``lrs``, ``beta``, ``damp`` (T-1,)."""
    T = lrs.numel() + 1
    first = 1 if bool((beta > 0).any()) else 0  # the first gradient the window implies
    # in the coordinates of the steps D = [d_0 .. d_{T-2}] (n, T-1): s = D diag(-1/lr)
    S = torch.diag(-1.0 / lrs)  # (T-1, T-1)
    c = torch.zeros(T - 1, dtype=torch.float64)  # p_j = x_j + c_j d_{j-1}: the point whose gradient g_j is
    if not first:
        KG = S  # (T-1, m) gradients g_0 .. g_{T-2}
    elif not nesterov:  # g_j = (s_j - beta_j s_{j-1}) / (1 - dampening_j), at x_j
        KG = (S[:, 1:] - beta[1:] * S[:, :-1]) / (1 - damp[1:])
    else:  # s_j / beta_j - b_j s_{j-1} = (a_j - b_j) g(p_j) (module notes), j = 1 .. T-2
        a, b = _nesterov(beta)
        KG = (S[:, 1:] / beta[1:] - b * S[:, :-1]) / (a - b)
        c[1:] = b / (a - b)  # beta_j when the momentum is constant
    E = torch.eye(T - 1, dtype=torch.float64)
    j = torch.arange(first, T - 2)
    KdP = E[:, j] * (1 + c[j + 1])  # (T-1, m-1) the points' steps p_{j+1} - p_j = (1 + c_{j+1}) d_j - c_j d_{j-1}
    if nesterov and first:
        KdP = KdP - c[j] * E[:, j - 1]
    KdG = KG[:, 1:] - KG[:, :-1]  # (T-1, m-1)
    floor = numerical_tol(float(torch.linalg.matrix_norm(f.Rd, 2)), T - 2, f)  # D's rounding
    tol = floor * float(torch.linalg.matrix_norm(KdG, 2))  # D's rounding through KdG: a bound

    def solve(R: Tensor) -> tuple[Tensor, float, float]:  # (x* - p_last in D's coordinates (T-1,), misfit, its
        A, b = R @ KdG, R @ KG[:, -1]                     # rounding: D's through the gradients, as a share of b)
        s_A, nb = float(torch.linalg.matrix_norm(A, 2)), float(torch.linalg.vector_norm(b))
        coef = min_norm_lstsq(A, b, tol / s_A) if s_A > tol else torch.zeros(KdG.shape[1], dtype=torch.float64)
        misfit = float(torch.linalg.vector_norm(A @ coef - b)) / nb if nb > 0 else 0.0
        noise = (tol * float(coef.norm()) + floor * float(KG[:, -1].norm())) / nb if nb > 0 else 0.0
        return -KdP @ coef, misfit, noise

    y, misfit, noise = solve(f.Rd)
    # x* = p_last + D y; p_last = x_{T-2} + c_{T-2} d_{T-3} = x_{T-1} - D u
    u = E[:, T - 2] - (c[T - 2] * E[:, T - 3] if nesterov and first else 0.0)
    level = max(f.data_floor, f.gram_floor if f.gram_route else 0.0)  # as check 4 of .trust perturbs
    g, moves = torch.Generator().manual_seed(0), []
    for _ in range(2 if level > 0 and perturb else 0):
        delta = torch.randn(f.Rd.shape, generator=g, dtype=torch.float64)
        moves.append(float(torch.linalg.vector_norm(f.Rd @ (y - solve(f.Rd + delta * (level / delta.norm()))[0]))))
    size = float(torch.linalg.vector_norm(f.Rd @ (y - u)))  # ||x* - x_{T-1}||
    return y - u, misfit, max(moves, default=0.0) / size if size > 0 else 0.0, noise


def warn_unreliable(fit: SecantFit, stacklevel: int = 3) -> None:
    """UntrustedLimitWarning saying why the secant limit cannot be believed (nothing when it can)."""
    if fit.reliable:
        return
    why = []
    if not fit.misfit <= TRUST_TOL:
        why.append(f"the gradients' differences leave {fit.misfit:.2g} of the last gradient unexplained (a window "
                   f"too short for the directions training moves in, minibatch noise, or curvature that changes "
                   f"along the window)")
    if not fit.spread <= TRUST_TOL:
        why.append("the window without its last snapshot puts it " + (f"{fit.spread:.2g} of its size away" if
                   math.isfinite(fit.spread) else "nowhere (too short for a fit)") + " (a window too short for the "
                   "slow directions, which are small in gradient units: record more snapshots)")
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
    check_settings(meta)  # malformed settings raise, naming the field
    if other_momentum(meta):
        return ("reads each gradient as a function of the recorded parameters, but an optimizer group holding none "
                "of them has momentum (traj.meta['other_momentum']) and moves parameters the gradients depend on: "
                "record every trained parameter, or use method='koopman' (delay-embedded for this)")
    groups = meta.get("groups") or [meta]
    steps = [settings_at(meta, k) for k in range(1, T)] if "group_settings" in meta else [groups]
    keys = ("momentum", "dampening", "nesterov")
    for k, row in enumerate(steps):
        if len({tuple(float(g.get(key) or 0) for key in keys) for g in row}) > 1:
            return (f"needs one momentum, dampening and nesterov for every parameter group, got "
                    f"{[{key: g.get(key) for key in keys} for g in row]}"
                    + (f" for the step leaving snapshot {k}" if len(steps) > 1 else ""))
    _, beta, damp, nesterov = _steps(meta, T)
    wds = {float(row[0].get("weight_decay") or 0) for row in steps}
    if len(wds) > 1 or len({bool(row[0].get("nesterov")) for row in steps}) > 1:
        return (f"needs one weight decay and one nesterov flag along the window (a gradient of one loss), got "
                f"weight decays {sorted(wds)[:4]} and a nesterov flag that changes")
    if bool((beta > 0).any()) and not bool((beta > 0).all()):
        return "needs a momentum > 0 at every step of the window or at none (a buffer restarted cannot be undone)"
    restarts = [tuple(g.get("restarts") or 0 for g in row) for row in steps]
    moved = next((k for k in range(1, len(restarts)) if restarts[k] != restarts[0]), None)
    if bool((beta > 0).any()) and moved is not None:  # steps[k] left snapshot k: that step met a new buffer
        return (f"needs one momentum buffer along the window: it was replaced (a restart, or "
                f"optimizer.load_state_dict) by the step leaving snapshot {moved}, which the momentum "
                f"recursion does not give; take the window from there, traj.window({moved})")
    if nesterov and T > 2:
        a, b = _nesterov(beta)
        c = (b / (a - b)).abs()
        if not float(c.max()) <= 100:  # the point p_t a gradient is read at lies c_t steps beyond x_t
            j = int(c.argmax()) + 1
            return (f"needs a Nesterov momentum that changes gently between steps: from {float(beta[j - 1]):g} to "
                    f"{float(beta[j]):g} at the step leaving snapshot {j}, the gradient is read {float(c[j - 1]):.3g} "
                    f"steps beyond it (at most 100), where rounding decides it")
    if not bool((damp < 1).all()) or (nesterov and bool((damp != 0).any())):
        return f"needs dampening < 1 (0 under Nesterov, as torch.optim.SGD does), got {sorted(set(damp.tolist()))[:4]}"
    group_lrs = meta.get("group_lrs")
    if (any(len(set(row)) > 1 for row in group_lrs) if group_lrs is not None
            else len({g.get("lr") for g in groups}) > 1):
        return ("needs one learning rate for every parameter group at each step (the gradient is the step over "
                "its lr); this window's groups have different ones")
    lr = _lrs(meta, T)
    if not bool(((lr > 0) & (lr < math.inf)).all()):
        return (f"needs a positive, finite learning rate at every step (traj.meta['lrs'] / ['lr']), "
                f"got {lr.tolist()[:8]}")
    first = 1 if bool((beta > 0).any()) else 0
    if T - first < 3:
        return f"needs at least {3 + first} snapshots{' under momentum' if first else ''}, got {T}"
    return None


def _lrs(meta: dict, T: int) -> Tensor:
    """(T-1,) float64: the lr of each step, the step t -> t+1 logged with snapshot t+1 (``meta['lrs']``)."""
    lrs = meta.get("lrs")
    if lrs is not None and len(lrs) == T:
        return torch.tensor([float(v) for v in lrs[1:]], dtype=torch.float64)
    return torch.full((T - 1,), float(meta.get("lr") or 0.0), dtype=torch.float64)


def _steps(meta: dict, T: int) -> tuple[Tensor, Tensor, Tensor, bool]:
    """(lr, momentum, dampening) (T-1,) float64 of each step, logged with the snapshot it leads to, and
    the Nesterov flag; the top-level settings where none are logged per snapshot."""
    if "group_settings" in meta:
        rows = [settings_at(meta, k)[0] for k in range(1, T)]
    else:
        rows = [meta] * (T - 1)
    beta = torch.tensor([float(g.get("momentum") or 0.0) for g in rows], dtype=torch.float64)
    damp = torch.tensor([float(g.get("dampening") or 0.0) for g in rows], dtype=torch.float64)
    return _lrs(meta, T), beta, damp, bool(rows[-1].get("nesterov")) if bool((beta > 0).any()) else False


def _nesterov(beta: Tensor) -> tuple[Tensor, Tensor]:
    """(a, b) (T-2,) of the steps 1 .. T-2 under Nesterov: a = (1 + beta_t) / beta_t, b = beta_t / beta_{t-1}."""
    return (1 + beta[1:]) / beta[1:], beta[1:] / beta[:-1]


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

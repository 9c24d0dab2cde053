"""Where a trajectory is heading: its limit and its forecast, from DMD of its (delay-embedded) differences.

Treat a window of training as an affine map theta(t+1) = A theta(t) + c (linear dynamics
plus a fixed point; the Koopman view of training near a stable fixed point, Redman et al.
ICLR 2022). The successive differences d(t) = theta(t+1) - theta(t) then evolve linearly,
d(t+1) = A d(t), with no eigenvalue-1 term to find. Exact DMD of the differences (Tu et
al. 2014) gives the reduced operator A~ = U^H Y V S^-1 on X = [d_0 .. d_{T-3}] = U S V^H,
Y = [d_1 .. d_{T-2}]. The future, anchored at the last observed difference, is a geometric sum:

    theta(T-1+h) = theta(T-1) + Y V S^-1 sum_{j<h} A~^j U^H d_{T-2}
    theta*       = theta(T-1) + Y V S^-1 (I - A~)^-1 U^H d_{T-2}          (h -> inf)

This is vector extrapolation (MPE / RRE; Smith, Ford and Sidi 1987, SIAM Rev. 29) in Koopman terms; :mod:`.limits` holds them.

**Momentum.** Heavy ball and Nesterov are second order in theta, theta(t+1) = theta(t) + beta (theta(t) -
theta(t-1)) - lr g, so an affine model in theta alone is not exact. With ``delays=1`` the model runs on z(t) =
[theta(t); theta(t-1)], where the recursion is first order, and the limit, forecast and gradient are the theta
block of z's. Its Gram is a sum of shifted blocks of the plain one (:func:`.reduced.delay_gram`): no second pass.

**Conditioning.** A mode with per-snapshot eigenvalue mu is amplified by 1 / |1 - mu| (the ``gain``). The limit
is solved directly, (I - A~) w = U^H d_{T-2}. Modes within ``drift_tol`` of 1, or with |mu| >= 1, have no finite
limit: they are summed over ``max_horizon`` snapshots (|mu| > 1 projected onto the unit circle), a
:class:`DriftWarning` names them and the limit is not trusted. A forecast h snapshots ahead (finite h) is the
model's own: every mode, a growing one included, is summed over the h snapshots with its fitted eigenvalue
(refused where that overflows). A mode within 0.1% of ``drift_tol`` of that boundary (``EDGE``) keeps its finite
limit: data do not resolve an eigenvalue finer, and lr h = 1e-3 puts a convergent mode on it.

Every estimate carries a trust check computed from the window alone (:mod:`koopman_tut.numerics.trust`).
"""
from __future__ import annotations

import math
import numbers
import warnings

import torch

from .dmd import _check_svd_rank
from .dmd_checks import no_steps_reason
from .finite import all_finite, outside_stacklevel
from .still import is_still, still_estimate
from .dmd_result import geometric_sums, powers
from .limit_inputs import check_warn
from .distributed import global_rows
from .reduced import Reduced, affine_rank, difference_factor, norm, numerical_rank, untruncated
from .secant import gap, plain_factor, secant_fit, unreadable
from .optimizer_settings import has_momentum, momentum_delays, setting_drift  # noqa: F401 (re-exported)
from .matmul import matmul_chunked
from .snapshots import as_snapshots, difference_matrix
from .step_fit import step_fit
from .trust import RESIDUAL_TOL, ROUNDING_STD, DriftWarning, Extrapolation, UntrustedLimitWarning, warn_untrusted  # noqa: F401

Tensor = torch.Tensor
HOLDOUT_FRACTION = 0.1  # share of the differences the trust check holds out
PERTURBATIONS = 2  # rounding-sized perturbations of the window the fit is redone on (trust check 4)
EDGE = 1e-3  # a mode drifts only when |1 - mu| < (1 - EDGE) drift_tol: ties keep the finite limit


class AffineModel:
    """The reduced affine Koopman model of a window, optionally delay-embedded.

    Parameters
    ----------
    W : (n_features, n_snapshots), T >= 3 + delays, any real float dtype, any device (not copied).
    svd_rank : PyDMD's meanings, applied to the (embedded) differences; 0 (Gavish-Donoho) uses
        one rule on every route (:func:`koopman_tut.numerics.reduced.affine_rank`).
    acc : optional :func:`.snapshots.deviation_gram` of W (summed over ranks); ``sacc``, the
        :func:`.snapshots.step_gram`, is the more accurate one (the Gram route's when neither is given).
    group : torch.distributed group when each rank holds its own rows of W.
    delays : 0 (state theta(t)) or k >= 1 (state [theta(t); ..; theta(t-k)]; 1 for momentum).
    method : "auto" (QR of the differences when W is small, else the Gram), "svd" (QR in float64)
        or "gram" (the one-pass Gram route; a second pass where a float64 window holds modes finer
        than the Gram resolves, :mod:`koopman_tut.numerics.refine`).
    optimizer : (a Trajectory's meta, steps between snapshots[, each group's rows]) when W was recorded,
        for checks 6 (the secant limit) and 7 (settings that change inside the window) of :mod:`.trust`.
    """

    def __init__(self, W, svd_rank: int | float = -1, acc: Tensor | None = None, group=None,
                 delays: int = 0, method: str = "auto", sacc: Tensor | None = None,
                 optimizer: tuple[dict, int] | None = None):
        if isinstance(delays, bool) or not isinstance(delays, numbers.Integral) or delays < 0:
            raise ValueError(f"delays must be an integer >= 0, got {delays!r}")
        if method not in ("auto", "gram", "svd"):
            raise ValueError(f"method must be 'auto', 'gram' or 'svd', got {method!r}")
        if method == "svd" and group is not None:
            raise ValueError("method='svd' needs all rows in one process; with group= use 'gram' or 'auto'")
        W = as_snapshots(W, min_snapshots=3, min_rows=0 if group is not None else 1)  # a rank may hold none
        if W.ndim != 2 or W.shape[-1] < 3 + delays:
            raise ValueError(f"the window must have shape (n_features, n_snapshots) with at least delays + 3 = "
                             f"{3 + delays} snapshots (delays={delays}), got {tuple(W.shape)}")
        if W.is_complex():
            raise TypeError(f"W must be real (a parameter trajectory) for the affine model, got {W.dtype}; "
                            "kt.dmd decomposes complex snapshots")
        _check_svd_rank(svd_rank)
        self.W, self.delays, T, self.optimizer = W, int(delays), W.shape[-1], optimizer
        self.factor = f = difference_factor(W, delays, acc, group, method, sacc)
        m = T - 1 - delays  # embedded differences
        s = torch.linalg.svdvals(f.R[:, :-1])
        self.rank = affine_rank(s, svd_rank, (delays + 1) * global_rows(W, group), m - 1, f)
        if self.rank == 0 and not is_still(W, group):  # a still window has its limit: its last snapshot (still.py)
            raise ValueError(no_steps_reason(float(s[0]) if s.numel() else 0.0, T, self.delays, f, W.dtype))
        if self.rank and float(s[self.rank - 1]) < 2.0**-1000:  # 1 / s, the coefficients' scale: float64 overflow
            raise ValueError(f"W's differences are too small for float64 coefficients (singular value "
                             f"{float(s[self.rank - 1]):.1e}): multiply W by a power of two (e.g. 2**500)")
        self.reduced = Reduced(f.R, self.rank)
        self.untruncated = untruncated(f, s, self.rank, m - 1)  # check 5 of .trust, or None
        self.holdout = max(1, int(m * HOLDOUT_FRACTION))
        self._M = difference_matrix(T)

    # the reduced model's pieces, under the names they always had
    eigs = property(lambda self: self.reduced.eigs)
    eigvecs = property(lambda self: self.reduced.eigvecs)
    amplitudes = property(lambda self: self.reduced.amplitudes)
    atilde = property(lambda self: self.reduced.atilde)

    def block(self, i: int = 0) -> tuple[Tensor, Tensor]:
        """(C (T, m), Rd (p, m)): block i of E @ c is W @ (C @ c), and its norm is ||Rd @ c||."""
        k, m = self.delays, self.W.shape[-1] - 1 - self.delays
        return self._M[:, k - i: k - i + m], self.factor.Rd[:, k - i: k - i + m]

    def _norm(self, c: Tensor, i: int = 0, Rd: Tensor | None = None) -> float:
        """||block i of E @ c|| from the differences' factor ``Rd`` (default: all rows'; no pass over W)."""
        k, m = self.delays, self.W.shape[-1] - 1 - self.delays
        return norm((self.factor.Rd if Rd is None else Rd)[:, k - i: k - i + m] @ c)

    def _moved(self, c: Tensor, others: list[Tensor], i: int = 0, Rd: Tensor | None = None) -> float:
        """The largest ||block i of E (c - q)|| / ||block i of E c|| over ``others`` (0.0 for none)."""
        return max((_ratio(self._norm(c - q, i, Rd), self._norm(c, i, Rd)) for q in others), default=0.0)

    @property
    def refit(self) -> Reduced | None:
        """The model refitted without the last ``holdout`` differences (same rank or less), or None."""
        if not hasattr(self, "_refit"):
            R = self.factor.R[:, : self.factor.R.shape[1] - self.holdout]
            s = torch.linalg.svdvals(R[:, :-1]) if R.shape[1] >= 3 else torch.zeros(0, dtype=R.dtype)
            r = numerical_rank(s, R.shape[1] - 1, self.factor)
            self._refit = Reduced(R, min(r, self.rank)) if r else None
        return self._refit

    @property
    def perturbed(self) -> list[Reduced]:
        """The model refitted to its factor plus ``PERTURBATIONS`` random perturbations of Frobenius
        norm the route's floor (the data's rounding, on the Gram route at least what the Gram
        resolves), at the same rank and, for a window fitted to rounding (residual <= RESIDUAL_TOL),
        one rank above: how far rounding alone moves the fit, or lets it split a cluster of modes
        differently (check 4 of :mod:`.trust`). Seeded: the same window gives the same draws."""
        if not hasattr(self, "_perturbed"):
            f, R = self.factor, self.factor.R
            level = max(f.data_floor, f.gram_floor if f.gram_route else 0.0)
            above = self.reduced.residual <= RESIDUAL_TOL and self.rank < min(R.shape[0], R.shape[1] - 1)
            g, self._perturbed = torch.Generator().manual_seed(0), []
            for _ in range(PERTURBATIONS if level > 0 else 0):
                delta = torch.randn(R.shape, generator=g, dtype=R.dtype)
                Rp = R + delta * (level / norm(delta))  # (q, m), one draw for both ranks
                self._perturbed += [Reduced(Rp, r) for r in (self.rank, self.rank + 1)[: 1 + above]]
        return self._perturbed

    @staticmethod
    def _tail(red: Reduced, h: float, drift_tol: float, max_horizon: float) -> tuple[Tensor, Tensor]:
        """(c (m,), drifting (r,) bool): E-coefficients of theta(end+h) - theta(end) for ``red``."""
        mu = red.eigs
        drifting = ((mu - 1).abs() < (1 - EDGE) * drift_tol) | (mu.abs() >= 1)
        if math.isinf(h) and not bool(drifting.any()):
            return red.limit_coef(), drifting
        if not math.isinf(h):  # a finite forecast: the model's own, growing modes included
            return red.apply(geometric_sums(mu, h)), drifting
        held = torch.where(mu.abs() > 1, mu / mu.abs(), mu)
        return red.apply(torch.where(drifting, geometric_sums(held, max_horizon), geometric_sums(mu, h))), drifting

    def extrapolate(self, h: float = math.inf, drift_tol: float = 1e-3, max_horizon: float | None = None,
                    warn: bool = True) -> Extrapolation:
        """theta(T-1+h), h >= 0 snapshots past the last one; h = math.inf gives the limit theta*.

        Parameters
        ----------
        drift_tol : eigenvalues within this distance of 1 (or with |mu| >= 1) have no usable
            limit; for h = inf they are summed over ``max_horizon`` snapshots and reported.
        max_horizon : that horizon (default 1 / drift_tol snapshots).
        warn : emit a :class:`DriftWarning` when h = inf and some mode drifts, and an
            :class:`UntrustedLimitWarning` when the trust check fails.
        """
        check_warn(warn)
        if not h >= 0:
            raise ValueError(f"h must be >= 0 (snapshots ahead) or math.inf, got {h!r}")
        if not drift_tol > 0:
            raise ValueError(f"drift_tol must be > 0, got {drift_tol!r}")
        max_horizon = 1 / drift_tol if max_horizon is None else max_horizon
        if not max_horizon > 0 or math.isinf(max_horizon):
            raise ValueError(f"max_horizon must be a finite number > 0, got {max_horizon!r}")
        if not self.rank:
            return still_estimate(self.W, self.eigs, self.holdout, h)
        c, drifting = self._tail(self.reduced, h, drift_tol, max_horizon)
        coef = self.block(0)[0] @ c
        coef[-1] += 1  # + theta(T-1)
        theta = matmul_chunked(self.W, coef[:, None])[:, 0]
        if not (all_finite(c) and all_finite(theta)):  # a growing mode, finite h
            raise ValueError(f"the {h:g}-snapshot forecast overflows {theta.dtype}: mode(s) with |mu| up to "
                             f"{float(self.eigs.abs().max()):.4g} grow by |mu|^h; forecast fewer snapshots ahead")
        mu, T = self.eigs, self.W.shape[-1]
        if warn and math.isinf(h) and bool(drifting.any()):
            warnings.warn(DriftWarning(
                f"the window still drifts: eigenvalue(s) {_fmt(mu[drifting])} of the differences lie within "
                f"{drift_tol:g} of 1 or on/outside the unit circle, so the trajectory has no limit in this "
                f"window; their modes were summed over {max_horizon:g} snapshots. Record a later or longer "
                f"window, or read this estimate as a {max_horizon:g}-snapshot forecast"),
                stacklevel=outside_stacklevel())
        finite = mu[~drifting]
        out = Extrapolation(theta=theta, eigs=mu, drifting=mu[drifting],
                            gain=float((1 / (1 - finite).abs()).max()) if finite.numel() else 0.0,
                            horizon=max_horizon if bool(drifting.any()) else math.inf, limit=math.isinf(h))
        self._check_tail(out, c, h, drift_tol, max_horizon)
        if self.optimizer is not None:  # check 7 of .trust: one optimizer map for the whole window
            rows = self.optimizer[2] if len(self.optimizer) > 2 else None
            out.schedule = out.extent * setting_drift(self.optimizer[0], T, rows, theta, self.W[:, -1])
        if math.isinf(h) and self.optimizer is not None and has_momentum(self.optimizer[0]) \
                and not unreadable(*self.optimizer[:2], T):  # check 6 of .trust: under momentum only
            f = plain_factor(self.factor, self.delays)
            fit = secant_fit(self.W, *self.optimizer[:2], f)
            if fit.resolved:  # else it abstains: a secant that cannot be believed checks nothing
                out.secant = _ratio(gap(self.W, fit, f, coef), self._norm(c))
        if warn:
            warn_untrusted(out, "limit" if math.isinf(h) else f"{h:g}-snapshot forecast",
                           stacklevel=outside_stacklevel() + 1)  # the caller's line (kmp_scores, forecast, ...)
        return out

    def _check_tail(self, out: Extrapolation, c: Tensor, h: float, drift_tol: float, max_horizon: float) -> None:
        """Fill the trust fields of ``out``: the refit's estimate of the same time, and its forecast of theta(T-1)."""
        m, k = c.numel(), self.holdout
        # where no mode of the estimate drifts, a refit's mode carried across drift_tol by a rounding-sized
        # change keeps its own finite tail: the refit then moves as far as its rates do, not by the horizon cut
        tol = drift_tol if out.drifting.numel() else 0.0  # the refits' drift_tol
        out.holdout, out.window, out.residual = k, self.W.shape[-1], self.reduced.residual
        out.extent = out.gain if math.isinf(h) else min(out.gain, h)
        out.rounding = _ratio(self.factor.data_floor * norm(c), self._norm(c))
        out.conditioning = self._moved(c, [self._tail(p, h, tol, max_horizon)[0] for p in self.perturbed])
        if self.untruncated is not None:
            out.truncation = self._moved(c, [self._tail(self.untruncated, h, tol, max_horizon)[0]])
        red = self.refit
        if red is None:
            out.spread = out.holdout_error = math.inf
            return
        last = torch.zeros(m, dtype=c.dtype)
        last[m - k:] = 1  # E @ last: theta(T-1) - theta(T-1-k), the held-out motion (block 0)
        pad = torch.zeros(m, dtype=c.dtype)
        pad[: m - k] = self._tail(red, h + k, tol, max_horizon)[0]
        out.spread = _ratio(self._norm(c - pad + last), self._norm(c))
        pad[: m - k] = self._tail(red, k, tol, max_horizon)[0]
        out.holdout_error = _ratio(self._norm(pad - last), self._norm(last))

    def modal_difference(self, t: int, weight, betas: tuple[float, ...] = (0.0,), eps: float = 0.0,
                         rows=None) -> Extrapolation:
        """The model's difference d(t) = theta(t+1) - theta(t), amplitudes fitted to the whole
        window, with mode i scaled by ``weight(mu)[i]`` (a function of the (r,) eigenvalues);
        the refitted model's gives its trust check. t is a snapshot index in [0, T-1]; ``betas``, the
        momentum carry-overs its fit check undoes, the largest misfit counting (:func:`.step_fit.step_fit`);
        ``eps``, the training's machine epsilon (0 if unknown), used where coarser than the data's (float32 stored
        in float64); ``rows``: (steps' factor, data floor) of the rows every check reads, default all (a group's).
        The caller warns (:func:`.trust.warn_untrusted`) where the check fails, knowing what else makes it fail."""
        k, T = self.delays, self.W.shape[-1]
        if not self.rank:  # a still window: its step is zero, which the window cannot check (.still)
            return still_estimate(self.W, self.eigs, self.holdout, None)
        j, i = max(t - k, 0), max(t - k, 0) + k - t  # d(t) is block i of the embedded e_j

        def coef(red: Reduced) -> Tensor:  # E-coefficients of red's d(t), each mode scaled by weight(mu)
            return red.smoothed(powers(red.eigs, j)[:, 0] * weight(red.eigs))

        c = coef(self.reduced)
        # twice the expected norm of the rounding in theta(t+1) - (1 + b) theta(t) + b theta(t-1) (2: mantissas near 1,
        # whose ulp is 1.35 times the mean), at the coarser of the data's and the training's precision (``eps``);
        # unseen: check 3's share where a combination (the gradient's: the last) is within it
        Rd, data_floor = rows or (self.factor.Rd, self.factor.data_floor)
        floor = 2 * ROUNDING_STD * data_floor * max(1.0, eps / self.factor.eps) / math.sqrt((k + 1) * T)
        fits = [step_fit(self.reduced, Rd, k, t, b, floor * math.hypot(1, 1 + b, b)) for b in betas]
        fit, unseen = max(f for f, _ in fits), max(u for _, u in fits)
        out = Extrapolation(theta=matmul_chunked(self.W, (self.block(i)[0] @ c)[:, None])[:, 0], eigs=self.eigs,
                            drifting=self.eigs[:0], gain=0.0, horizon=0.0, holdout=self.holdout,
                            window=self.W.shape[-1], residual=self.reduced.residual, fit=fit)
        out.rounding = max(_ratio(data_floor * norm(c), self._norm(c, i, Rd)), unseen)  # all on the rows asked
        out.conditioning = self._moved(c, [coef(p) for p in self.perturbed], i, Rd)
        if self.untruncated is not None:
            out.truncation = self._moved(c, [coef(self.untruncated)], i, Rd)
        out.spread = math.inf
        if self.refit is not None:  # the refit's m - holdout coefficients, padded onto the same columns
            q = coef(self.refit)
            out.spread = self._moved(c, [torch.cat([q, c.new_zeros(c.numel() - q.numel())])], i, Rd)
        return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (0.0 if a == 0 else math.inf)


def _fmt(z: Tensor, k: int = 4) -> str:
    vals = [complex(v) for v in z[:k]]
    text = ", ".join(f"{v.real:.5f}{v.imag:+.5f}j" if abs(v.imag) > 1e-12 else f"{v.real:.5f}" for v in vals)
    return text + (f" (+{z.numel() - k} more)" if z.numel() > k else "")


"""The Koopman analysis of a recorded window, and the Koopman pruning scores made from it.

Redman et al., ICLR 2022 (arXiv:2110.14856): training is a dynamical system; DMD of the parameter
trajectory theta(t1..t2) gives its Koopman modes; pruning rules are functionals of them.

* KMP scores |theta*| for theta* where training is heading. The default (``rule="limit"``, this package's
  choice, not the paper's) is the limit of the window's affine Koopman model, by vector extrapolation
  (:mod:`koopman_tut.numerics.extrapolation`); ``rule="closest"`` is the paper's rule, the single DMD mode with
  eigenvalue closest to 1 times its amplitude, which is the limit only once training has converged (a complex
  eigenvalue, a slow pair, is no fixed point: a ComplexModeWarning, and the score is |v_1| read as the modulus
  |b phi|). It is reproduced as published with no trust check: before convergence it is off without a word
  (rank-8 quadratic: 17% of the distance left under gradient descent in 21 snapshots, 23% under heavy ball in
  31; the default: 0.2%, 0.05%).
* KGP scores |theta * g_K| (or |g_K|) with g_K the gradient the decomposition implies.
  One optimizer step changes theta by delta = sum_i (mu_i - 1) ... per mode; plain SGD makes delta = -lr * grad.
  With momentum beta the step is a velocity; per mode with per-step eigenvalue mu (derived for this tutorial):
  heavy ball  g = -(delta / lr)(1 - beta / mu), PyTorch's Nesterov  g = -(delta / lr)(mu - beta) / ((1 + beta) mu
  - beta); weight decay wd adds wd * theta, which is subtracted (added under maximize=True: -grad + wd theta).
  Snapshots k steps apart give mu = lambda^(1/k), the principal root: per-step eigenvalues with |arg mu| >= pi / k
  are aliased (-0.85 per step comes back as +0.85 with k = 2), so KGP warns when k > 1 and never trusts it.
* Under momentum (``traj.meta``) the affine model is delay-embedded, z = [theta(t); theta(t-1)]
  (:mod:`koopman_tut.numerics.extrapolation`): its modes are then the second-order recursion's own, and
  the limit, forecast and Koopman gradient are exact on a quadratic. Each carries the window's trust check
  (:mod:`koopman_tut.numerics.trust`) and warns when it fails.
* Horizon scores |theta(T-1+h)|, the Koopman forecast h snapshots ahead: h = 0 is GMP on the last snapshot,
  h = inf is KMP's limit.
"""
from __future__ import annotations

import math
import numbers
import warnings
from functools import cached_property

import torch

from ..numerics.dmd import deviation_gram_checked, dmd
from ..numerics.distributed import global_rows
from ..numerics.distributed_checks import analysis_fields, checked_preflight
from ..numerics.dmd_result import DMDResult
from ..numerics.snapshots import deviation_from_steps, step_gram
from ..numerics.extrapolation import AffineModel, Extrapolation, check_warn, momentum_delays, warn_untrusted
from ..numerics.finite import outside_stacklevel, renamed
from ..numerics.memory import check_gram_fits
from ..numerics.optimizer_settings import group_rows
from ..numerics.limits import snapshot_stride
from ..recording.trajectory import Trajectory
from ..recording.validation import check_index
from .group_fit import group_factors
from .inputs import check_analysis, check_choice, check_horizon, last_snapshot
from .scores import Scores
from .sgd_steps import (AliasingWarning, check_overflow, fit_betas, group_settings, modal_weight, not_sgd,
                        training_eps, warn_aliasing, warn_lr_changes)

Tensor = torch.Tensor
RULES = ("limit", "closest")
FORMS = ("theta_grad", "grad")


class KoopmanAnalysis:
    """A recorded window with its DMDs, computed lazily once and shared by every quantity.

    Parameters
    ----------
    traj : the window, snapshots (n, T) with T >= 3.
    svd_rank, method : for the DMD of the snapshots (the paper's decomposition, used by
        rule="closest"): passed to :func:`koopman_tut.numerics.dmd`; -1 keeps every mode above
        the numerical-rank floor T eps s_max (the authors' code inverts every singular value,
        rounding included). ``method`` also picks the affine model's route ("svd": float64
        QR of the differences; "gram": the one-pass Gram), with one rank rule on both.
    limit_rank : svd_rank of the affine model (DMD of the differences) behind the limit,
        the forecast and the Koopman gradient, or "auto" (default; this package's choice,
        not the paper's): 0, the optimal hard threshold (Gavish & Donoho 2014), when the
        window has more parameters than snapshots, as every real network's has, and -1
        otherwise. A tall window is fitted exactly, minibatch noise included; untruncated,
        the noise modes are extrapolated with gain 1 / |1 - mu|. Notebook 05 measures the
        rank's effect on early minibatch windows over seeds (this threshold, the rank a
        held-out forecast picks, ranks 2 and 8). A window with at least as many
        snapshots as parameters is a least-squares fit that already averages the noise,
        and its singular values have no noise bulk for the threshold to find.
    drift_tol, max_horizon : see :meth:`koopman_tut.numerics.extrapolation.AffineModel.extrapolate`.
    group : torch.distributed group when each rank holds its own rows of the trajectory.
    delays : delay embedding of the affine model, or "auto" (default): 1 when ``traj.meta``
        records momentum (heavy ball / Nesterov are second order in theta: with the state
        [theta(t); theta(t-1)] the limit, forecast and gradient are exact on a quadratic), else 0.

    Examples
    --------
    >>> k = kt.koopman(traj)
    >>> k.fixed_point()              # (n,) limit of the window (rule="limit")
    >>> k.kmp_scores(); k.kgp_scores(); k.horizon_scores(10)
    """

    def __init__(self, traj: Trajectory, svd_rank: int | float = -1, method: str = "auto",
                 limit_rank: int | float | str = "auto", drift_tol: float = 1e-3,
                 max_horizon: float | None = None, group=None, delays: int | str = "auto"):
        if not isinstance(traj, Trajectory):
            raise TypeError(f"traj must be a koopman_tut.Trajectory, got {type(traj).__name__}")

        def check():  # over ranks, before any collective: the same window and settings on every rank
            check_analysis(traj, svd_rank, limit_rank, drift_tol, max_horizon, method)
            check_gram_fits(traj.snapshots, name="traj.snapshots")  # every route forms (T, T) matrices
            d = momentum_delays(traj.meta, len(traj)) if delays == "auto" else delays
            return {} if group is None else analysis_fields(traj, {
                "svd_rank": svd_rank, "method": "gram" if method == "auto" else method, "limit_rank": limit_rank,
                "drift_tol": drift_tol, "max_horizon": max_horizon, "delays": d}), d
        self.delays = checked_preflight("kt.koopman", group, check)
        self.every = snapshot_stride(traj)  # optimizer steps per snapshot; equally spaced
        self.traj, self.svd_rank, self.method, self.group = traj, svd_rank, method, group
        if limit_rank == "auto":
            limit_rank = 0 if global_rows(traj.snapshots, group) > len(traj) else -1  # same on every rank
        self.limit_rank = limit_rank
        self.drift_tol, self.max_horizon = drift_tol, max_horizon

    def __repr__(self) -> str:
        return f"KoopmanAnalysis({self.traj.n_features} parameters x {len(self.traj)} snapshots)"

    @cached_property
    @renamed("traj")
    def _acc(self) -> Tensor | None:
        """One pass over the snapshots, the steps' Gram, shared by both decompositions (Gram route only)."""
        W = self.traj.snapshots
        small = self.group is None and W.shape[0] * W.shape[1] <= 2**22
        if self.method == "svd" or (self.method == "auto" and small):
            return None
        return deviation_gram_checked(W, group=self.group, gram=step_gram)

    @cached_property
    def _dev_acc(self) -> Tensor | None:
        """The deviations' Gram kt.dmd reads, from the steps' Gram (no second pass)."""
        return None if self._acc is None else deviation_from_steps(self._acc)

    @cached_property
    @renamed("traj")
    def dmd(self) -> DMDResult:
        """Exact DMD of the snapshots (the paper's decomposition)."""
        return dmd(self.traj.snapshots, self.svd_rank, self.method, group=self.group, acc=self._dev_acc)

    @cached_property
    @renamed("traj")
    def affine(self) -> AffineModel:
        """The affine model theta(t+1) = A theta(t) + c, from exact DMD of the differences."""
        return AffineModel(self.traj.snapshots, self.limit_rank, acc=self._dev_acc, sacc=self._acc,
                           group=self.group, delays=self.delays, method=self.method,
                           optimizer=(self.traj.meta, self.every, None if self.group is not None else
                                      group_rows(self.traj.meta, self.traj.names, self.traj.offsets)))

    @cached_property
    def _group_factors(self) -> dict:
        """Each parameter group's steps' factor and rounding, for its gradient's fit check (:mod:`.group_fit`)."""
        return group_factors(self.traj, self.delays, self.group)

    def _agree(self, what: str, args):
        """``args()`` -> (fields, value): the call's arguments checked; with a group the ranks compare the fields
        first, and a rank refusing its arguments makes every rank raise (none waits in a later collective)."""
        return checked_preflight(f"kt.koopman {what}", self.group, args)

    # -- where training is heading
    def limit(self, warn: bool = True) -> Extrapolation:
        """The limit theta* of the window with its diagnostics (eigenvalues, gain, drifting modes) and
        its trust check (spread, residual, extent; an UntrustedLimitWarning when it fails)."""
        return self.affine.extrapolate(math.inf, self.drift_tol, self.max_horizon, warn)

    def fixed_point(self, rule: str = "limit") -> Tensor:
        """(n,) theta*: the window's limit ("limit", default) or the paper's closest-to-1 mode ("closest"; where
        its eigenvalue is complex, the real part of b phi: :meth:`DMDResult.fixed_point`)."""
        rule = self._agree("fixed_point", lambda: ({"rule": check_choice("rule", rule, RULES)}, rule))
        return self.limit().theta if rule == "limit" else self.dmd.fixed_point()

    def forecast(self, h: float) -> Tensor:
        """(n,) theta(T-1+h), h >= 0 snapshots past the last one (h = 0: the last snapshot exactly);
        warns (UntrustedLimitWarning) when the window cannot pin it."""
        h = self._agree("forecast", lambda: (lambda x: ({"h": x}, x))(check_horizon(h)))  # checked once; a float
        if h == 0:
            return last_snapshot(self.traj)
        mu = self.affine.eigs
        if not math.isinf(h) and h != int(h) and bool(((mu.imag != 0) | (mu.real < 0)).any()):
            warnings.warn(AliasingWarning(
                f"h = {h:g} is not a whole number of snapshots and the window has modes with eigenvalues off the "
                f"positive real axis: between snapshots their phase is ambiguous, and mu^h is the principal power "
                f"(one interpolation of many); forecast whole snapshots"), stacklevel=2)
        return self.affine.extrapolate(h, self.drift_tol, self.max_horizon).theta  # warns if untrusted

    # -- the gradient it implies
    def gradient(self, lr: float | None = None, t: int = -1, warn: bool = True) -> Tensor:
        """(n,) Koopman estimate of dL/dtheta at snapshot ``t``, momentum and weight decay undone.

        Uses the optimizer settings recorded in ``traj.meta`` (momentum, nesterov, dampening,
        weight_decay, maximize, every) and its learning rate at snapshot t unless ``lr`` is given.
        ``t`` is a snapshot index in [-T, T-1] (negative: from the end). It undoes torch.optim.SGD's step; a
        gradient changed before the step (clipping) is estimated as changed; under another optimizer (Adam)
        the estimate is the step direction over -lr, never trusted (``not_sgd``). The trust check of
        the estimate (:class:`koopman_tut.numerics.extrapolation.Extrapolation`, its ``spread``) is kept
        in ``self.gradient_check``; ``warn`` emits an UntrustedLimitWarning when it fails.
        """
        traj, every = self.traj, self.every

        def args():
            check_warn(warn)
            ti = check_index(t, len(traj))
            return {"lr": lr, "t": ti}, (ti, group_settings(traj, lr, ti))
        t, groups = self._agree("gradient", args)
        warn_lr_changes(traj)
        warn_aliasing(every)
        # each parameter group's lr, momentum and weight decay are undone on its own rows; the model
        # refitted without the window's last steps gives the trust check (a warning if it fails)
        g, self.gradient_checks = None, []
        own = self._group_factors if groups[0][0] is not None else {}  # each group's checks on its own rows
        other = not_sgd(traj.meta)  # Adam's step is not the gradient's: untrusted, whatever the model fits
        for rows, settings, lr_g in groups:
            check = self.affine.modal_difference(t, modal_weight(settings, lr_g, every), fit_betas(settings, every),
                                                 training_eps(traj.meta), own.get(tuple(settings.get("names") or ())))
            check.not_sgd, check.stride = other, every  # a stride > 1: per-step rates as principal roots
            if warn:
                warn_untrusted(check, "Koopman gradient", stacklevel=outside_stacklevel() + 1)
            self.gradient_checks.append(check)
            part = check.theta
            wd = float(settings.get("weight_decay", 0.0) or 0.0)  # SGD steps along sign grad + wd theta, and
            wd = -wd if settings.get("maximize") and not other else wd  # the sign undone above gives sign wd theta
            part = part - wd * traj.snapshots[:, t].to(part.dtype) if wd else part
            g = part if rows is None else (torch.zeros_like(part) if g is None else g)
            if rows is not None:
                g[rows] = part[rows]
        self.gradient_check = max(self.gradient_checks, key=lambda c: (not c.trusted, c.spread))  # least trusted
        return check_overflow(g, lr)

    # -- scores
    def kmp_scores(self, rule: str = "limit") -> Scores:
        """{name: |theta*|}, Koopman magnitude pruning ("closest": the paper's |v_1|, a complex mode's modulus)."""
        rule = self._agree("kmp_scores", lambda: ({"rule": check_choice("rule", rule, RULES)}, rule))
        return _abs_by_name(self.traj, self.limit().theta if rule == "limit" else self.dmd.fixed_point(modulus=True))

    def kgp_scores(self, lr: float | None = None, form: str = "theta_grad", t: int = -1) -> Scores:
        """Koopman gradient pruning: {name: |theta(t) * g_K|} ('theta_grad') or {name: |g_K|} ('grad')."""
        t = self._agree("kgp_scores", lambda: ({"form": check_choice("form", form, FORMS)},
                                               check_index(t, len(self.traj))))
        g = self.gradient(lr, t)
        if form == "theta_grad":
            g = g * self.traj.snapshots[:, t].to(g.dtype)
        return _abs_by_name(self.traj, g)

    def horizon_scores(self, h: float) -> Scores:
        """{name: |forecast h snapshots ahead|}: h = 0 is GMP on the last snapshot, h = inf is KMP."""
        if isinstance(h, numbers.Real) and not isinstance(h, bool) and h == math.inf:  # no float(h): h may be 10**400
            return self.kmp_scores("limit")
        return _abs_by_name(self.traj, self.forecast(h))


def _abs_by_name(traj: Trajectory, vec: Tensor) -> Scores:  # at least float32; float64 limits stay float64
    return {n: v.abs().to(torch.promote_types(v.dtype, torch.float32)) for n, v in traj.unflatten(vec).items()}


# ----------------------------------------------------------------------------- entry points
def koopman(traj: Trajectory | KoopmanAnalysis, svd_rank: int | float = -1, method: str = "auto",
            limit_rank: int | float | str = "auto", drift_tol: float = 1e-3, max_horizon: float | None = None,
            group=None, delays: int | str = "auto") -> KoopmanAnalysis:
    """The Koopman analysis of a window (see :class:`KoopmanAnalysis`); an analysis is returned as is,
    and options given with one are refused (they are fixed when it is built)."""
    if isinstance(traj, KoopmanAnalysis):
        given = {k: v for k, v, default in (("svd_rank", svd_rank, -1), ("method", method, "auto"),
                                            ("limit_rank", limit_rank, "auto"), ("drift_tol", drift_tol, 1e-3),
                                            ("max_horizon", max_horizon, None), ("group", group, None),
                                            ("delays", delays, "auto"))
                 if not (v is default or type(v) in (int, float, str) and v == default)}  # a tensor: given
        if given:
            raise ValueError(f"options {given} given with a KoopmanAnalysis, which has its own: pass them when "
                             f"it is built, kt.koopman(traj, ...), or pass the trajectory here instead")
        return traj
    return KoopmanAnalysis(traj, svd_rank, method, limit_rank, drift_tol, max_horizon, group, delays)


def koopman_fixed_point(traj: Trajectory | KoopmanAnalysis, rule: str = "limit", **kwargs) -> Tensor:
    """(n,) theta*; see :meth:`KoopmanAnalysis.fixed_point`. kwargs go to :func:`koopman`."""
    return koopman(traj, **kwargs).fixed_point(rule)


def kmp_scores(traj: Trajectory | KoopmanAnalysis, rule: str = "limit", **kwargs) -> Scores:
    """{name: |theta*|}, Koopman magnitude pruning; rule "limit" (default) or "closest" (the paper's)."""
    return koopman(traj, **kwargs).kmp_scores(rule)


def koopman_gradient(traj: Trajectory | KoopmanAnalysis, lr: float | None = None, t: int = -1, **kwargs) -> Tensor:
    """(n,) Koopman estimate of the loss gradient at snapshot t; see :meth:`KoopmanAnalysis.gradient`."""
    return koopman(traj, **kwargs).gradient(lr, t)


def kgp_scores(traj: Trajectory | KoopmanAnalysis, lr: float | None = None, form: str = "theta_grad",
               t: int = -1, **kwargs) -> Scores:
    """Koopman gradient pruning scores; see :meth:`KoopmanAnalysis.kgp_scores`."""
    return koopman(traj, **kwargs).kgp_scores(lr, form, t)


def koopman_forecast(traj: Trajectory | KoopmanAnalysis, h: float, **kwargs) -> Tensor:
    """(n,) forecast h snapshots past the last one; see :meth:`KoopmanAnalysis.forecast`."""
    return koopman(traj, **kwargs).forecast(h)


def horizon_scores(traj: Trajectory | KoopmanAnalysis, h: float, **kwargs) -> Scores:
    """{name: |forecast h snapshots ahead|}; h = 0 GMP, h = inf KMP."""
    return koopman(traj, **kwargs).horizon_scores(h)

"""Koopman scores from a recorded trajectory (Redman et al., ICLR 2022, arXiv:2110.14856).

KMP scores |theta*|, the eigenvalue-1 mode times its amplitude (or, by default, the slow
part of the window); KGP scores |theta * g_K| with g_K the gradient the decomposition
predicts; horizon scores the Koopman forecast h snapshots ahead (h=0 GMP, h=inf KMP).
"""
from __future__ import annotations

import math

import torch

from ..dmd import DMDResult, dmd, powers
from ..trajectory import Trajectory
from .scores import Scores


def _dmd_of(traj: Trajectory, svd_rank=-1, method: str = "auto", result: DMDResult | None = None) -> DMDResult:
    if not isinstance(traj, Trajectory):
        raise TypeError(f"traj must be a koopman_tut.Trajectory, got {type(traj).__name__}")
    if len(traj) < 2:
        raise ValueError(f"traj needs at least 2 snapshots for DMD, has {len(traj)}")
    return result if result is not None else dmd(traj.snapshots, svd_rank=svd_rank, method=method)


def koopman_fixed_point(traj: Trajectory, rule: str = "slow", radius: float = 0.1, svd_rank=-1,
                        method: str = "auto", result: DMDResult | None = None) -> torch.Tensor:
    """(n,) predicted fixed point theta*: the eigenvalue-1 mode times its amplitude.

    rule "closest": the single mode with eigenvalue closest to 1 (the paper's rule);
    rule "slow": the sum of the modes within ``radius`` of 1, at the last snapshot (robust on
    drifting windows; see :meth:`koopman_tut.DMDResult.slow_part`).
    """
    res = _dmd_of(traj, svd_rank, method, result)
    if rule == "closest":
        return res.fixed_point()
    if rule == "slow":
        return res.slow_part(radius)
    raise ValueError(f"rule must be 'slow' or 'closest', got {rule!r}")


def kmp_scores(traj: Trajectory, rule: str = "slow", radius: float = 0.1, svd_rank=-1, method: str = "auto",
               result: DMDResult | None = None) -> Scores:
    """{name: |theta*|}, Koopman magnitude pruning (see :func:`koopman_fixed_point`)."""
    fp = koopman_fixed_point(traj, rule, radius, svd_rank, method, result)
    return {n: v.abs().float() for n, v in traj.unflatten(fp).items()}


def koopman_gradient(traj: Trajectory, lr: float | None = None, t: int = -1, svd_rank=-1, method: str = "auto",
                     result: DMDResult | None = None) -> torch.Tensor:
    """(n,) Koopman-estimated gradient at snapshot ``t``: -(1/lr) * predicted one-step change.

    One optimizer step changes theta by sum_i (mu_i - 1) lambda_i^t b_i v_i with mu_i = lambda_i^(1/k)
    for snapshots k steps apart; for plain SGD that change is -lr * grad L.
    """
    res = _dmd_of(traj, svd_rank, method, result)
    lr = traj.lr if lr is None else lr
    if lr is None or lr <= 0:
        raise ValueError(f"lr must be a positive learning rate (not recorded in this trajectory), got {lr}")
    t = t % len(traj)
    every = int(traj.meta.get("every", 1))
    mu = powers(res.eigs, 1 / every)[:, 0]  # per optimizer step
    w = (mu - 1) * powers(res.eigs, t)[:, 0] * res.amplitudes.cpu().to(torch.complex128)
    return -res.combine(w) / lr


def kgp_scores(traj: Trajectory, lr: float | None = None, form: str = "theta_grad", t: int = -1, svd_rank=-1,
               method: str = "auto", result: DMDResult | None = None) -> Scores:
    """Koopman gradient pruning: {name: |theta(t) * g_K|} ('theta_grad') or {name: |g_K|} ('grad')."""
    if form not in ("theta_grad", "grad"):
        raise ValueError(f"form must be 'theta_grad' or 'grad', got {form!r}")
    g = koopman_gradient(traj, lr, t, svd_rank, method, result)
    if form == "theta_grad":
        g = g * traj.snapshots[:, t].to(g.dtype)
    return {n: v.abs().float() for n, v in traj.unflatten(g).items()}


def koopman_forecast(traj: Trajectory, h: float, svd_rank=-1, method: str = "auto",
                     result: DMDResult | None = None) -> torch.Tensor:
    """(n,) Koopman forecast h snapshots past the last one (h in snapshot units, any h >= 0).

    theta(t) + sum_i (lambda_i^(t+h) - lambda_i^t) b_i v_i, t the last snapshot: the recorded
    parameters plus the change the decomposition predicts (so h=0 returns theta(t) exactly).
    Eigenvalues outside the unit circle are projected onto it (lambda / |lambda|): a short
    window cannot tell a slowly growing mode from a persistent one, and extrapolating the
    growth diverges. As h grows the decaying modes vanish and the persistent part remains.
    Jumping ahead with it is Koopman training acceleration (Dogra & Redman, NeurIPS 2020).
    """
    if not h >= 0 or math.isinf(h):
        raise ValueError(f"h must be a finite number >= 0, got {h}")
    x = traj.snapshots[:, -1]
    if h == 0:
        return x.clone()
    res = _dmd_of(traj, svd_rank, method, result)
    t = len(traj) - 1
    lam = res.eigs.cpu().to(torch.complex128)
    held = lam / lam.abs().clamp_min(1)  # |lambda| > 1 held on the unit circle
    w = powers(lam, t)[:, 0] * (powers(held, h)[:, 0] - 1) * res.amplitudes.cpu().to(torch.complex128)
    return x + res.combine(w).to(x.dtype)


def horizon_scores(traj: Trajectory, h: float, rule: str = "slow", radius: float = 0.1, svd_rank=-1,
                   method: str = "auto", result: DMDResult | None = None) -> Scores:
    """{name: |Koopman forecast h snapshots ahead|}: h=0 is GMP on the last snapshot, h=inf is KMP.

    See :func:`koopman_forecast`; h=inf is defined as :func:`kmp_scores` (the forecast of
    modes with |lambda| slightly above 1 would grow without bound).
    """
    if not h >= 0:
        raise ValueError(f"h must be >= 0 (or math.inf), got {h}")
    if math.isinf(h):
        return kmp_scores(traj, rule, radius, svd_rank, method, result)
    fc = koopman_forecast(traj, h, svd_rank, method, result)
    return {n: v.abs().float() for n, v in traj.unflatten(fc).items()}

"""How one torch.optim.SGD step relates to the gradient, per parameter group: lr, momentum, weight decay.

A Koopman mode of the step with per-step eigenvalue mu and step delta is turned into the
gradient by a per-mode factor (see :mod:`koopman_tut.pruning.koopman`); each parameter group of
the optimizer has its own lr, momentum, dampening, Nesterov and maximize flags and weight decay, recorded by
:class:`koopman_tut.TrajectoryRecorder` in ``traj.meta['groups']`` (and ``group_lrs`` per snapshot).
"""
from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
import torch

from ..numerics.dmd_result import powers
from ..numerics.finite import all_finite, outside_stacklevel
from ..numerics.ints import plain_number
from ..numerics.reals import is_finite, shown
from ..numerics.trust import UntrustedLimitWarning
from ..numerics.optimizer_settings import SGD_SETTINGS, settings_at
from ..recording.trajectory import Trajectory
from ..recording.validation import DTYPE_NAMES

Tensor = torch.Tensor


class AliasingWarning(UserWarning):
    """Snapshots k > 1 steps apart: per-step eigenvalues are ambiguous (principal k-th root)."""


def leaving(t: int, T: int) -> int:
    """Index of the lr logged for the step that leaves snapshot ``t``: the recorder logs with each
    snapshot the lr of the step that produced it, so the step t -> t+1 is logged at t+1 (the last
    snapshot, with no step after it in the window, uses its own)."""
    return t + 1 if t + 1 < T else t


def group_settings(traj: Trajectory, lr: float | None, t: int) -> list[tuple[Tensor | None, dict, float]]:
    """(rows (k,) long or None for all, optimizer settings, lr of the step leaving snapshot t) per parameter group.

    One entry for all rows unless ``traj.meta['groups']`` records several groups that differ in
    momentum, dampening, Nesterov or weight decay, or in their lr at that step. A group's lr is
    ``meta['group_lrs']`` (recorded with several groups), and its other settings those logged
    for that step where they changed while recording (``meta['group_settings']``). A version-2
    disk file kept the first group's lr only: each group's lr is then taken to follow the first
    group's schedule (with a warning: per-group schedules cannot be recovered from it).
    """
    groups = traj.meta.get("groups") or []
    group_lrs = traj.meta.get("group_lrs")
    T = len(traj)
    if len(groups) > 1 and group_lrs is None:
        warnings.warn(f"this window has {len(groups)} parameter groups but no per-group learning rates "
                      f"(meta['group_lrs']: a version-2 disk recording kept one lr per snapshot); each "
                      f"group's lr is taken to follow the first group's schedule", stacklevel=outside_stacklevel())
    scale = _lr(traj, None, t) / groups[0]["lr"] if len(groups) > 1 and group_lrs is None and groups[0]["lr"] else 1.0
    lrs_t = ([float(v) for v in group_lrs[leaving(t, T)]] if group_lrs is not None
             else [gr["lr"] * scale for gr in groups])
    logged = settings_at(traj.meta, leaving(t, T)) if "group_settings" in traj.meta else None
    if logged is not None and len(logged) == len(groups):  # the settings of that very step (a schedule's)
        groups = [{**gr, **now} for gr, now in zip(groups, logged)]
    if len({tuple(gr.get(k) for k in SGD_SETTINGS) for gr in groups}) <= 1 and len(set(lrs_t)) <= 1:
        # groups that agree: the top-level settings (the first group's) rule, so an edit of
        # traj.meta['momentum'] (e.g. a control with the correction switched off) takes effect,
        # unless the settings were logged per snapshot (they changed while recording)
        now = logged[0] if logged else {}
        return [(None, {**(groups[0] if groups else {}), **traj.meta, **now}, _lr(traj, lr, t))]
    if lr is not None:
        raise ValueError(f"lr: this window has {len(groups)} parameter groups with their own settings "
                         f"(learning rates {lrs_t}); pass lr=None to use the recorded ones")
    where = dict(zip(traj.names, zip(traj.offsets[:-1], traj.offsets[1:])))
    _check_cover(traj.names, groups)
    out = []
    for gr, lr_g in zip(groups, lrs_t):
        rows = [torch.arange(int(where[n][0]), int(where[n][1])) for n in gr["names"] if n in where]
        if rows and not 0 < lr_g < math.inf:
            raise ValueError(f"the recorded parameter group of {gr['names'][:3]} has learning rate {lr_g} at snapshot "
                             f"{t}: its steps cannot be undone into a gradient (an lr must be > 0 and finite); for "
                             f"the other groups' gradient record without it (TrajectoryRecorder(params=[...]))")
        if rows:
            out.append((torch.cat(rows), {**traj.meta, **gr}, lr_g))
    if not out:  # a rank holding none of the rows (a hand-split window): no rows, a valid group's settings
        gr, lr_g = next(((gr, v) for gr, v in zip(groups, lrs_t) if 0 < v < math.inf), (groups[0], lrs_t[0]))
        out.append((torch.zeros(0, dtype=torch.long), {**traj.meta, **gr}, lr_g))
    return out


def _check_cover(names: list[str], groups: list[dict]) -> None:
    """Every recorded name in exactly one of ``groups``' names (a name in none would get no gradient)."""
    counts = Counter(n for gr in groups for n in set(gr.get("names") or ()))
    off = [n for n in names if counts[n] != 1]
    if off:
        raise ValueError(f"traj.meta['groups']: each recorded parameter must be named in exactly one group, but "
                         f"{off[:3]}{' ...' if len(off) > 3 else ''} ({len(off)} of {len(names)}) is named in "
                         f"{counts[off[0]]} groups; the groups name {[(gr.get('names') or [])[:3] for gr in groups]}")


def _lr(traj: Trajectory, lr: float | None, t: int) -> float:
    lrs = traj.meta.get("lrs")
    recorded = lrs[leaving(t, len(traj))] if lrs is not None and len(lrs) == len(traj) else traj.lr
    given = lr is not None
    lr = lr.item() if isinstance(lr, np.ndarray) and lr.size == 1 else lr  # as a 1-element tensor is taken
    if lr is None:
        lr = recorded
    elif _differ(lr, recorded):
        warnings.warn(f"lr={float(lr):g} differs from the learning rate recorded for the step leaving snapshot {t}, "
                      f"{float(recorded):g} (traj.meta['lrs']): the Koopman gradient divides the step by the lr "
                      f"given; pass lr=None to use the recorded one", stacklevel=outside_stacklevel())
    if lr is not None and (isinstance(lr, (bool, str, bytes)) or not hasattr(lr, "__float__")
                           or (isinstance(lr, torch.Tensor) and lr.numel() != 1) or isinstance(lr, np.ndarray)):
        raise TypeError(f"lr must be a positive learning rate (a number), got {lr!r} ({type(lr).__name__})")
    if lr is None or not (is_finite(plain_number(lr)) and 0 < float(lr)):
        where = ("given" if given else "none recorded in traj.meta (pass lr=)" if lr is None else
                 f"recorded in traj.meta for the step leaving snapshot {t} (pass lr=)")
        raise ValueError(f"lr must be a positive learning rate, finite ({where}), got {shown(lr)}")
    return float(lr)


def check_overflow(g: Tensor, lr) -> Tensor:
    """``g`` (n,), the Koopman gradient, unless dividing the steps by the learning rate took it past its dtype's
    range (a tiny ``lr=``): a ValueError naming lr rather than scores of Inf."""
    if not all_finite(g):
        raise ValueError(f"lr={lr!r}: the Koopman gradient (each step divided by the lr) overflows {g.dtype}; pass "
                         f"the learning rate the window was trained with (lr=None reads the recorded one)")
    return g


def _differ(lr, recorded) -> bool:
    """Whether a given lr and a recorded one (both usable numbers) differ by more than 1%."""
    if isinstance(lr, bool):
        return False  # refused where the lr is checked
    try:
        a, b = float(lr), float(recorded)
    except (TypeError, ValueError, OverflowError):
        return False  # refused (or nothing recorded) where the lr is checked
    return 0 < a < math.inf and 0 < b < math.inf and abs(a - b) > 0.01 * b


def modal_weight(settings: dict, lr: float, every: int):
    """f(mu_snap (r,) per-snapshot eigenvalues) -> (r,) weights turning the model's difference d(t) =
    sum_i q_i mu_i^t psi_i (amplitudes fitted to the whole window: one noisy minibatch step would dominate
    otherwise) into the gradient: one optimizer step is d(t) (mu - 1) / (mu_snap - 1) (the difference split
    over ``every`` steps, mu the principal root per step), undone for momentum and divided by -lr."""
    def f(mu_snap: Tensor) -> Tensor:
        mu = powers(mu_snap, 1 / every)[:, 0]  # per optimizer step (principal root)
        near1 = (mu_snap - 1).abs() < 1e-12
        per_step = torch.where(near1, torch.full_like(mu, 1 / every),
                               (mu - 1) / torch.where(near1, torch.ones_like(mu), mu_snap - 1))
        return per_step * momentum_factor(mu, settings) * (-1 / lr)
    return f


def fit_betas(settings: dict, every: int) -> tuple[float, ...]:
    """The momentum carry-overs check 8 undoes (:func:`koopman_tut.numerics.step_fit.step_fit`), the larger misfit
    counting: beta^every, beta the momentum (D(t) - beta^every D(t-1), D the snapshots' differences, is a sum
    of gradients with no velocity left, on any loss, where lr and momentum stay the same and the buffer exists
    (not the optimizer's first step): -lr (1 - dampening) g(t) under heavy ball one step apart,
    exactly the gradient's misfit), and, except there, the step itself (0): under Nesterov the combination is
    -lr ((1 + beta) g(t) - beta g(t-1)), and where it, a 1 - beta share of the step, is only a few roundings,
    their allowance hides a misfit the step still shows (under heavy ball the step adds only the velocity's)."""
    beta = float(settings.get("momentum", 0) or 0)
    heavy_ball = every == 1 and not settings.get("nesterov", False)
    return (0.0,) if not beta else (beta,) if heavy_ball else (0.0, beta ** every)


def training_eps(meta: dict) -> float:
    """Machine epsilon of the dtype the recorded parameters were trained in (``meta['trained_in']``), 0 if unknown."""
    name = meta.get("trained_in")
    return torch.finfo(getattr(torch, name)).eps if name in DTYPE_NAMES else 0.0


def momentum_factor(mu: Tensor, meta: dict) -> Tensor:
    """Per-mode factor turning the step into the gradient (see module docstring); 1 for plain SGD."""
    if not_sgd(meta):  # the step direction (the trust check says so)
        return torch.ones_like(mu)
    sign = -1.0 if meta.get("maximize", False) else 1.0  # maximize=True steps along +grad
    beta = float(meta.get("momentum", 0.0) or 0.0)
    damp = float(meta.get("dampening", 0.0) or 0.0)
    if beta == 0:
        return torch.full_like(mu, sign)
    if meta.get("nesterov", False):  # step g + beta b, b = beta b' + (1 - damp) g = (1 - damp) mu g / (mu - beta)
        return sign * (mu - beta) / ((1 + beta * (1 - damp)) * mu - beta)
    return sign * (1 - beta / mu) / (1 - damp)  # step b = (1 - damp) mu g / (mu - beta)


def not_sgd(meta: dict) -> str:
    """The recorded optimizer's name where its steps are not torch.optim.SGD's (``meta['optimizer']``, see
    :func:`koopman_tut.recording.groups.optimizer_name`), else "" (also when not recorded): the gradient's trust
    check then fails (``Extrapolation.not_sgd``)."""
    opt = meta.get("optimizer")
    return "" if opt in (None, "SGD") else str(opt)


def warn_aliasing(every: int) -> None:
    """The Koopman gradient's warning (:class:`AliasingWarning`) for snapshots ``every`` > 1 steps apart."""
    if every > 1:
        warnings.warn(AliasingWarning(
            f"snapshots are {every} steps apart: per-step eigenvalues are taken as principal "
            f"{every}-th roots, so any with |arg| >= pi/{every} (e.g. negative ones, common with "
            f"momentum or large steps) are aliased and the Koopman gradient is then wrong; "
            f"record every step (every=1) for KGP"), stacklevel=outside_stacklevel())


def warn_lr_changes(traj: Trajectory) -> None:
    """Warn when a recorded learning rate changes by more than 1% inside the window, or another setting
    (momentum, dampening, weight decay, Nesterov, a momentum buffer replaced) changes at all: the affine
    model fits one optimizer map to all of it, so the gradient it implies mixes them. The window's
    steps are those logged with snapshots 1 .. T-1 (snapshot 0's produced it, before the window)."""
    rows = traj.meta.get("group_lrs") or [[v] for v in (traj.meta.get("lrs") or [])]
    for g, lrs in enumerate(zip(*rows[1:])):
        lo, hi = min(lrs), max(lrs)
        if 0 < lo and hi > 1.01 * lo:  # (an lr <= 0 is refused where it is used)
            at = next(j for j in range(1, len(lrs)) if lrs[j] != lrs[j - 1]) + 1
            _warn_change(f"the learning rate{f' of parameter group {g}' if len(rows[0]) > 1 else ''} changes",
                         f"from {lrs[at - 2]:g} to {lrs[at - 1]:g} at snapshot {at}; {lo:g} .. {hi:g} in all")
            return
    logged = traj.meta.get("group_settings") or []
    for k in range(2, len(logged)):
        if logged[k] != logged[k - 1]:
            before, after = logged[k - 1], logged[k]
            what = sorted({key for b, a in zip(before, after) for key in a if a[key] != b.get(key)})
            if what == ["restarts"]:
                _warn_change("a momentum buffer is replaced (a restart, or optimizer.load_state_dict)",
                             f"by the step to snapshot {k}")
                return
            _warn_change(f"the optimizer's {', '.join(what) or 'settings'} change{'' if len(what) > 1 else 's'}",
                         f"first at snapshot {k}: {[{key: b.get(key) for key in what} for b in before]} -> "
                         f"{[{key: a.get(key) for key in what} for a in after]}")
            return


def _warn_change(what: str, where: str) -> None:
    warnings.warn(UntrustedLimitWarning(
        f"{what} inside the window ({where}): the affine model fits one optimizer map to the whole window, so the "
        f"Koopman gradient mixes them; take a window within one setting"), stacklevel=outside_stacklevel())

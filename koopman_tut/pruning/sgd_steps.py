"""How one torch.optim.SGD step relates to the gradient, per parameter group: lr, momentum, weight decay.

A Koopman mode of the step with per-step eigenvalue mu and step delta is turned into the
gradient by a per-mode factor (see :mod:`koopman_tut.pruning.koopman`); each parameter group of
the optimizer has its own lr, momentum, dampening, Nesterov flag and weight decay, recorded by
:class:`koopman_tut.TrajectoryRecorder` in ``traj.meta['groups']`` (and ``group_lrs`` per snapshot).
"""
from __future__ import annotations

import warnings

import torch

from ..recording.trajectory import Trajectory

Tensor = torch.Tensor


def leaving(t: int, T: int) -> int:
    """Index of the lr logged for the step that leaves snapshot ``t``: the recorder logs with each
    snapshot the lr of the step that produced it, so the step t -> t+1 is logged at t+1 (the last
    snapshot, with no step after it in the window, uses its own)."""
    return t + 1 if t + 1 < T else t


def group_settings(traj: Trajectory, lr: float | None, t: int) -> list[tuple[Tensor | None, dict, float]]:
    """(rows (k,) long or None for all, optimizer settings, lr of the step leaving snapshot t) per parameter group.

    One entry for all rows unless ``traj.meta['groups']`` records several groups that differ in
    momentum, dampening, Nesterov or weight decay, or in their lr at that step. A group's lr is
    ``meta['group_lrs']`` when recorded (in memory); a recording reloaded from disk keeps one lr
    per snapshot, and each group's lr is then taken to follow the first group's schedule
    (with a warning: per-group schedules cannot be recovered from it).
    """
    groups = traj.meta.get("groups") or []
    group_lrs = traj.meta.get("group_lrs")
    T = len(traj)
    if len(groups) > 1 and group_lrs is None:
        warnings.warn(f"this window has {len(groups)} parameter groups but no per-group learning rates "
                      f"(meta['group_lrs']: a recording reloaded from disk keeps one lr per snapshot); each "
                      f"group's lr is taken to follow the first group's schedule", stacklevel=3)
    scale = _lr(traj, None, t) / groups[0]["lr"] if len(groups) > 1 and group_lrs is None and groups[0]["lr"] else 1.0
    lrs_t = ([float(v) for v in group_lrs[leaving(t, T)]] if group_lrs is not None
             else [gr["lr"] * scale for gr in groups])
    keys = ("momentum", "nesterov", "dampening", "weight_decay")
    if len({tuple(gr.get(k) for k in keys) for gr in groups}) <= 1 and len(set(lrs_t)) <= 1:
        # groups that agree: the top-level settings (the first group's) rule, so an edit of
        # traj.meta['momentum'] (e.g. a control with the correction switched off) takes effect
        return [(None, {**(groups[0] if groups else {}), **traj.meta}, _lr(traj, lr, t))]
    if lr is not None:
        raise ValueError(f"lr: this window has {len(groups)} parameter groups with their own settings "
                         f"(learning rates {lrs_t}); pass lr=None to use the recorded ones")
    where = dict(zip(traj.names, zip(traj.offsets[:-1], traj.offsets[1:])))
    out = []
    for gr, lr_g in zip(groups, lrs_t):
        rows = [torch.arange(int(where[n][0]), int(where[n][1])) for n in gr["names"] if n in where]
        if rows and not lr_g > 0:
            raise ValueError(f"lr: parameter group of {gr['names'][:3]} has learning rate {lr_g} at snapshot {t}; "
                             f"it must be > 0")
        if rows:
            out.append((torch.cat(rows), {**traj.meta, **gr}, lr_g))
    return out


def _lr(traj: Trajectory, lr: float | None, t: int) -> float:
    if lr is None:
        lrs = traj.meta.get("lrs")
        lr = float(lrs[leaving(t, len(traj))]) if lrs is not None and len(lrs) == len(traj) else traj.lr
    if lr is not None and (isinstance(lr, (bool, str, bytes)) or not hasattr(lr, "__float__")):
        raise TypeError(f"lr must be a positive learning rate (a number), got {lr!r} ({type(lr).__name__})")
    if lr is None or not lr > 0:
        raise ValueError(f"lr must be a positive learning rate (none recorded in traj.meta['lrs']), got {lr}")
    return float(lr)


def momentum_factor(mu: Tensor, meta: dict) -> Tensor:
    """Per-mode factor turning the step into the gradient (see module docstring); 1 for plain SGD."""
    opt = meta.get("optimizer")
    if opt not in (None, "SGD"):
        warnings.warn(f"koopman_gradient models torch.optim.SGD (with momentum / Nesterov); this window "
                      f"was recorded with {opt}, so the estimate is the step direction, not the gradient",
                      stacklevel=3)
        return torch.ones_like(mu)
    beta = float(meta.get("momentum", 0.0) or 0.0)
    damp = float(meta.get("dampening", 0.0) or 0.0)
    if beta == 0:
        return torch.ones_like(mu)
    if meta.get("nesterov", False):
        return (mu - beta) / ((1 + beta) * mu - beta) / (1 - damp)
    return (1 - beta / mu) / (1 - damp)

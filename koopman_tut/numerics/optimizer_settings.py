"""Reading the optimizer settings a recording's ``meta`` keeps: when recording started, and per snapshot.

:mod:`koopman_tut.recording.settings_log` writes them: ``meta['groups']`` (each parameter group's
settings when the recorder was built, and the top-level keys the first group's) and, where any
changed while recording, ``meta['group_settings']``: per snapshot, per group, the settings of the
step that produced it. The numerics that undo SGD steps (the secant limit, the delays of the
affine model) read them here. :func:`contraction` says how fast SGD with given settings converges on a quadratic.
"""
from __future__ import annotations

import math

import numpy as np

from .reals import is_finite

SGD_SETTINGS = ("momentum", "nesterov", "dampening", "weight_decay", "maximize")  # a group's, beside its lr


def settings_at(meta: dict, k: int) -> list[dict]:
    """Each parameter group's settings (momentum, dampening, weight_decay, nesterov, maximize) logged
    with snapshot ``k``: ``meta['group_settings'][k]`` where recorded, else those of ``meta['groups']``
    (the top-level settings where there are none)."""
    start = [{key: g.get(key) for key in SGD_SETTINGS if key in g} for g in (meta.get("groups") or [meta])]
    logged = meta.get("group_settings")
    if logged is None:
        return start
    row = logged[k]  # a key a logged dict lacks is the one the group started with
    return [{**(start[i] if len(start) == len(row) else {}), **g} for i, g in enumerate(row)]


def has_momentum(meta: dict) -> bool:
    """Whether any parameter group has momentum, when recording started or at a step logged since."""
    groups = [meta, *(meta.get("groups") or []), *(g for row in meta.get("group_settings") or [] for g in row)]
    return any(float(g.get("momentum", 0.0) or 0.0) > 0 for g in groups)


def other_momentum(meta: dict) -> bool:
    """``meta['other_momentum']``: whether an optimizer group holding none of the recorded parameters had
    momentum when the recorder was built (they are coupled to it through the loss; absent: False).
    TypeError unless it is True or False."""
    v = meta.get("other_momentum", False)
    if type(v) is not bool:
        raise TypeError(f"traj.meta['other_momentum'] must be True or False, got {v!r}")
    return v


def check_settings(meta: dict) -> None:
    """ValueError/TypeError naming the field unless the optimizer settings in ``meta`` are what a
    recorder writes: at the top level, in each of ``meta['groups']`` and of those logged per
    snapshot (``meta['group_settings']``, one list of dicts per snapshot), momentum and dampening
    in [0, 1) (a buffer that forgets; at dampening 1 it takes no gradient), weight decay a finite
    number >= 0, each None where absent, nesterov and maximize bools (or None), restarts a count;
    each group's ``lr`` and ``meta['lrs']`` numbers and ``meta['group_lrs']`` lists of numbers."""
    groups, logged = meta.get("groups") or [], meta.get("group_settings") or []
    other_momentum(meta)
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TypeError(f"traj.meta['groups'] must be a list of dicts (one per optimizer group), got {groups!r:.200}")
    if not isinstance(logged, list) or not all(isinstance(r, list) and r and all(isinstance(g, dict) for g in r)
                                               for r in logged):
        raise TypeError(f"traj.meta['group_settings'] must be a list (one per snapshot) of non-empty lists of "
                        f"dicts (one per optimizer group), got {logged!r:.200}")
    if groups and any(len(r) != len(groups) for r in logged):
        raise ValueError(f"traj.meta['group_settings'] must hold the settings of each of the {len(groups)} groups in "
                         f"traj.meta['groups'] at every snapshot, got rows of {sorted({len(r) for r in logged})}")
    lrs, group_lrs = meta.get("lrs") or [], meta.get("group_lrs") or []
    if not isinstance(lrs, list) or not all(map(_real, lrs)) or not isinstance(group_lrs, list) or not all(
            isinstance(r, list) and all(map(_real, r)) for r in group_lrs):  # their range: where they divide
        raise TypeError(f"traj.meta['lrs'] must be a list of numbers and traj.meta['group_lrs'] a list of lists of "
                        f"numbers (one per snapshot), got {lrs!r:.100} and {group_lrs!r:.100}")
    for i, g in enumerate(groups):
        if not _real(g.get("lr")):
            raise TypeError(f"traj.meta['groups'][{i}]['lr'] must be a number (the group's lr when recording "
                            f"started), got {g.get('lr')!r}")
    if meta.get("lr") is not None and not _real(meta["lr"]):
        raise TypeError(f"traj.meta['lr'] must be a number, got {meta['lr']!r}")
    bad = [v for v in [*lrs, *(v for r in group_lrs for v in r), *(g["lr"] for g in groups), meta.get("lr") or 0]
           if not _number(v)]
    if bad:  # as recorded: 0 freezes a group, and a schedule may set one below 0 (KGP refuses where it divides)
        raise ValueError(f"the learning rates in traj.meta ('lr', 'lrs', 'group_lrs', each group's 'lr') must be "
                         f"finite numbers, got {bad[0]!r}")
    for where, d in [("traj.meta", meta)] + [(f"traj.meta['groups'][{i}]", g) for i, g in enumerate(groups)] + [
            (f"traj.meta['group_settings'][{k}][{i}]", g) for k, r in enumerate(logged) for i, g in enumerate(r)]:
        check_group_settings(where, d)


def check_group_settings(where: str, d: dict) -> None:
    """ValueError naming ``where[key]`` unless the SGD settings in ``d`` (one group's, or the top level of a
    ``meta``) are what a Trajectory holds: momentum and dampening finite numbers in [0, 1), weight decay a
    finite number >= 0, restarts a count, nesterov and maximize bools; each may be absent or None. The check
    :func:`check_settings` makes of every group, and a recorder of the groups it logs (so what it records loads)."""
    for key, hi in (("momentum", 1.0), ("dampening", 1.0), ("weight_decay", math.inf)):
        v = d.get(key)
        if v is not None and not (_number(v) and 0 <= v < hi):
            raise ValueError(f"{where}[{key!r}] must be a finite number >= 0{' and < 1' if hi == 1 else ''} (an "
                             f"SGD setting), got {v!r}")
    v = d.get("restarts")
    if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
        raise ValueError(f"{where}['restarts'] must be a count (an int >= 0), got {v!r}")
    for key in ("nesterov", "maximize"):
        if d.get(key) is not None and not isinstance(d[key], bool):
            raise ValueError(f"{where}[{key!r}] must be True or False, got {d[key]!r}")


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v) -> bool:
    return _real(v) and is_finite(v)


def setting_drift(meta: dict, T: int, rows: list | None = None, theta=None, last=None) -> float:
    """How fast the optimizer's steps change along a window of T snapshots, per snapshot: the total
    variation of log(lr (1 - dampening)) plus that of log(1 - momentum) (a step's size in gradients
    once its buffer is steady is their ratio; the fast modes follow the momentum alone) over the
    steps logged with snapshots 1 .. T-1, the window's own, divided by their number. Per parameter
    group, weighted by the group's share of the tail ``theta - last`` ((n,) each: the estimate and
    the last snapshot), where ``rows`` (:func:`group_rows`) says which rows are the group's: a group
    already converged moves no tail. The largest over the groups (0 for a group whose lr is 0 throughout: it
    takes no step); math.inf where a step's lr is 0 or changes sign in the window, or its weight
    decay, Nesterov flag or momentum buffer (``restarts``) changes; 0 where nothing is logged per
    snapshot (``meta['lrs']``), or T < 3.

    An affine model of a window whose steps shrink by a factor (1 - delta) more each step fits each
    mode's rate as mu (1 - delta), and its tail, summed over 1/|1 - mu| = gain snapshots, misses by
    about delta gain of the distance still to go: check 7 of :mod:`koopman_tut.numerics.trust`, a
    first-order estimate, not a bound."""
    lrs = meta.get("group_lrs") or [[v] for v in (meta.get("lrs") or [])]
    if len(lrs) != T or T < 3:
        return 0.0
    if len({len(r) for r in lrs}) > 1:
        return math.inf
    steps = [settings_at(meta, k if "group_settings" in meta else 0) for k in range(1, T)]
    share = None  # each group's share of the tail, read from its own rows only where it is weighed
    if rows is not None and len(rows) == len(lrs[0]) and theta is not None:
        sq = [sum(float((theta[lo:hi].double() - last[lo:hi].double()).norm()) ** 2 for lo, hi in r) for r in rows]
        share = [math.sqrt(v / sum(sq)) for v in sq] if sum(sq) > 0 else None
    out = 0.0
    for g in range(len(lrs[0])):
        if all(lrs[k][g] == 0 for k in range(1, T)):
            continue  # a frozen group: it takes no step, whatever its other settings
        mine = [row[g] if g < len(row) else {} for row in steps]
        fixed = {(float(s.get("weight_decay") or 0), bool(s.get("nesterov")), s.get("restarts") or 0) for s in mine}
        size, keep = [], []
        for k, s in enumerate(mine, start=1):
            lr, beta, damp = lrs[k][g], float(s.get("momentum") or 0), float(s.get("dampening") or 0)
            if len(fixed) > 1 or not (lr != 0 and (lr > 0) == (lrs[1][g] > 0) and beta < 1 and damp < 1):
                return math.inf  # ... or an lr that stops, starts or changes sign (ascent: a step of constant sign)
            size.append(math.log(abs(lr) * (1 - damp)))
            keep.append(math.log(1 - beta))
        drift = sum(abs(b - a) for v in (size, keep) for a, b in zip(v, v[1:])) / (T - 2)
        out = max(out, drift * (share[g] if share else 1.0))
    return out


def group_rows(meta: dict, names: list[str], offsets: list[int]) -> list[list[tuple[int, int]]] | None:
    """Each parameter group's rows of a Trajectory's snapshots, (start, stop) per recorded name it holds
    (``meta['groups'][i]['names']``), or None for fewer than two groups."""
    groups = meta.get("groups") or []
    if len(groups) < 2:
        return None
    at = {n: (offsets[i], offsets[i + 1]) for i, n in enumerate(names)}
    return [[at[n] for n in (g.get("names") or []) if n in at] for g in groups]


def momentum_delays(meta: dict, n_snapshots: int | None = None) -> int:
    """Delays the affine model needs for a window recorded with these optimizer settings: 1 under heavy-ball
    or Nesterov momentum (a second-order recursion in theta), its own or an unrecorded group's it is coupled to
    (``meta['other_momentum']``), else 0; 0 also for a window too short to embed (fewer than 4 snapshots)."""
    if n_snapshots is not None and n_snapshots < 4:
        return 0
    return 1 if has_momentum(meta) or other_momentum(meta) else 0


def contraction(h: np.ndarray, lr: float, momentum: float, nesterov: bool, dampening: float) -> float:
    """Largest |root| of SGD's error recursion on a quadratic with Hessian eigenvalues ``h``: the
    factor per step by which the slowest error mode shrinks (< 1: training converges to x_star).

    Plain: e' = (1 - lr h) e. Heavy ball: z^2 - (1 + beta - lr (1 - dampening) h) z + beta.
    Nesterov: z^2 - (1 + beta)(1 - lr h) z + beta (1 - lr h)."""
    a = lr * np.asarray(h, dtype=np.float64)
    if momentum == 0:
        return float(np.abs(1 - a).max())
    if nesterov:
        polys = [(1.0, -(1 + momentum) * (1 - x), momentum * (1 - x)) for x in a]
    else:
        polys = [(1.0, -(1 + momentum - x * (1 - dampening)), momentum) for x in a]
    return max(float(np.abs(np.roots(p)).max()) for p in polys)

"""Check 8 of a Koopman gradient on its parameter group's own rows.

With several parameter groups whose settings differ, each group's gradient undoes its own lr and
momentum (:func:`.sgd_steps.group_settings`), and its fit check (check 8,
:func:`koopman_tut.numerics.step_fit.step_fit`) asks whether the model's step at t matches the recorded
one. Read on every row, one group's misfit flags another group's gradient, or hides behind the other
group's rows when those are larger: on the digits MLP with its two layers in two groups (full batch,
:file:`docs/trust.md`), gradients 12-25% off were trusted and gradients within 1% warned. So each group's
check reads the steps' Gram over that group's rows alone, (T, T) per group from one pass over its rows
(:func:`koopman_tut.numerics.snapshots.step_gram`; summed over ranks with ``group``), and the rounding
allowance scales with those rows' norm.
"""
from __future__ import annotations

import torch

from ..numerics.distributed import all_reduce_sum
from ..numerics.reduced import _data_floor, _frobenius
from ..numerics.refine import gram_factor
from ..numerics.snapshots import assemble_gram, deviation_from_steps, step_gram
from ..recording.trajectory import Trajectory

Tensor = torch.Tensor


def group_factors(traj: Trajectory, delays: int, group=None) -> dict[tuple[str, ...], tuple[Tensor, float]]:
    """{names of a group in ``traj.meta['groups']``: (Rd (q, T-1), data floor)} for two groups or more, else {}.

    Rd: a factor of the steps' Gram over the group's rows (Rd^H Rd = D_g^H D_g, D_g (rows, T-1) their steps);
    data floor: the stored data's rounding in those rows' embedded differences (``delays``), eps ||W_g||_F
    sqrt(delays + 1). A collective when ``group`` is given: every rank calls it, with its own rows.
    """
    groups = traj.meta.get("groups") or []
    if len(groups) < 2:
        return {}
    W, T = traj.snapshots, len(traj)
    where = dict(zip(traj.names, zip(traj.offsets[:-1], traj.offsets[1:])))
    saccs = torch.zeros(len(groups), T, T, dtype=torch.float64)  # each group's steps' Gram [d_0 .. d_{T-2}, r]
    for i, gr in enumerate(groups):
        for name in gr.get("names") or []:
            if name in where:
                lo, hi = (int(v) for v in where[name])
                saccs[i] += step_gram(W[lo:hi])  # a view of the rows: no copy
    if group is not None:
        saccs = all_reduce_sum(saccs, group)
    out = {}
    for gr, sacc in zip(groups, saccs):
        frob = _frobenius(torch.diagonal(assemble_gram(deviation_from_steps(sacc))))  # ||W_g||_F
        out[tuple(gr.get("names") or [])] = (gram_factor(sacc[: T - 1, : T - 1]), _data_floor(frob, W.dtype, delays))
    return out

"""Check 8 of a Koopman gradient on its parameter group's own rows.

With several parameter groups whose settings differ, each group's gradient undoes its own lr and
momentum (:func:`.sgd_steps.group_settings`), and its checks (the fit at t,
:func:`koopman_tut.numerics.step_fit.step_fit`, and the refit's spread, conditioning, truncation and
rounding) ask whether the model matches the recorded steps. Read on every row, one group's misfit flags
another group's gradient, or hides behind the other group's rows when those are larger: on the digits MLP
with its two layers in two groups (full batch, :file:`docs/trust.md`), gradients 12-25% off were trusted and
gradients within 1% warned. So each group's checks read a factor of the steps over that group's rows alone,
built as the whole window's is (:mod:`koopman_tut.numerics.reduced`): the steps' Gram over those rows (one
pass over them, :func:`koopman_tut.numerics.snapshots.step_gram`), and where that Gram cannot resolve what
float64 data holds, one more pass (:mod:`koopman_tut.numerics.refine`; without it a group whose late steps
fell below 1.5e-8 of its largest read a fit of 0, 21-55% off and trusted). Over ranks every group's Grams
are summed in one all-reduce per pass. The rounding allowance scales with those rows' norm.
"""
from __future__ import annotations

from functools import partial

import torch

from ..numerics.distributed import all_reduce_sum
from ..numerics.floors import gram_floors
from ..numerics.refine import gram_factor, preconditioned_step_gram, step_preconditioner
from ..numerics.snapshots import default_chunk_rows, deviation_from_steps, step_gram
from ..recording.trajectory import Trajectory

Tensor = torch.Tensor


def group_factors(traj: Trajectory, delays: int, group=None) -> dict[tuple[str, ...], tuple[Tensor, float]]:
    """{names of a group in ``traj.meta['groups']``: (Rd (q, T-1), data floor)} for two groups or more, else {}.

    Rd: a factor of the steps over the group's rows (Rd^H Rd = D_g^H D_g, D_g (rows, T-1) their steps), resolved
    as the whole window's; data floor: the stored data's rounding in those rows' embedded differences
    (``delays``), eps ||W_g||_F sqrt(delays + 1). Collectives when ``group`` is given: every rank calls it.
    """
    groups = traj.meta.get("groups") or []
    if len(groups) < 2:
        return {}
    W, T = traj.snapshots, len(traj)
    where = dict(zip(traj.names, zip(traj.offsets[:-1], traj.offsets[1:])))
    ranges = [_ranges(where, gr.get("names") or []) for gr in groups]
    saccs = _summed(W, ranges, [step_gram] * len(groups), group)  # (groups, T, T): each group's [d_0 .. d_{T-2}, r]
    out, refine = {}, {}
    for i, (gr, sacc) in enumerate(zip(groups, saccs)):
        Gd = sacc[: T - 1, : T - 1]
        floors = gram_floors(Gd, deviation_from_steps(sacc), W.dtype, delays)  # as the whole window's
        if floors.refine:  # float64 data finer than the Gram resolves
            refine[i] = step_preconditioner(Gd, floors.scale)
        out[tuple(gr.get("names") or [])] = (gram_factor(Gd), floors.data)
    if refine:  # the same groups on every rank: decided from the summed Grams
        G1 = _summed(W, [ranges[i] for i in refine],
                     [partial(preconditioned_step_gram, C=C) for C, _ in refine.values()], group)
        for G, i in zip(G1, refine):
            key = tuple(groups[i].get("names") or [])
            out[key] = (gram_factor(G) @ refine[i][1], out[key][1])
    return out


def _ranges(where: dict, names: list[str]) -> list[tuple[int, int]]:
    """The rows of ``names`` as (start, stop), adjacent ones merged (one pass per run of rows)."""
    spans = sorted((int(where[n][0]), int(where[n][1])) for n in names if n in where)
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and merged[-1][1] == lo:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _summed(W: Tensor, ranges: list[list[tuple[int, int]]], grams: list, group) -> Tensor:
    """(len(ranges), q, q): per entry, its ``grams`` function (a one-pass Gram of rows of W) summed over its row
    ranges (views of W, small ones joined), then over ``group``'s ranks in one all-reduce."""
    out = []
    for spans, gram in zip(ranges, grams):
        acc = gram(W[:0])  # zeros of the entry's shape: a rank may hold none of its rows
        for rows in _blocks(W, spans, default_chunk_rows(W.shape[-1])):
            acc += gram(rows)
        out.append(acc)
    stacked = torch.stack(out)
    return all_reduce_sum(stacked, group) if group is not None else stacked


def _blocks(W: Tensor, spans: list[tuple[int, int]], rows: int):
    """W's rows in ``spans``, as views where a span has at least ``rows`` rows, small ones joined (copied) into
    blocks of about that many: a pass per block, not per parameter tensor (4,000 biases: 0.1 ms each)."""
    block, size = [], 0
    for lo, hi in spans:
        if hi - lo >= rows:
            yield W[lo:hi]
            continue
        block.append(W[lo:hi])
        size += hi - lo
        if size >= rows:
            yield torch.cat(block)
            block, size = [], 0
    if block:
        yield torch.cat(block)

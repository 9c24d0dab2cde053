"""Check 8 of :mod:`.trust`: does the model's step at snapshot t match the recorded one, with the momentum undone?

A Koopman gradient is the model's step at t with the optimizer undone; the recorded steps say what the
optimizer did. Their misfit, read on the steps' factor Rd (||D x|| = ||Rd x||, no pass over W), is the
gradient's own misfit once the velocity momentum carries is taken out: d(t) - beta d(t-1) (see check 8 in
:mod:`.trust` and :func:`koopman_tut.pruning.sgd_steps.fit_betas`).
"""
from __future__ import annotations

import math

import torch

from .dmd_result import powers

Tensor = torch.Tensor


def step_fit(red, Rd: Tensor, k: int, t: int, beta: float = 0.0, rounding: float = 0.0) -> tuple[float, float]:
    """Check 8: (||m(t) - beta m(t-1)|| - rounding)+ / ||s(t) - beta s(t-1)||, s(u) the model ``red``'s step d(u)
    and m(u) it minus the recorded one (Rd (p, T-1) the steps' factor, ``k`` delays; t = T-1 read at T-2);
    ``rounding``: what the stored data's rounding can put there. beta: the momentum's carry-over the check
    undoes (see check 8 in the module notes and :func:`koopman_tut.pruning.sgd_steps.fit_betas`), or 0.
    Also rounding / ||d(t) - beta d(t-1)|| where that is >= 1 (the recorded step is no larger than its rounding,
    so nothing at t checks the model), else 0: check 3's share of a gradient.

    At t = 0 with beta > 0 no recorded step undoes the velocity the first step carries from before the window:
    the larger of the step's misfit at 0 and the combination's at 1 (the gradient read one snapshot later; the
    step alone hid misfits of 12-25%, docs/trust.md)."""
    n, t = Rd.shape[1], min(t, Rd.shape[1] - 1)
    if beta and t < 1:
        at_1 = step_fit(red, Rd, k, 1, beta, rounding) if n > 1 else (math.inf, 0.0)
        at_0 = step_fit(red, Rd, k, 0, 0.0, rounding)
        return max(at_0[0], at_1[0]), max(at_0[1], at_1[1])

    def step(u: int) -> Tensor:  # (T-1,) coefficients on Rd's columns of the model's d(u)
        j = min(max(u - k, 0), n - k - 1)  # d(u) is block j + k - u of the embedded difference e_j
        out = torch.zeros(n, dtype=Rd.dtype)
        out[u - j: u - j + n - k] = red.smoothed(powers(red.eigs, j)[:, 0])
        return out

    b = beta
    model = step(t) - b * step(t - 1) if b else step(t)
    recorded = torch.zeros(n, dtype=Rd.dtype)
    recorded[t] = 1.0
    if b:
        recorded[t - 1] = -b
    num = max(float(torch.linalg.vector_norm(Rd @ (model - recorded))) - rounding, 0.0)
    den, seen = float(torch.linalg.vector_norm(Rd @ model)), float(torch.linalg.vector_norm(Rd @ recorded))
    unseen = 0.0 if seen > rounding else (math.inf if seen == 0 else rounding / seen)
    return (num / den if den > 0 else (0.0 if num == 0 else math.inf)), unseen

"""The two rounding floors of a window's differences (see :mod:`koopman_tut.numerics.reduced`'s notes).

* the data's: eps(dtype) sqrt(delays + 1) ||W||_F, the stored numbers' rounding in the embedded differences;
* the Gram route's: 4 sqrt(eps64 (delays + 1)) ||S||_2, the smallest singular value of the (embedded)
  differences a float64 Gram of the steps S (or of the deviations D) resolves.

Where the Gram's floor lies above the data's (float64 data), the differences hold directions the Gram
cannot resolve, and the factor takes one more pass over W (:mod:`koopman_tut.numerics.refine`). The whole
window (:func:`koopman_tut.numerics.reduced.difference_factor`) and each parameter group's rows
(:mod:`koopman_tut.pruning.group_fit`) decide it by :func:`gram_floors`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .snapshots import assemble_gram

Tensor = torch.Tensor
EPS64 = torch.finfo(torch.float64).eps


class Floors(NamedTuple):
    """What a Gram route decides from: ``scale`` the largest singular value of what the Gram accumulated
    (the steps, or the deviations), ``frob`` = ||W||_F, and the two floors (module notes)."""

    scale: float
    frob: float
    data: float
    gram: float

    @property
    def refine(self) -> bool:
        """Whether the data (float64) holds finer directions than the Gram resolves."""
        return self.gram > self.data


def gram_floors(accumulated: Tensor, acc: Tensor, dtype: torch.dtype, delays: int) -> Floors:
    """The floors of a Gram route: ``accumulated`` (p, p) the Gram it summed (the steps' Gram, or the
    deviations' (T-1, T-1) block), ``acc`` (T, T) the deviations' Gram
    (:func:`~koopman_tut.numerics.snapshots.deviation_gram`'s matrix) for ||W||_F, ``dtype`` the data's."""
    scale = math.sqrt(max(float(torch.linalg.eigvalsh(accumulated)[-1]), 0.0)) if accumulated.numel() else 0.0
    frob = frobenius(torch.diagonal(assemble_gram(acc)))  # ||W||_F; the Gram's rounding is ~eps64 scale^2
    return Floors(scale, frob, data_floor(frob, dtype, delays), gram_floor(scale, delays))


def frobenius(sq: Tensor) -> float:
    """sqrt(sum(sq)) for the squared snapshot norms ``sq`` (T,), scaled so the sum cannot overflow."""
    top = float(sq.max().clamp_min(0))
    if not math.isfinite(top):
        raise ValueError("W^H W overflows: a snapshot's squared norm exceeds float64; rescale W")
    return math.sqrt(top) * math.sqrt(float((sq / top).clamp_min(0).sum())) if top > 0 else 0.0


def gram_floor(scale: float, delays: int) -> float:
    """4 sqrt(eps64 (delays + 1)) scale: the smallest singular value of the (embedded) differences the
    Gram route resolves, ``scale`` the largest of what its Gram accumulated."""
    return 4 * math.sqrt(EPS64 * (delays + 1)) * scale


def eps_of(dtype: torch.dtype) -> float:
    """eps of a floating dtype (float64's for any other)."""
    return torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps


def data_floor(frob: float, dtype: torch.dtype, delays: int) -> float:
    """eps(dtype) sqrt(delays + 1) ||W||_F: the stored data's rounding, in the embedded differences."""
    return eps_of(dtype) * math.sqrt(delays + 1) * frob

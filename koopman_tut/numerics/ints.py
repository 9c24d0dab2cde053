"""Integer arguments given as 0-d tensors: read as the int they hold, as torch's own functions take them
(``torch.manual_seed``, ``nn.Linear``, ``topk``), before the caller's check of the integer; real numbers
given as one-element tensors or arrays (:func:`plain_number`), before the caller's check of the number; and
indices into r modes (:func:`mode_indices`), checked."""
from __future__ import annotations

import numpy as np
import torch


def plain_int(value):
    """A 0-d integer tensor as its int; anything else (floats, bools, complex, other shapes) as it is."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not (value.is_floating_point() or value.is_complex()
                                                                    or value.dtype == torch.bool):
        return int(value)
    return value


def plain_number(value):
    """A one-element real (integer or floating) tensor or array as its Python number; anything else (bools,
    complex, text, other sizes) as it is, for the caller's check to refuse."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not (value.is_complex() or value.dtype == torch.bool):
        return value.item()
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return value.item()
    return value


def mode_indices(name: str, indices, rank: int) -> torch.Tensor:
    """``indices`` (an int, a sequence of them, an integer tensor or array) as (k,) long indices in [-rank, rank),
    at least one; TypeError / ValueError naming ``name`` otherwise."""
    idx = None if isinstance(indices, str) else torch.as_tensor(indices).reshape(-1)
    if idx is not None and idx.numel() == 0:
        raise ValueError(f"{name} is empty: give at least one mode index, in [-{rank}, {rank - 1}]")
    if idx is None or idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"{name} must be integer mode indices, got {indices!r}")
    if not bool(((idx >= -rank) & (idx < rank)).all()):
        raise ValueError(f"{name} must be mode indices in [-{rank}, {rank - 1}] (rank {rank}), got {idx.tolist()}")
    return idx.long()

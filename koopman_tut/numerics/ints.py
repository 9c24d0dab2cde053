"""Integer arguments given as 0-d tensors: read as the int they hold, as torch's own functions take them
(``torch.manual_seed``, ``nn.Linear``, ``topk``), before the caller's check of the integer; and real numbers
given as one-element tensors or arrays (:func:`plain_number`), before the caller's check of the number."""
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

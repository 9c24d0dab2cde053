"""Integer arguments given as 0-d tensors: read as the int they hold, as torch's own functions take them
(``torch.manual_seed``, ``nn.Linear``, ``topk``), before the caller's check of the integer."""
from __future__ import annotations

import torch


def plain_int(value):
    """A 0-d integer tensor as its int; anything else (floats, bools, complex, other shapes) as it is."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not (value.is_floating_point() or value.is_complex()
                                                                    or value.dtype == torch.bool):
        return int(value)
    return value

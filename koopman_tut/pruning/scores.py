"""The classic scores: magnitude |theta| (GMP) and gradient saliency.

Gradient saliency |theta * dL/dtheta| is ShrinkBench's GlobalMagGrad (Blalock et al. 2020),
the baseline Redman et al. (ICLR 2022) compare Koopman gradient pruning with.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..recording.params import current_value, layer_parameters, parameter

Scores = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- plain scores
def magnitude_scores(model: nn.Module) -> Scores:
    """{name: |theta|} for every conv/linear weight and bias (GMP)."""
    return {n: current_value(model, n).detach().abs().clone() for n in layer_parameters(model)}


def gradients(model: nn.Module, loader, n_batches: int = 1, loss_fn: Callable = F.cross_entropy,
              device=None) -> dict[str, torch.Tensor]:
    """{name: dL/dtheta}, the gradient of the mean per-example loss over the examples of the first
    ``n_batches`` batches (signed), at the model's current parameters, for every conv/linear
    weight and bias.

    Each batch's mean loss is weighted by its number of examples, so a short last batch counts
    as much as its examples, not as much as a full batch: with every batch of a loader, the
    result is the gradient of the loss over the whole data set, whatever the batch size or order.
    ``loss_fn`` must average over the batch (``reduction="mean"``, the default of PyTorch's losses).
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    names = layer_parameters(model)
    device = device or next(model.parameters()).device
    params = {n: parameter(model, n) for n in names}  # pruned: d/d(weight_orig) is already masked
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    seen, examples = 0, 0
    for x, y in loader:
        if seen >= n_batches:
            break
        loss = loss_fn(model(x.to(device)), y.to(device))
        size = len(y)
        for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                grads[n] += g * size
        seen, examples = seen + 1, examples + size
    model.train(was_training)
    if seen == 0 or examples == 0:
        raise ValueError("loader yielded no batches" if seen == 0 else "loader yielded only empty batches")
    return {n: g / examples for n, g in grads.items()}


def gradient_scores(model: nn.Module, loader, n_batches: int = 1, form: str = "theta_grad",
                    loss_fn: Callable = F.cross_entropy, device=None) -> Scores:
    """Gradient saliency from ``n_batches`` batches: |theta * dL/dtheta| ('theta_grad', ShrinkBench's
    GlobalMagGrad) or |dL/dtheta| ('grad')."""
    if form not in ("theta_grad", "grad"):
        raise ValueError(f"form must be 'theta_grad' or 'grad', got {form!r}")
    grads = gradients(model, loader, n_batches, loss_fn, device)
    if form == "grad":
        return {n: g.abs() for n, g in grads.items()}
    return {n: (g * current_value(model, n).detach()).abs() for n, g in grads.items()}

"""The classic scores: magnitude |theta| (GMP) and gradient saliency.

Gradient saliency |theta * dL/dtheta| is ShrinkBench's GlobalMagGrad (Blalock et al. 2020),
the baseline Redman et al. (ICLR 2022) compare Koopman gradient pruning with.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..recording.params import current_value, layer_parameters, parameter
from ..recording.recorder_checks import _check_int
from ..recording.validation import check_device

Scores = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- plain scores
def magnitude_scores(model: nn.Module) -> Scores:
    """{name: |theta|} for every conv/linear weight and bias (GMP)."""
    return {n: current_value(model, n).detach().abs().clone() for n in layer_parameters(model)}


@contextmanager
def _train_mode_restored(model: nn.Module, params: list[torch.Tensor], device):
    """Train mode (ShrinkBench's get_param_gradients) with gradients enabled for ``params``; on exit every
    module's training flag, every buffer (BatchNorm running statistics, num_batches_tracked), the
    requires_grad flags and the global RNG states (CPU, and the CUDA devices in use) are as they were."""
    tensors = [*model.parameters(), *model.buffers()]
    cuda = {t.device.index or 0 for t in tensors if t.device.type == "cuda"}
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        cuda.add(device.index if device.index is not None else torch.cuda.current_device())
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    frozen = [p for p in params if not p.requires_grad]
    with torch.random.fork_rng(devices=sorted(cuda)), torch.enable_grad():
        try:
            model.train()
            for p in frozen:
                p.requires_grad_(True)
            yield
        finally:
            for p in frozen:
                p.requires_grad_(False)
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            for m, training in modes:
                m.training = training


def _batches(loader, n_batches: int):
    """The first ``n_batches`` (inputs, targets) pairs of ``loader``; TypeError for anything else.

    One batch more is drawn and dropped, as it always was: a loader's generator (its shuffling) moves
    as before, exhausted when all its batches are asked for."""
    for i, batch in enumerate(loader):
        if i >= n_batches:
            return
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(f"loader must yield (inputs, targets) pairs, got a {type(batch).__name__}"
                            + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                            + ": for a single batch pass [(x, y)]")
        yield batch


def gradients(model: nn.Module, loader, n_batches: int = 1, loss_fn: Callable = F.cross_entropy,
              device=None) -> dict[str, torch.Tensor]:
    """{name: dL/dtheta}, the gradient of the mean per-example loss over the examples of the first
    ``n_batches`` batches (signed), at the model's current parameters, for every conv/linear
    weight and bias.

    The model runs in train mode, as in training and in ShrinkBench's ``get_param_gradients``:
    BatchNorm normalises with the batch's statistics and dropout draws its masks. Nothing is
    left changed: afterwards every module has its training flag back, every buffer (BatchNorm
    running statistics, num_batches_tracked) its value, and the global RNG (CPU, and CUDA if used)
    its state, so a DataLoader shuffling with the global RNG gives the same order next time.
    Gradients are computed under ``torch.no_grad()`` too, and for frozen parameters
    (``requires_grad=False``) as for the others (the gradient the loss has with respect to them;
    their flag is restored).

    Each batch's mean loss is weighted by its number of examples, so a short last batch counts
    as much as its examples, not as much as a full batch: with every batch of a loader, the
    result is the gradient of the loss over the whole data set, whatever the batch size or order.
    ``loss_fn`` must average over the batch (``reduction="mean"``, the default of PyTorch's losses).
    ``device`` (default: the model's) is where the batches go, one this machine has; a model with no
    parameters is refused (ValueError).
    """
    n_batches = _check_int("n_batches", n_batches, 1)
    names = layer_parameters(model)  # TypeError for a model that is no nn.Module
    first = next(model.parameters(), None)
    if first is None:
        raise ValueError(f"model has no parameters ({type(model).__name__}): there is no gradient to take")
    device = first.device if device is None else check_device("device", device)
    params = {n: parameter(model, n) for n in names}  # pruned: d/d(weight_orig) is already masked
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    seen, examples = 0, 0
    with _train_mode_restored(model, list(params.values()), device):
        for x, y in _batches(loader, n_batches):
            loss = loss_fn(model(x.to(device)), y.to(device))
            size = len(y)
            for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
                if g is not None:
                    grads[n] += g * size
            seen, examples = seen + 1, examples + size
    if seen == 0 or examples == 0:
        raise ValueError("loader yielded no batches" if seen == 0 else "loader yielded only empty batches")
    if seen < n_batches:  # averaged over fewer batches than asked for: say so
        warnings.warn(f"n_batches={n_batches}, but the loader yielded {seen} batch(es) ({examples} examples): the "
                      f"gradient is their average", stacklevel=3)
    return {n: g / examples for n, g in grads.items()}


def gradient_scores(model: nn.Module, loader, n_batches: int = 1, form: str = "theta_grad",
                    loss_fn: Callable = F.cross_entropy, device=None) -> Scores:
    """Gradient saliency from ``n_batches`` batches: |theta * dL/dtheta| ('theta_grad', ShrinkBench's
    GlobalMagGrad) or |dL/dtheta| ('grad'), the gradient taken by :func:`gradients`: in train mode
    (BatchNorm on the batch's statistics), leaving the model's modes, buffers and the global RNG as
    they were; under ``torch.no_grad()`` too; frozen parameters scored like the others. On a model pruned
    with torch.nn.utils.prune the gradient is the trained tensor's (``weight_orig``, which the mask multiplies),
    so entries already pruned score 0 in both forms: they stay pruned."""
    if form not in ("theta_grad", "grad"):
        raise ValueError(f"form must be 'theta_grad' or 'grad', got {form!r}")
    grads = gradients(model, loader, n_batches, loss_fn, device)
    if form == "grad":
        return {n: g.abs() for n, g in grads.items()}
    return {n: (g * current_value(model, n).detach()).abs() for n, g in grads.items()}

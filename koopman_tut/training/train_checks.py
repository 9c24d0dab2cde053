"""What :func:`koopman_tut.training.train.train` checks before its steps and at each: how many steps, an
optimizer that trains the model, a finite loss, and a loader whose order a reseed would replay."""
from __future__ import annotations

import math
import warnings
import weakref

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, RandomSampler

from ..recording.params import _check_model
from ..recording.recorder_checks import _check_int, _owned
from ..recording.validation import check_real

OPTIMIZERS = ("nesterov", "sgd", "momentum", "adam")  # the names make_optimizer builds


def planned_steps(loader: DataLoader, epochs: float, max_steps: int | None) -> int:
    """The optimizer steps :func:`train` takes: ``epochs * len(loader)`` rounded up (a positive fraction of an
    epoch takes a step at least), at most ``max_steps``; TypeError or ValueError naming the argument otherwise."""
    try:
        batches = len(loader)
    except TypeError:
        raise TypeError(f"loader must be a DataLoader with a length (batches per epoch), got "
                        f"{type(loader).__name__}") from None
    if batches == 0:
        raise ValueError("loader holds no batches: nothing to train on")
    share = check_real("epochs", epochs, 0) * batches
    n = max(math.ceil(round(share, 6)), 1 if share > 0 else 0)  # 0.3 * 10 is 3, not 4; 1e-8 is 1, not 0
    if max_steps is None:
        return n
    return min(n, _check_int("max_steps", max_steps, 0))


def check_trains(model: nn.Module, optimizer) -> None:
    """TypeError unless ``model`` is an nn.Module and ``optimizer`` an optimizer or a name; ValueError for an
    optimizer that trains none of the model's parameters (by identity: built over another model, or a copy)."""
    _check_model(model)
    if isinstance(optimizer, str):
        return
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or a name {OPTIMIZERS}, got {optimizer!r} "
                        f"({type(optimizer).__name__})")
    owned = _owned(optimizer)
    if not any(id(p) in owned for p in model.parameters()):
        raise ValueError("optimizer trains none of model's parameters: training would change nothing. Pass the "
                         "optimizer that trains this model (built over its own parameters, not another model's or "
                         "a copy's), or a name such as 'nesterov'")


def named_settings(optimizer, **given) -> dict:
    """For an optimizer given by name, its settings (``given``, those None as :func:`make_optimizer`'s defaults:
    lr 0.1, momentum 0.9, weight_decay 0); for one already built, {} and ValueError if any was given: it trains
    with its own (they would be ignored)."""
    given = {k: v for k, v in given.items() if v is not None}
    if isinstance(optimizer, str):
        return {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, **given}
    if given:
        raise ValueError(f"{', '.join(f'{k}={v!r}' for k, v in given.items())} would be ignored: optimizer is "
                         f"already built and trains with its own settings; set them in optimizer.param_groups")
    return {}


def finite_loss(loss: torch.Tensor, step: int, opt: torch.optim.Optimizer) -> float:
    """The loss as a float; FloatingPointError naming the step and the learning rates where it is inf or NaN (a step
    from it would carry inf or NaN into every weight and every snapshot after it)."""
    value = loss.item()
    if not math.isfinite(value):
        lrs = ", ".join(map(str, sorted({g.get("lr") for g in opt.param_groups}, key=str)))
        raise FloatingPointError(f"training diverged: the loss is {value} at step {step} (lr {lrs}), so the weights "
                                 f"and any snapshot from here on would be inf or NaN. Lower the learning rate (the "
                                 f"optimizer's, lr= with a named one, or -p LR)")
    return value


_RESEEDED = weakref.WeakKeyDictionary()  # {shuffled loader drawing from torch's generator: the seed train() set}


def warn_replay(loader, seed: int) -> None:
    """A UserWarning where ``loader`` shuffles with torch's own generator and :func:`train` reseeds it with the
    seed it set for this loader last time: the call would replay that call's order."""
    sampler = getattr(loader, "sampler", None)
    sampler = getattr(sampler, "sampler", sampler)  # a BatchSampler's own (data.loader's route for tensors)
    if not isinstance(sampler, RandomSampler) or sampler.generator is not None:
        return  # in order, or shuffled by a generator of its own
    if loader in _RESEEDED and _RESEEDED[loader] == seed:
        warnings.warn(f"train(seed={seed}) reseeds torch's generator, which this loader's shuffling draws from: this "
                      f"call replays the batch order of its last call with that seed. Pass seed=None after the first "
                      f"call, or a loader with its own generator (data.loader(..., generator=g), data.loaders(seed=))",
                      stacklevel=3)
    _RESEEDED[loader] = seed

"""Training, evaluation and fine-tuning loops: seeded, device-agnostic, with progress bars.

Defaults follow ShrinkBench (Blalock et al. 2020), the framework Redman et al. (ICLR 2022)
built on; the paper does not state its optimizer, so ShrinkBench's defaults are the tutorial's
choice: SGD with Nesterov momentum 0.9, batch size 128. Plain SGD (no momentum) makes each step
exactly -lr * gradient, the setting in which Koopman gradient pruning is exact.
"""
from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..recording.params import _check_model
from ..recording.validation import check_device, check_positive, check_real, check_seed
from .train_checks import OPTIMIZERS, check_trains, finite_loss, named_settings, planned_steps, warn_replay  # noqa

DEVICES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def resolve_device(device="auto") -> torch.device:
    """'auto' (or None) -> CUDA when available, else CPU; anything else (a str such as 'cpu' or 'cuda:1', a
    torch.device, a CUDA index) as a torch.device this machine has: TypeError / ValueError naming ``device``
    otherwise (:func:`koopman_tut.recording.validation.check_device`)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device("device", device)


def device_problem(device) -> str | None:
    """Why ``device`` cannot be used for training on this machine, or None if it can.

    Parameters
    ----------
    device : str
        'auto' (CUDA when available, else CPU: :func:`resolve_device`), 'cpu', 'cuda',
        'cuda:N' or 'mps'.

    Returns
    -------
    str or None
        A phrase naming the value: it is none of those forms, or it asks for CUDA (device N) or
        MPS that this machine does not have.
    """
    m = re.fullmatch(r"auto|cpu|mps|cuda(?::(\d+))?", device) if isinstance(device, str) else None
    if m is None:
        return f"{device!r} is not {DEVICES}"
    n_cuda = torch.cuda.device_count() if device.startswith("cuda") and torch.cuda.is_available() else 0
    if device.startswith("cuda") and n_cuda == 0:
        return f"{device!r} asks for CUDA, but torch.cuda.is_available() is False here: use 'auto' or 'cpu'"
    if m.group(1) is not None and int(m.group(1)) >= n_cuda:
        return f"{device!r} asks for CUDA device {m.group(1)}, but this machine has {n_cuda} (cuda:0..{n_cuda - 1})"
    if device == "mps" and not torch.backends.mps.is_available():
        return f"{device!r} asks for MPS, but torch.backends.mps.is_available() is False here: use 'auto' or 'cpu'"
    return None


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    seed = check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, name: str = "nesterov", lr: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """'nesterov' (ShrinkBench's default), 'momentum' (heavy ball), 'sgd' (plain) or 'adam'."""
    value = float(lr) if isinstance(lr, torch.Tensor) and lr.numel() == 1 and lr.is_floating_point() else lr
    check_positive("lr", value)  # a 1-element tensor lr, as torch's optimizers take, is read as its value
    _check_model(model)
    if check_real("momentum", momentum, 0) >= 1:  # torch takes it, and the velocity then never decays
        raise ValueError(f"momentum must be a finite number in [0, 1), got {momentum!r}")
    check_real("weight_decay", weight_decay, 0)
    for dtype in {p.dtype for p in model.parameters() if p.is_floating_point()}:  # torch fails "without overflow"
        if value > torch.finfo(dtype).max:
            raise ValueError(f"lr={lr!r} overflows the model's {dtype} parameters (their largest value is "
                             f"{torch.finfo(dtype).max:.3g}): no step can be taken with it. Lower the learning rate")
    params = model.parameters()
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


_COUNTER = "koopman_tut_steps"  # a key of param_groups[0]: copied by deepcopy, saved by state_dict()
_HOOKED = "_koopman_tut_counting"  # set on the optimizer object that runs the counting hook


def steps_taken(optimizer: torch.optim.Optimizer) -> int:
    """Optimizer steps taken since this counter was attached to ``optimizer``: the package's
    one step counter (read by experiments and recorders). The first call attaches it at 0;
    :func:`train` and :func:`koopman_tut.training.experiments.setup` attach it before any step.

    The count lives in ``optimizer.param_groups[0]`` (PyTorch's optimizers ignore keys they do
    not know), so a ``copy.deepcopy`` of the optimizer (or of a whole setup) and an optimizer
    restored with ``load_state_dict`` go on counting from where the original stood; the step
    hook, which ``deepcopy`` does not carry over, is attached again on first use.
    """
    group = optimizer.param_groups[0]
    group.setdefault(_COUNTER, 0)
    if not getattr(optimizer, _HOOKED, False):
        def count(opt, args, kwargs):
            opt.param_groups[0][_COUNTER] = opt.param_groups[0].get(_COUNTER, 0) + 1
        optimizer.register_step_post_hook(count)
        setattr(optimizer, _HOOKED, True)
    return int(group[_COUNTER])


@dataclass
class History:
    """Per-epoch training loss and accuracy, steps taken, and test metrics if evaluated."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    steps: int = 0

    def add_epoch(self, seen: int, loss_sum: float, correct: int, test: tuple[float, float] | None) -> None:
        """Record an epoch's mean training loss and accuracy over its ``seen`` samples, and ``test`` (loss,
        accuracy) where evaluated."""
        self.train_loss.append(loss_sum / seen)
        self.train_acc.append(correct / seen)
        if test is not None:
            self.test_loss.append(test[0])
            self.test_acc.append(test[1])


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device=None) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy in [0, 1]) of the model on a loader, its batches sent to ``device``
    (default: the model's own, that of its first parameter or buffer; the CPU for a model with neither)."""
    was_training = model.training
    device = resolve_device(device) if device is not None else _model_device(model)
    model.eval()
    total, loss, correct = 0, 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss += float(F.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    if total == 0:
        raise ValueError("loader holds no samples: there is nothing to evaluate on")
    return loss / total, correct / total


def accuracy(model: nn.Module, loader: DataLoader, device=None) -> float:
    """Test accuracy in [0, 1], on the model's own device unless ``device`` is given."""
    return evaluate(model, loader, device)[1]


def _model_device(model: nn.Module) -> torch.device:
    return next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device


def train(model: nn.Module, loader: DataLoader, epochs: float = 1, optimizer: torch.optim.Optimizer | str = "nesterov",
          lr: float | None = None, momentum: float | None = None, weight_decay: float | None = None,
          max_steps: int | None = None, test_loader: DataLoader | None = None, seed: int | None = 0, device="auto",
          progress: bool = True, desc: str = "train") -> History:
    """Train with cross-entropy; returns a History.

    Parameters
    ----------
    optimizer : an optimizer already built over ``model``'s parameters, some or all (its state is kept, so
        recorders hooked to it see every step), or a name for :func:`make_optimizer`.
    lr, momentum, weight_decay : the named optimizer's (None: 0.1, 0.9, 0); refused beside a built one.
    epochs : passes over ``loader``, a fraction included: ``epochs * len(loader)`` optimizer steps,
        rounded up; ``max_steps`` (an int >= 0) stops earlier.
    seed : seeds torch first (None: not); the loader's generator decides the order. A shuffled loader without
        one (:func:`koopman_tut.training.data.loaders` gives one) draws from torch's: a seed used again replays it.
    device : 'auto', or a device this machine has (:func:`resolve_device`).

    Raises
    ------
    TypeError, ValueError : naming the argument, before any step (a model that is no nn.Module, an optimizer
        that is neither one nor a name or trains none of the model's parameters, a bad device).
    FloatingPointError : the loss became inf or NaN (training diverged: an lr too large), before that step.
    """
    n_steps = planned_steps(loader, epochs, max_steps)
    check_trains(model, optimizer)
    settings = named_settings(optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay)
    device = resolve_device(device)
    if seed is not None:
        warn_replay(loader, seed)
        set_seed(seed)
    model.to(device)
    opt = make_optimizer(model, optimizer, **settings) if isinstance(optimizer, str) else optimizer
    steps_taken(opt)  # attach the step counter before the first step
    hist = History()
    bar = tqdm(total=n_steps, desc=desc, disable=not progress, leave=False)
    for _ in range(math.ceil(epochs) if n_steps else 0):  # whole passes over the loader, the last one cut short
        model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        for x, y in loader:
            if hist.steps >= n_steps:
                break
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(out := model(x), y)
            value = finite_loss(loss, hist.steps, opt)
            loss.backward()
            opt.step()
            hist.steps += 1
            seen += len(y)
            loss_sum += value * len(y)
            correct += int((out.argmax(1) == y).sum())
            bar.update(1)
        if seen:
            test = evaluate(model, test_loader, device) if test_loader is not None else None
            hist.add_epoch(seen, loss_sum, correct, test)
            bar.set_postfix(loss=f"{hist.train_loss[-1]:.3f}", acc=f"{hist.train_acc[-1]:.3f}")
        if hist.steps >= n_steps:
            break
    bar.close()
    return hist


def finetune(model: nn.Module, loader: DataLoader, epochs: float = 1, lr: float | None = None,
             optimizer: torch.optim.Optimizer | str = "nesterov", **kwargs) -> History:
    """Train a pruned model further ("refine"); masks applied with torch.nn.utils.prune persist. ``lr``: the
    named optimizer's (None: 0.01); as :func:`train`, refused with an optimizer already built."""
    lr = 0.01 if lr is None and isinstance(optimizer, str) else lr
    return train(model, loader, epochs=epochs, optimizer=optimizer, lr=lr, desc="fine-tune", **kwargs)

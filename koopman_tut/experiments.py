"""The paper's experiments as short functions, so each notebook cell stays a few lines.

Redman et al. (ICLR 2022, arXiv:2110.14856): prune by a score at several compressions,
measure accuracy right after pruning and after one epoch of fine-tuning ("refinement"),
and compare which parameters two rules prune.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from . import pruning as P
from .data import get_datasets, loaders
from .models import DEFAULT_MODEL, get_model
from .train import evaluate, finetune, make_optimizer, resolve_device, train
from .trajectory import Trajectory, TrajectoryRecorder


@dataclass
class Setup:
    """A model with its optimizer and data, ready for Algorithm 1."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_loader: torch.utils.data.DataLoader
    test_loader: torch.utils.data.DataLoader
    device: torch.device
    steps: int = 0  # optimizer steps taken so far


def setup(dataset: str = "digits", model: str = "auto", seed: int = 0, batch_size: int = 128,
          optimizer: str = "nesterov", lr: float = 0.05, momentum: float = 0.9, device="auto",
          full_batch: bool = False, root=None, download: bool = False, **model_kwargs) -> Setup:
    """Data, model (``"auto"``: the dataset's default) and optimizer, all seeded by ``seed``."""
    dev = resolve_device(device)
    name = DEFAULT_MODEL[dataset] if model == "auto" else model
    flatten = name in ("mlp", "lenet300100")
    tr, te = get_datasets(dataset, seed=seed, root=root, download=download, flatten=flatten)
    trl, tel = loaders(tr, te, batch_size=batch_size, seed=seed, full_batch=full_batch)
    net = get_model(name, seed=seed, **model_kwargs).to(dev)
    return Setup(net, make_optimizer(net, optimizer, lr, momentum), trl, tel, dev)


def run(s: Setup, steps: int, seed: int | None = None, progress: bool = False) -> None:
    """Train ``steps`` more optimizer steps (across epochs as needed)."""
    if steps <= 0:
        return
    epochs = steps / max(len(s.train_loader), 1) + 1
    h = train(s.model, s.train_loader, epochs=epochs, max_steps=steps, optimizer=s.optimizer, device=s.device,
              seed=seed, progress=progress)
    s.steps += h.steps


def record(s: Setup, steps: int, every: int = 1, seed: int | None = None, progress: bool = False,
           dtype=torch.float32) -> Trajectory:
    """Algorithm 1, steps 1-2: train ``steps`` more steps, recording theta every ``every`` steps
    (the current state included). Returns the window as a Trajectory (its own copy)."""
    with TrajectoryRecorder(s.model, s.optimizer, every=every, start=s.steps, stop=s.steps + steps,
                            step0=s.steps, dtype=dtype) as rec:
        run(s, steps, seed=seed, progress=progress)
    return rec.trajectory(copy=True)


def accuracy(model: nn.Module, loader, device=None) -> float:
    return evaluate(model, loader, device or next(model.parameters()).device)[1]


def sweep(model: nn.Module, scores: dict[str, P.Scores], compressions, test_loader, train_loader=None,
          finetune_epochs: float = 0, finetune_lr: float = 0.01, seed: int = 0,
          random_baseline: bool = True) -> list[dict]:
    """Accuracy vs compression for several scoring rules (Fig. 1 of the paper).

    Returns rows {method, compression, accuracy, accuracy_finetuned (if fine-tuned)}; every
    pruned model is a copy, so ``model`` is left as it is. ``random`` is a random global mask.
    Every copy is fine-tuned on the same batch sequence (a loader reseeded with ``seed``), so
    the rules are compared fairly and ``train_loader``'s own shuffling is left untouched.
    """
    rows = []
    methods = dict(scores)
    if random_baseline:
        methods["random"] = None
    for c in compressions:
        for name, sc in methods.items():
            m = copy.deepcopy(model)
            masks = P.random_masks(m, c, seed=seed) if sc is None else P.global_masks(sc, c, model=m)
            P.apply_masks(m, masks)
            row = {"method": name, "compression": c, "accuracy": accuracy(m, test_loader)}
            if finetune_epochs and train_loader is not None:
                same_batches = DataLoader(train_loader.dataset, batch_size=train_loader.batch_size, shuffle=True,
                                          generator=torch.Generator().manual_seed(seed))
                finetune(m, same_batches, epochs=finetune_epochs, lr=finetune_lr, seed=seed, progress=False,
                         device=next(m.parameters()).device)
                row["accuracy_finetuned"] = accuracy(m, test_loader)
            rows.append(row)
    return rows


def overlaps(model: nn.Module, a: P.Scores, b: P.Scores, compressions) -> dict[float, float]:
    """{compression: share of pruned entries that rules a and b have in common}."""
    return {c: P.mask_overlap(P.global_masks(a, c, model=model), P.global_masks(b, c, model=model))
            for c in compressions}


def table(rows: list[dict], value: str = "accuracy", digits: int = 3) -> str:
    """Rows from :func:`sweep` as text: one line per method, one column per compression."""
    comps = sorted({r["compression"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [f"{value:>20s} " + " ".join(f"{c:>7g}" for c in comps)]
    for m in methods:
        vals = {r["compression"]: r.get(value) for r in rows if r["method"] == m}
        lines.append(f"{m:>20s} " + " ".join(f"{vals[c]:7.{digits}f}" if vals.get(c) is not None else "      -"
                                             for c in comps))
    return "\n".join(lines)


def pick(rows: list[dict], method: str, value: str = "accuracy") -> list[float]:
    """The values of one method's rows, in compression order."""
    return [r[value] for r in sorted(rows, key=lambda r: r["compression"]) if r["method"] == method]

"""Prune copies of a model by several rules at several compressions and compare them (the paper's Fig. 1):
accuracy before and after fine-tuning, the share of the first rule's kept weights each keeps, and the
random baseline and its chance level."""
from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.utils.prune as prune

from .data import batch_size_of, loader
from ..pruning import Scores, apply_masks, global_masks, kept_overlap, random_masks
from .train import accuracy, finetune
from ..recording.params import in_use, parameter
from ..recording.recorder_checks import _check_int
from ..recording.validation import check_real


@dataclass
class PruneRow:
    """One rule at one compression. ``overlap``: share of the first rule's kept entries this
    rule keeps too (1 for the first rule). For "random", means over independent masks, with
    their standard deviation in ``accuracy_std``."""

    method: str
    compression: float
    accuracy: float
    accuracy_finetuned: float | None = None
    overlap: float = 1.0
    kept_by_layer: dict[str, float] = field(default_factory=dict)
    accuracy_std: float = 0.0


def _copy(model: nn.Module) -> nn.Module:
    """copy.deepcopy of ``model``, also of one pruned with torch.nn.utils.prune: after a forward pass with
    gradients its masked weights are non-leaf tensors, which deepcopy refuses. The copy gets them detached
    (its forward pre-hook recomputes them from ``weight_orig`` and ``weight_mask``); ``model`` is untouched."""
    memo = {}
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            value = getattr(module, getattr(hook, "_tensor_name", ""), None)
            if isinstance(hook, prune.BasePruningMethod) and isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(model, memo)


def _evaluate_masks(model, masks, test_loader, train_loader, finetune_epochs, finetune_lr, seed):
    m = _copy(model)
    apply_masks(m, masks)
    before, after = accuracy(m, test_loader), None
    if finetune_epochs and train_loader is not None:
        same_batches = loader(train_loader.dataset, batch_size_of(train_loader), shuffle=True,
                              generator=torch.Generator().manual_seed(seed))
        finetune(m, same_batches, epochs=finetune_epochs, lr=finetune_lr, seed=seed, progress=False,
                 device=next(m.parameters()).device)
        after = accuracy(m, test_loader)
    return before, after


def compare(model: nn.Module, scores: dict[str, Scores], compressions, test_loader, train_loader=None,
            finetune_epochs: float = 0, finetune_lr: float = 0.01, random: int = 3, seed: int = 0,
            **mask_options) -> list[PruneRow]:
    """Prune copies of ``model`` by each named score at each compression (Fig. 1 of the paper).

    Parameters
    ----------
    scores : {rule name: {parameter name: score tensor}}; the first rule is the reference
        for ``overlap``.
    finetune_epochs : fine-tune each pruned copy this long (masks kept) on ``train_loader``,
        every copy on the same reseeded batch sequence, so rules are compared fairly.
    mask_options : keywords of :func:`koopman_tut.pruning.global_masks` for every mask, the random ones
        included (``classifier=``, ``exclude=``, ``prune_bias=``).
    random : number of independent random masks (their own generator, draws 0..random-1 of ``seed``:
        independent of every other seed's)
        averaged into a "random" row; 0 for none.

    Returns
    -------
    list of PruneRow: for each compression in the order given, each rule in the order of ``scores``, then
    "random" (its kept fractions per layer averaged over the draws). ``model`` itself is left untouched.
    :func:`pick` reads one rule's values sorted by compression.
    """
    if check_real("finetune_epochs", finetune_epochs, 0) and train_loader is None:
        raise ValueError(f"finetune_epochs={finetune_epochs!r} needs train_loader= to fine-tune on (or pass 0)")
    _check_int("random", random, 0)
    rows = []
    for c in _compressions(compressions):
        first = None
        for name, sc in scores.items():
            masks = global_masks(sc, c, model=model, **mask_options)
            first = masks if first is None else first
            before, after = _evaluate_masks(model, masks, test_loader, train_loader, finetune_epochs,
                                            finetune_lr, seed)
            rows.append(PruneRow(name, c, before, after, kept_overlap(first, masks),
                                 {n: float(v.float().mean()) for n, v in masks.items()}))
        if random:
            runs = [(_evaluate_masks(model, m, test_loader, train_loader, finetune_epochs, finetune_lr, seed),
                     kept_overlap(first, m) if first is not None else 1.0, m)
                    for m in (_named_like(random_masks(model, c, seed=seed, draw=i, **mask_options), first, model)
                              for i in range(random))]
            accs = np.array([r[0][0] for r in runs])
            fts = [r[0][1] for r in runs]
            rows.append(PruneRow("random", c, float(accs.mean()),
                                 None if fts[0] is None else float(np.mean(fts)),
                                 float(np.mean([r[1] for r in runs])),
                                 {n: float(np.mean([float(r[2][n].float().mean()) for r in runs])) for n in runs[0][2]},
                                 float(accs.std())))
    return rows


def _named_like(masks: dict, like: dict | None, model: nn.Module) -> dict:
    """``masks`` keyed by ``like``'s names where both name one tensor (tied weights: random_masks names a tied
    tensor by its first name, a rule's scores may use another)."""
    name = {id(parameter(model, n)): n for n in like or {}}
    return {name.get(id(parameter(model, n)), n): m for n, m in masks.items()}


def _compressions(compressions) -> list:
    """One compression or several, as a list; ValueError naming ``compressions`` for none or a repeat (a
    table keyed by compression would show one of the repeated rows, and lists zipped with it would shift)."""
    cs = [compressions] if isinstance(compressions, numbers.Real) else list(compressions)
    if not cs or len(set(cs)) != len(cs):
        raise ValueError(f"compressions must be one number or distinct numbers, got {compressions!r}")
    return cs


def table(rows: list[PruneRow], value: str = "accuracy", digits: int = 3) -> str:
    """Rows as text: one line per rule, one column per compression."""
    comps = sorted({r.compression for r in rows})
    methods = list(dict.fromkeys(r.method for r in rows))
    lines = [f"{value:>20s} " + " ".join(f"{c:>7g}" for c in comps)]
    for m in methods:
        vals = {r.compression: getattr(r, value) for r in rows if r.method == m}
        lines.append(f"{m:>20s} " + " ".join(f"{vals[c]:7.{digits}f}" if vals.get(c) is not None else "      -"
                                             for c in comps))
    return "\n".join(lines)


def pick(rows: list[PruneRow], method: str, value: str = "accuracy") -> list[float]:
    """One rule's values sorted by compression (ascending, whatever order :func:`compare` was given): pair them
    with ``sorted(compressions)``."""
    return [getattr(r, value) for r in sorted(rows, key=lambda r: r.compression) if r.method == method]


def overlaps(model: nn.Module, a: Scores, b: Scores, compressions, **mask_options) -> dict[float, float]:
    """{compression: share of rule a's kept entries that rule b keeps too}, for one compression or several;
    ``mask_options`` as :func:`compare`'s."""
    masks = lambda sc, c: global_masks(sc, c, model=model, **mask_options)  # noqa: E731
    return {c: kept_overlap(masks(a, c), masks(b, c)) for c in _compressions(compressions)}


def chance_overlap(model: nn.Module, scores: Scores, compression: float, **mask_options) -> float:
    """Kept overlap an independent random mask has on average with a mask at this compression:
    the share of the ranked entries still in use (nonzero: :func:`koopman_tut.pruning.random_masks` draws
    among those) that are kept. About 1/c on an unpruned model (less when the unpruned biases and classifier
    take part of the budget); on a model pruned before, kept / entries left. ``mask_options`` as :func:`compare`'s."""
    masks = global_masks(scores, compression, model=model, **mask_options)
    kept = sum(int(m.sum()) for m in masks.values())
    alive = sum(int(in_use(model, n).sum()) for n in masks)
    return min(1.0, kept / alive) if alive else 0.0

"""How pruned a model is and how alike two masks are: compression, sparsity by layer, overlaps.

Compression is ShrinkBench's total / nonzero parameters (Blalock et al. 2020). The overlaps
take masks as :func:`koopman_tut.pruning.masks.global_masks` gives them, {name: bool tensor}
with True = kept; anything else (scores, 0/1 tensors) is refused with a TypeError.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..recording.params import current_value, layer_parameters
from .inputs import _check_model, check_masks

Masks = dict[str, torch.Tensor]  # {name: bool tensor}, True = kept


def compression_ratio(model: nn.Module) -> float:
    """Total parameters / nonzero parameters (ShrinkBench), pruned entries counted as zero (inf: all zero)."""
    total, nonzero, seen = 0, 0, set()
    for mname, module in _check_model(model).named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # a tied tensor counts once
                continue
            seen.add(id(p))
            base = pname[:-5] if pname.endswith("_orig") else pname
            v = current_value(model, f"{mname}.{base}" if mname else base)
            total += p.numel()
            nonzero += int((v != 0).sum())
    if total == 0:
        raise ValueError("model has no parameters: its compression ratio is undefined")
    return total / nonzero if nonzero else math.inf


def sparsity_by_layer(model: nn.Module) -> dict[str, float]:
    """{name: share of zero entries} for every conv/linear weight and bias."""
    return {n: float((current_value(model, n) == 0).float().mean()) for n in layer_parameters(model)}


def _check_pair(a: Masks, b: Masks) -> None:
    """Two masks over the same, non-empty set of parameters (an overlap of nothing is not 1)."""
    check_masks(a, "a"), check_masks(b, "b")
    if set(a) != set(b):
        raise ValueError(f"masks cover different parameters: {sorted(set(a) ^ set(b))}")
    if not a:
        raise ValueError("a and b are empty: masks of no parameter have no overlap")


def mask_overlap(a: Masks, b: Masks) -> float:
    """Share of pruned entries in common: |pruned_a & pruned_b| / max(|pruned_a|, |pruned_b|).

    1 when both prune the same set (or prune nothing); equals the share of a's pruned
    entries that b also prunes when both prune the same number.
    """
    _check_pair(a, b)
    both = na = nb = 0
    for n in a:
        pa, pb = ~a[n].cpu(), ~b[n].cpu()
        if pa.shape != pb.shape:
            raise ValueError(f"masks for {n} differ in shape: {tuple(pa.shape)} vs {tuple(pb.shape)}")
        both += int((pa & pb).sum())
        na += int(pa.sum())
        nb += int(pb.sum())
    return 1.0 if max(na, nb) == 0 else both / max(na, nb)


def kept_overlap(a: Masks, b: Masks) -> float:
    """Share of a's kept entries that b keeps too: |kept_a & kept_b| / |kept_a|.

    Chance level is the share q of the masked entries a random mask keeps (against 1 - q for :func:`mask_overlap`
    of the pruned sets): the more telling measure when most entries are pruned. q is about 1/c at compression c
    for a real network, and below it where the entries never masked (biases, the classifier: counted as kept by
    the compression) are a large share: 0.497 / 0.246 / 0.058 at c = 2 / 4 / 16 for a 784-300-100-10 MLP, 0.222 at
    c = 2 for a 6-6-2 one (the share of the masked entries a random mask keeps). NaN where a keeps nothing.
    """
    _check_pair(a, b)
    both = na = 0
    for n in a:
        ka, kb = a[n].cpu(), b[n].cpu()
        if ka.shape != kb.shape:
            raise ValueError(f"masks for {n} differ in shape: {tuple(ka.shape)} vs {tuple(kb.shape)}")
        both += int((ka & kb).sum())
        na += int(ka.sum())
    return float("nan") if na == 0 else both / na

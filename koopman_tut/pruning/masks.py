"""Masks from scores at a target compression, applied with torch.nn.utils.prune.

Compression follows ShrinkBench (Blalock et al. 2020): total parameters / nonzero parameters, every parameter of
the model counted; biases and the classifier are left unpruned by default. With a model, the scores must cover
every parameter pruning may touch (:func:`koopman_tut.recording.params.prunable`); a layer is left out only by
naming it in ``exclude=``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils import prune

from ..numerics.distributed import local_tensor
from ..numerics.finite import outside_stacklevel
from ..recording.params import (aliases, check_untied, current_value, in_use, layer_parameters, parameter, prunable,
                                pruned_orig, resolve)
from ..recording.validation import check_real
from .inputs import (_check_bool, _check_model, _named_in, _named_on_some_rank, check_classifier, check_exclude,
                     check_tensors, rank_dtype, seed_entropy, ties_at_cut, warn_no_classifier, warn_ties)
from .measures import Masks
from .scores import Scores

_RANDOM_MASKS_STREAM = 0x6B6D61736B  # "kmask": keeps the random baseline's stream apart from torch.manual_seed


def _check_compression(compression: float) -> float:
    """Any finite real >= 1, NumPy scalars included, as a float (TypeError for bools and non-numbers)."""
    return check_real("compression", compression, 1, " (total / nonzero parameters)")


def _eligible(scores: Scores, model: nn.Module | None, prune_bias, classifier, exclude,
              sharded: bool = False) -> tuple[list[str], int]:
    """(names to rank, total parameter count); everything not ranked counts as kept. ``classifier``
    is ``prune_classifier`` and ``classifier`` resolved by :func:`check_classifier`; ``sharded``: this
    rank's share of the scores, which may rightly lack a name another rank holds."""
    check_tensors(scores, "scores")
    prune_bias, exclude = _check_bool("prune_bias", prune_bias), check_exclude(exclude)
    if not scores:
        raise ValueError("scores is empty")
    if model is None:
        if not sharded:
            _named_in(scores, classifier, exclude)
        head = () if classifier in ("auto", None) else (classifier + ".",)
        names = [n for n in scores if (prune_bias or not n.endswith("bias")) and n not in exclude
                 and not n.startswith(head)]
        return names, sum(scores[n].numel() for n in scores)
    _check_model(model)
    for n, s in scores.items():
        try:
            v = local_tensor(current_value(model, n))  # an FSDP2 (DTensor) parameter: this rank's shard
        except ValueError as e:
            raise ValueError(f"scores do not match the model: {e}") from None
        if tuple(v.shape) != tuple(s.shape):
            raise ValueError(f"scores do not match the model: {n} has shape {tuple(s.shape)} in scores, "
                             f"{tuple(v.shape)} in the model")
    check_untied(model, scores, "scores")
    try:
        left_out = {id(parameter(model, n)) for n in exclude}
    except ValueError as e:
        raise ValueError(f"exclude: {e}") from None
    required = [n for n in prunable(model, bias=prune_bias, classifier=classifier)
                if id(parameter(model, n)) not in left_out]
    scored = {id(parameter(model, n)) for n in scores}  # by tensor: a tied one may be scored under any name
    missing = [n for n in required if id(parameter(model, n)) not in scored]
    if missing:
        raise ValueError(f"scores leave out {missing}, which the model may prune: give scores for them, or leave "
                         f"them unpruned explicitly with exclude={missing}")
    allowed = {id(parameter(model, n)) for n in required}
    names = [n for n in scores if id(parameter(model, n)) in allowed]
    return names, sum(local_tensor(p).numel() for p in model.parameters())  # a tied tensor once


def _keep_count(total: int, n_rank: int, compression: float) -> int:
    keep_total = int(round(total / compression))
    keep = keep_total - (total - n_rank)  # everything not ranked stays
    if keep < 0:
        raise ValueError(f"compression {compression} is out of reach: the {total - n_rank:,} parameters left "
                         f"unpruned (biases, the classifier, exclude=, BatchNorm, ...) already exceed "
                         f"total/compression = {keep_total:,}; the most is {total / max(total - n_rank, 1):.1f}")
    if keep == 0 and n_rank > 0 and total - n_rank == 0:
        raise ValueError(f"compression {compression} leaves no parameter at all")
    if keep == 0 and n_rank > 0:  # the most that is reachable (or rounded to it): every ranked entry pruned
        warnings.warn(f"compression {compression} keeps none of the {n_rank:,} ranked entries: every prunable layer "
                      f"is zeroed (the {total - n_rank:,} parameters left unpruned alone make total / compression)",
                      UserWarning, stacklevel=outside_stacklevel())
    return keep


def _ranked(scores: Scores, names: list[str]) -> torch.Tensor:
    """(m,) the scores of ``names`` concatenated on the CPU in a precision exact for each
    (:func:`rank_dtype`), checked finite and non-negative."""
    if not names:
        raise ValueError(f"nothing may be pruned: of {sorted(scores)} every entry is a bias, the classifier or "
                         f"excluded, which are left unpruned (pass classifier=None or prune_bias=True)")
    for n in names:
        if scores[n].dtype.is_floating_point and not bool(torch.isfinite(scores[n]).all()):
            raise ValueError(f"scores contain NaN or Inf (in {n!r})")
    dtype = rank_dtype(scores[n] for n in names)
    flat = torch.cat([scores[n].detach().reshape(-1).cpu().to(dtype) for n in names])
    if bool((flat < 0).any()):
        neg = [n for n in names if bool((scores[n] < 0).any())]
        raise ValueError(f"scores must be non-negative (the largest are kept), got negative entries in {neg[:3]}: "
                         f"for a signed quantity such as theta * grad pass its magnitude, "
                         f"{{n: s.abs() for n, s in scores.items()}}")
    return flat


def _keep_top(flat: torch.Tensor, k: int, where: str = "") -> torch.Tensor:
    """(m,) bool, True for the k largest entries; ties keep the earlier entry (a warning when many do)."""
    kept, order = torch.zeros_like(flat, dtype=torch.bool), torch.argsort(flat, descending=True, stable=True)
    kept[order[:k]] = True
    warn_ties(k, *ties_at_cut(flat, order, k), where)
    return kept


def _split(kept: torch.Tensor, scores: Scores, names: list[str]) -> Masks:
    """The flat kept vector back to {name: bool tensor shaped and placed like the scores}."""
    parts = kept.split([scores[n].numel() for n in names])
    return {n: p.reshape(scores[n].shape).to(scores[n].device) for n, p in zip(names, parts)}


def global_masks(scores: Scores, compression: float, model: nn.Module | None = None, prune_bias: bool = False,
                 prune_classifier: bool = False, group=None, classifier: str | None = "auto",
                 exclude: list[str] | tuple[str, ...] = ()) -> Masks:
    """Keep the highest scores over all layers so that total / kept = ``compression``.

    Parameters
    ----------
    scores : {name: real tensor shaped like the parameter}, ranked in their own precision
        (float64 if any is float64; with a group, in float64, exact for float32 scores).
    model : counts every parameter toward the total (ShrinkBench's compression), checks the
        scores against it, and identifies the classifier. The scores must then cover every
        parameter pruning may touch (:func:`koopman_tut.recording.params.prunable`), else
        ValueError naming the missing ones. Without it the total is the scored entries, biases
        are recognised by name and the classifier only when named (``classifier="name"``).
    prune_bias, prune_classifier : allow pruning those (default: left unpruned).
    classifier : which module is the classifier left unpruned: ``"auto"`` (default): the module
        ``model.classifier`` if the model has one, else the last nn.Linear in registration order (not
        necessarily the last the forward pass applies; a UserWarning says when unsure, see
        :func:`koopman_tut.recording.params.classifier_names`); a module name; or None to prune it too.
    exclude : parameter names left unpruned as well (counted as kept), e.g. the layers a trajectory
        recorded with ``params=`` left out; their scores, if given, are ignored.
    group : a torch.distributed process group (``True``: the default one) when each rank holds its own
        share of the scores (e.g. KMP scores of its rows of a sharded trajectory; with ``model=``, each rank's
        model holds its own shard's parameters, e.g. FSDP2's ``fully_shard``, whose DTensor parameters count
        as their local shards). The ranking is global and exact (in float64), as on the scores of all ranks
        concatenated in rank order (:func:`koopman_tut.numerics.distributed.top_k_mask`); the total and the
        counts are summed over ranks. A collective: every rank of the group must call it.

    Returns
    -------
    {name: bool tensor}, True = kept, for the ranked parameters (this rank's, with a group). Exactly
    round(total / compression) entries are kept, unranked ones (biases, classifier, excluded) counted as kept as in
    ShrinkBench (zero ones make ``compression_ratio``, which counts nonzeros, read higher); ties keep the earlier
    entry (with a group: lower rank, then earlier entry).
    """
    warn_no_classifier(model, prune_classifier, classifier)  # on every rank alike, before any collective
    if group is not None:  # compression checked in the pre-flight: a rank refusing it makes every rank raise
        options = (prune_bias, prune_classifier, classifier, exclude)
        return _global_masks_sharded(scores, compression, model, options, group)
    compression = _check_compression(compression)
    names, total = _eligible(scores, model, prune_bias, check_classifier(prune_classifier, classifier), exclude)
    flat = _ranked(scores, names)
    return _split(_keep_top(flat, _keep_count(total, flat.numel(), compression)), scores, names)


def _global_masks_sharded(scores: Scores, compression: float, model, options: tuple, group) -> Masks:
    """global_masks over ranks. A rank may hold no scores; a rank refusing its scores makes every rank raise."""
    from ..numerics.distributed import all_reduce_sum, top_k_mask
    from ..numerics.distributed_checks import preflight

    prune_bias, prune_classifier, classifier, exclude = options
    error, names, total, flat = None, [], 0, torch.zeros(0)
    try:
        compression = _check_compression(compression)
        classifier, exclude = check_classifier(prune_classifier, classifier), check_exclude(exclude)
        if scores or not isinstance(scores, dict):
            names, total = _eligible(scores, model, prune_bias, classifier, exclude, sharded=True)
            flat = _ranked(scores, names) if names else flat  # top_k_mask ranks in float64 (exact for float32)
        elif model is not None:
            total = sum(local_tensor(p).numel() for p in _check_model(model).parameters())
    except (TypeError, ValueError) as e:  # raised on every rank below, so that none waits in a collective
        error = e
    exclude = repr(sorted(exclude)) if isinstance(exclude, tuple) else repr(exclude)  # checked: a tuple of str
    given = compression if isinstance(compression, float) else repr(compression)  # checked above: a float
    preflight("global_masks", group, {"compression": given, "model given": model is not None,
                                      "prune_bias": prune_bias, "classifier": repr(classifier), "exclude": exclude})
    agreed = all_reduce_sum(torch.tensor([int(error is not None), total, flat.numel()]), group).tolist()
    if agreed[0]:
        raise error or ValueError(f"{agreed[0]} other rank(s) refused their scores (see their errors)")
    if model is None:  # a classifier or excluded name no rank's scores hold (a typo) would leave the real one pruned
        _named_on_some_rank(scores, classifier, check_exclude(options[3]), group)
    if agreed[2] == 0:
        raise ValueError("nothing may be pruned on any rank: every score is a bias, the classifier or excluded, "
                         "which are left unpruned (pass classifier=None or prune_bias=True)")
    keep = _keep_count(agreed[1], agreed[2], compression)
    kept, *ties = top_k_mask(flat, keep, group, with_ties=True)
    warn_ties(keep, *ties)  # the same on every rank
    return _split(kept, scores, names)


def layerwise_masks(scores: Scores, compression: float, model: nn.Module | None = None, prune_bias: bool = False,
                    prune_classifier: bool = False, classifier: str | None = "auto",
                    exclude: list[str] | tuple[str, ...] = ()) -> Masks:
    """Same compression, but every ranked layer keeps the same fraction of its own entries.

    The per-layer counts are rounded by largest remainder, so the total kept is exact. The
    arguments are :func:`global_masks`'.
    """
    warn_no_classifier(model, prune_classifier, classifier)
    compression = _check_compression(compression)
    names, total = _eligible(scores, model, prune_bias, check_classifier(prune_classifier, classifier), exclude)
    sizes = [scores[n].numel() for n in names]
    keep = _keep_count(total, sum(sizes), compression)
    frac = keep / max(sum(sizes), 1)
    ideal = [frac * s for s in sizes]
    counts = [int(math.floor(x)) for x in ideal]
    for i in sorted(range(len(sizes)), key=lambda i: counts[i] - ideal[i])[: keep - sum(counts)]:
        counts[i] += 1
    layers = _ranked(scores, names).split(sizes)
    return _split(torch.cat([_keep_top(x, k, f" in {n!r}") for x, k, n in zip(layers, counts, names)]), scores, names)


def random_masks(model: nn.Module, compression: float, seed: int = 0, draw: int = 0, **kwargs) -> Masks:
    """Baseline: a global mask at the same compression, uniformly random over the entries in use (nonzero).

    The generator is seeded from ``(seed, "random_masks", draw)`` through numpy's SeedSequence
    (the whole of ``seed``, an integer >= 0 of any size), so it is independent of the model's
    initialisation even when both use the same seed (``torch.manual_seed(s)`` then ``torch.rand``
    would reproduce the init's uniform draws, and prune by initial magnitude), and it neither
    reads nor moves the global RNG. Different (seed, draw) pairs give independent masks: the
    several draws of one run never repeat another run's (seed + 1, draw 0 is not seed, draw 1).

    Entries already pruned (zero) rank below every other, so on a pruned model only entries still in
    use are drawn; an exact 0 counts as pruned, also in a zero-initialised layer of an unpruned model.
    ``kwargs`` go to :func:`global_masks` (``prune_bias``, ``classifier``, ``exclude``, ...).
    """
    _check_model(model)
    state = np.random.SeedSequence(seed_entropy(seed, draw, _RANDOM_MASKS_STREAM)).generate_state(2, np.uint32)
    g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    scores = {}
    for n in layer_parameters(model):
        used = in_use(model, n)
        # in [1, 2) where in use, [0, 1) where pruned: float64 holds rand's float32 values + 1 exactly,
        # so the order of the entries in use (and the mask of an unpruned model) is rand's own
        scores[n] = torch.rand(used.shape, generator=g).double() + used.cpu().double()
    if not scores:
        raise ValueError("model has no conv or linear layer parameters to draw a random mask for")
    return global_masks(scores, compression, model=model, **kwargs)


def apply_masks(model: nn.Module, masks: Masks) -> nn.Module:
    """Apply boolean masks (True = kept) with torch.nn.utils.prune (custom_from_mask): they persist
    through training.

    A parameter already pruned gets the product of its old and new masks. A tied tensor
    (registered under several names, see :func:`koopman_tut.recording.params.aliases`) is masked under
    every name, so each module that uses it sees the pruned values.
    """
    _check_model(model)
    if not isinstance(masks, dict):
        raise TypeError(f"masks must be a dict {{parameter name: bool tensor}}, got {type(masks).__name__}")
    for n, m in masks.items():
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            got = m.dtype if isinstance(m, torch.Tensor) else type(m).__name__
            raise TypeError(f"mask for {n!r} must be a bool tensor (True = kept), got {got}: an integer or "
                            f"float mask would multiply the weights by its values; pass (mask != 0) for a 0/1 mask")
        ref = current_value(model, n)
        if tuple(m.shape) != tuple(ref.shape):
            raise ValueError(f"mask for {n} has shape {tuple(m.shape)}, parameter has {tuple(ref.shape)}")
    check_untied(model, masks, "masks")
    for n, m in masks.items():
        for name in aliases(model, n):
            module, p = resolve(model, name)
            ref = current_value(model, name)
            prune.custom_from_mask(module, p, m.to(device=ref.device, dtype=ref.dtype))
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Make pruning permanent (prune.remove): masked entries become plain zeros."""
    for _, module in _check_model(model).named_modules():
        for p in ("weight", "bias"):
            if pruned_orig(module, p) is not None:
                prune.remove(module, p)
    return model


def prune_model(model: nn.Module, scores: Scores, compression: float, layerwise: bool = False, **kwargs) -> Masks:
    """Masks from scores at a compression, applied to the model; returns the masks. ``kwargs`` go to
    :func:`global_masks` (or :func:`layerwise_masks`): ``prune_bias``, ``classifier``, ``exclude``, ..."""
    make = layerwise_masks if _check_bool("layerwise", layerwise) else global_masks
    masks = make(scores, compression, model=model, **kwargs)
    apply_masks(model, masks)
    return masks

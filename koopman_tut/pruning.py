"""Pruning scores and masks: magnitude, gradient, Koopman magnitude (KMP), Koopman gradient (KGP).

Redman et al., "An Operator Theoretic View on Pruning Deep Neural Networks", ICLR 2022
(arXiv:2110.14856), Algorithm 1: record theta(t1..t2), compute the Koopman mode
decomposition with DMD, score each parameter by a function of it, mask the lowest scores
globally for a target compression, apply the mask to theta(t2).

* GMP: |theta|.  Gradient pruning: |theta * dL/dtheta| (ShrinkBench's GlobalMagGrad) or |dL/dtheta|.
* KMP: |theta*|, theta* the Koopman mode of eigenvalue 1 times its amplitude (the predicted
  fixed point). The paper keeps the single mode closest to 1 (``rule="closest"``). On a
  trajectory still drifting, DMD may split the slow dynamics into a complex pair near 1 or
  two close real eigenvalues with large cancelling amplitudes; one mode alone is then
  meaningless. The default ``rule="slow"`` (this package's choice, not the paper's) sums
  the modes within ``radius`` (0.1) of 1 at the last snapshot: the slow part of the
  trajectory, i.e. the current state with the fast transients removed. It equals the
  paper's rule when a single eigenvalue, exactly 1, lies within the radius, as at
  convergence. On early, drifting windows of the digits MLP the single closest mode
  sometimes collapses accuracy after pruning where the slow part does not.
* KGP: the Koopman gradient g_K(t) = -(1/lr) sum_i (mu_i - 1) lambda_i^t b_i v_i, the
  one-step change the decomposition predicts (mu_i = lambda_i^(1/k) per optimizer step
  when snapshots are k steps apart), in place of the backprop gradient. Exact for plain
  (S)GD on a linear decomposition; momentum makes the step differ from -lr * gradient.
* Horizon: |theta(t) + sum_i (lambda_i^(t+h) - lambda_i^t) b_i v_i|, the Koopman forecast h
  snapshots ahead: h=0 is GMP on the last snapshot, h=inf is KMP.

Compression follows ShrinkBench (Blalock et al. 2020): total parameters / nonzero
parameters, counting every parameter of the model; by default biases and the classifier
are left unpruned. Masks are applied with torch.nn.utils.prune.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune

from .dmd import DMDResult, dmd
from .trajectory import Trajectory, current_value, prunable_names, resolve

Scores = dict[str, torch.Tensor]
Masks = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- what may be pruned
def classifier_names(model: nn.Module) -> list[str]:
    """Parameter names of the classifier: ``model.classifier`` if present, else the last linear layer."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Module):
        prefix = next(n for n, m in model.named_modules() if m is head)
    else:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            return []
        prefix = linears[-1]
    return [n for n in prunable_names(model) if n.rpartition(".")[0] == prefix]


def prunable(model: nn.Module, bias: bool = False, classifier: bool = False) -> list[str]:
    """Names of the parameters pruning may touch: conv/linear weights (and biases, classifier if asked)."""
    skip = set() if classifier else set(classifier_names(model))
    return [n for n in prunable_names(model, bias=bias) if n not in skip]


# ----------------------------------------------------------------------------- plain scores
def magnitude_scores(model: nn.Module) -> Scores:
    """{name: |theta|} for every conv/linear weight and bias (GMP)."""
    return {n: current_value(model, n).detach().abs().clone() for n in prunable_names(model)}


def gradients(model: nn.Module, loader, n_batches: int = 1, loss_fn: Callable = F.cross_entropy,
              device=None) -> dict[str, torch.Tensor]:
    """{name: dL/dtheta}, the gradient of the mean loss over the first ``n_batches`` batches
    (signed), at the model's current parameters, for every conv/linear weight and bias."""
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    names = prunable_names(model)
    device = device or next(model.parameters()).device
    params = {}
    for n in names:
        module, p = resolve(model, n)
        orig = getattr(module, p + "_orig", None)  # pruned: d/d(weight_orig) is already masked
        params[n] = getattr(module, p) if orig is None else orig
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    seen = 0
    for x, y in loader:
        if seen >= n_batches:
            break
        loss = loss_fn(model(x.to(device)), y.to(device))
        for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                grads[n] += g
        seen += 1
    model.train(was_training)
    if seen == 0:
        raise ValueError("loader yielded no batches")
    return {n: g / seen for n, g in grads.items()}


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


# ----------------------------------------------------------------------------- Koopman scores
def _dmd_of(traj: Trajectory, svd_rank=-1, method: str = "auto", result: DMDResult | None = None) -> DMDResult:
    if not isinstance(traj, Trajectory):
        raise TypeError(f"traj must be a koopman_tut.Trajectory, got {type(traj).__name__}")
    if len(traj) < 2:
        raise ValueError(f"traj needs at least 2 snapshots for DMD, has {len(traj)}")
    return result if result is not None else dmd(traj.snapshots, svd_rank=svd_rank, method=method)


def koopman_fixed_point(traj: Trajectory, rule: str = "slow", radius: float = 0.1, svd_rank=-1,
                        method: str = "auto", result: DMDResult | None = None) -> torch.Tensor:
    """(n,) predicted fixed point theta*: the eigenvalue-1 mode times its amplitude.

    rule "closest": the single mode with eigenvalue closest to 1 (the paper's rule);
    rule "slow": the sum of the modes within ``radius`` of 1, at the last snapshot (robust on
    drifting windows; see :meth:`koopman_tut.DMDResult.slow_part`).
    """
    res = _dmd_of(traj, svd_rank, method, result)
    if rule == "closest":
        return res.fixed_point()
    if rule == "slow":
        return res.slow_part(radius)
    raise ValueError(f"rule must be 'slow' or 'closest', got {rule!r}")


def kmp_scores(traj: Trajectory, rule: str = "slow", radius: float = 0.1, svd_rank=-1, method: str = "auto",
               result: DMDResult | None = None) -> Scores:
    """{name: |theta*|}, Koopman magnitude pruning (see :func:`koopman_fixed_point`)."""
    fp = koopman_fixed_point(traj, rule, radius, svd_rank, method, result)
    return {n: v.abs().float() for n, v in traj.unflatten(fp).items()}


def koopman_gradient(traj: Trajectory, lr: float | None = None, t: int = -1, svd_rank=-1, method: str = "auto",
                     result: DMDResult | None = None) -> torch.Tensor:
    """(n,) Koopman-estimated gradient at snapshot ``t``: -(1/lr) * predicted one-step change.

    One optimizer step changes theta by sum_i (mu_i - 1) lambda_i^t b_i v_i with mu_i = lambda_i^(1/k)
    for snapshots k steps apart; for plain SGD that change is -lr * grad L.
    """
    res = _dmd_of(traj, svd_rank, method, result)
    lr = traj.lr if lr is None else lr
    if lr is None or lr <= 0:
        raise ValueError(f"lr must be a positive learning rate (not recorded in this trajectory), got {lr}")
    t = t % len(traj)
    every = int(traj.meta.get("every", 1))
    lam = res.eigs.cpu().to(torch.complex128)
    mu = torch.exp(torch.log(lam) / every)
    w = (mu - 1) * torch.exp(t * torch.log(lam)) * res.amplitudes.cpu().to(torch.complex128)
    return -res.combine(w) / lr


def kgp_scores(traj: Trajectory, lr: float | None = None, form: str = "theta_grad", t: int = -1, svd_rank=-1,
               method: str = "auto", result: DMDResult | None = None) -> Scores:
    """Koopman gradient pruning: {name: |theta(t) * g_K|} ('theta_grad') or {name: |g_K|} ('grad')."""
    if form not in ("theta_grad", "grad"):
        raise ValueError(f"form must be 'theta_grad' or 'grad', got {form!r}")
    g = koopman_gradient(traj, lr, t, svd_rank, method, result)
    if form == "theta_grad":
        g = g * traj.snapshots[:, t].to(g.dtype)
    return {n: v.abs().float() for n, v in traj.unflatten(g).items()}


def koopman_forecast(traj: Trajectory, h: float, svd_rank=-1, method: str = "auto",
                     result: DMDResult | None = None) -> torch.Tensor:
    """(n,) Koopman forecast h snapshots past the last one (h in snapshot units, any h >= 0).

    theta(t) + sum_i (lambda_i^(t+h) - lambda_i^t) b_i v_i, t the last snapshot: the recorded
    parameters plus the change the decomposition predicts (so h=0 returns theta(t) exactly).
    Eigenvalues outside the unit circle are projected onto it (lambda / |lambda|): a short
    window cannot tell a slowly growing mode from a persistent one, and extrapolating the
    growth diverges. As h grows the decaying modes vanish and the persistent part remains.
    Jumping ahead with it is Koopman training acceleration (Dogra & Redman, NeurIPS 2020).
    """
    if not h >= 0 or math.isinf(h):
        raise ValueError(f"h must be a finite number >= 0, got {h}")
    x = traj.snapshots[:, -1]
    if h == 0:
        return x.clone()
    res = _dmd_of(traj, svd_rank, method, result)
    t = len(traj) - 1
    lam = res.eigs.cpu().to(torch.complex128)
    logl = torch.log(lam)
    stable = torch.complex(logl.real.clamp_max(0), logl.imag)  # |lambda| > 1 held on the unit circle
    w = (torch.exp(t * logl + h * stable) - torch.exp(t * logl)) * res.amplitudes.cpu().to(torch.complex128)
    return x + res.combine(w).to(x.dtype)


def horizon_scores(traj: Trajectory, h: float, rule: str = "slow", radius: float = 0.1, svd_rank=-1,
                   method: str = "auto", result: DMDResult | None = None) -> Scores:
    """{name: |Koopman forecast h snapshots ahead|}: h=0 is GMP on the last snapshot, h=inf is KMP.

    See :func:`koopman_forecast`; h=inf is defined as :func:`kmp_scores` (the forecast of
    modes with |lambda| slightly above 1 would grow without bound).
    """
    if not h >= 0:
        raise ValueError(f"h must be >= 0 (or math.inf), got {h}")
    if math.isinf(h):
        return kmp_scores(traj, rule, radius, svd_rank, method, result)
    fc = koopman_forecast(traj, h, svd_rank, method, result)
    return {n: v.abs().float() for n, v in traj.unflatten(fc).items()}


# ----------------------------------------------------------------------------- masks
def _check_compression(compression: float) -> None:
    if not isinstance(compression, (int, float)) or isinstance(compression, bool) or not compression >= 1:
        raise ValueError(f"compression must be a number >= 1 (total / nonzero parameters), got {compression!r}")


def _eligible(scores: Scores, model: nn.Module | None, prune_bias: bool, prune_classifier: bool):
    """(names to rank, total parameter count, kept-for-sure count)."""
    if not scores:
        raise ValueError("scores is empty")
    if model is None:
        names = [n for n in scores if prune_bias or not n.endswith("bias")]
        total = sum(scores[n].numel() for n in scores)
        return names, total
    allowed = set(prunable(model, bias=prune_bias, classifier=prune_classifier))
    for n, s in scores.items():
        try:
            v = current_value(model, n)
        except ValueError:
            raise ValueError(f"scores do not match the model: no parameter {n!r} in it") from None
        if tuple(v.shape) != tuple(s.shape):
            raise ValueError(f"scores do not match the model: {n} has shape {tuple(s.shape)} in scores, "
                             f"{tuple(v.shape)} in the model")
    names = [n for n in scores if n in allowed]
    total = sum(p.numel() for p in model.parameters())
    return names, total


def _keep_count(total: int, n_rank: int, compression: float) -> int:
    keep_total = int(round(total / compression))
    keep = keep_total - (total - n_rank)  # everything not ranked stays
    if keep < 0:
        raise ValueError(f"compression {compression} is out of reach: the {total - n_rank:,} parameters left "
                         f"unpruned (biases, classifier, ...) already exceed total/compression = {keep_total:,}; "
                         f"the most is {total / max(total - n_rank, 1):.1f}")
    if keep == 0 and n_rank > 0 and total - n_rank == 0:
        raise ValueError(f"compression {compression} leaves no parameter at all")
    return keep


def global_masks(scores: Scores, compression: float, model: nn.Module | None = None,
                 prune_bias: bool = False, prune_classifier: bool = False) -> Masks:
    """Keep the highest scores over all layers so total / nonzero = ``compression``.

    Parameters
    ----------
    scores : {name: tensor shaped like the parameter}.
    model : counts every parameter toward the total (ShrinkBench's compression), checks the
        scores against it, and identifies the classifier. Without it the total is the scored
        entries and only biases are recognised (by name).
    prune_bias, prune_classifier : allow pruning those (default: left unpruned).

    Returns
    -------
    {name: bool tensor}, True = kept, for the ranked parameters. Exactly
    round(total / compression) entries remain nonzero; ties keep the earlier entry.
    """
    _check_compression(compression)
    names, total = _eligible(scores, model, prune_bias, prune_classifier)
    flat = torch.cat([scores[n].detach().reshape(-1).float().cpu() for n in names])
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("scores contain NaN or Inf")
    keep = _keep_count(total, flat.numel(), compression)
    order = torch.argsort(flat, descending=True, stable=True)
    kept = torch.zeros_like(flat, dtype=torch.bool)
    kept[order[:keep]] = True
    out, o = {}, 0
    for n in names:
        k = scores[n].numel()
        out[n] = kept[o:o + k].reshape(scores[n].shape).to(scores[n].device)
        o += k
    return out


def layerwise_masks(scores: Scores, compression: float, model: nn.Module | None = None,
                    prune_bias: bool = False, prune_classifier: bool = False) -> Masks:
    """Same compression, but every ranked layer keeps the same fraction of its own entries.

    The per-layer counts are rounded by largest remainder, so the total kept is exact.
    """
    _check_compression(compression)
    names, total = _eligible(scores, model, prune_bias, prune_classifier)
    sizes = [scores[n].numel() for n in names]
    keep = _keep_count(total, sum(sizes), compression)
    frac = keep / max(sum(sizes), 1)
    ideal = [frac * s for s in sizes]
    counts = [int(math.floor(x)) for x in ideal]
    for i in sorted(range(len(sizes)), key=lambda i: counts[i] - ideal[i])[: keep - sum(counts)]:
        counts[i] += 1
    out = {}
    for n, k in zip(names, counts):
        flat = scores[n].detach().reshape(-1).float().cpu()
        m = torch.zeros_like(flat, dtype=torch.bool)
        m[torch.argsort(flat, descending=True, stable=True)[:k]] = True
        out[n] = m.reshape(scores[n].shape).to(scores[n].device)
    return out


def random_masks(model: nn.Module, compression: float, seed: int = 0, **kwargs) -> Masks:
    """Baseline: a uniformly random global mask at the same compression."""
    g = torch.Generator().manual_seed(seed)
    scores = {n: torch.rand(current_value(model, n).shape, generator=g) for n in prunable_names(model)}
    return global_masks(scores, compression, model=model, **kwargs)


def apply_masks(model: nn.Module, masks: Masks) -> nn.Module:
    """Apply masks with torch.nn.utils.prune (custom_from_mask): they persist through training.

    A parameter already pruned gets the product of its old and new masks.
    """
    for n, m in masks.items():
        module, p = resolve(model, n)
        ref = current_value(model, n)
        if tuple(m.shape) != tuple(ref.shape):
            raise ValueError(f"mask for {n} has shape {tuple(m.shape)}, parameter has {tuple(ref.shape)}")
        prune.custom_from_mask(module, p, m.to(device=ref.device, dtype=ref.dtype))
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Make pruning permanent (prune.remove): masked entries become plain zeros."""
    for _, module in model.named_modules():
        for p in ("weight", "bias"):
            if hasattr(module, p + "_orig"):
                prune.remove(module, p)
    return model


def compression_ratio(model: nn.Module) -> float:
    """Total parameters / nonzero parameters (ShrinkBench), pruned entries counted as zero."""
    total, nonzero = 0, 0
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            base = pname[:-5] if pname.endswith("_orig") else pname
            v = current_value(model, f"{mname}.{base}" if mname else base)
            total += p.numel()
            nonzero += int((v != 0).sum())
    return total / max(nonzero, 1)


def sparsity_by_layer(model: nn.Module) -> dict[str, float]:
    """{name: share of zero entries} for every conv/linear weight and bias."""
    return {n: float((current_value(model, n) == 0).float().mean()) for n in prunable_names(model)}


def mask_overlap(a: Masks, b: Masks) -> float:
    """Share of pruned entries in common: |pruned_a & pruned_b| / max(|pruned_a|, |pruned_b|).

    1 when both prune the same set (or prune nothing); equals the share of a's pruned
    entries that b also prunes when both prune the same number.
    """
    if set(a) != set(b):
        raise ValueError(f"masks cover different parameters: {sorted(set(a) ^ set(b))}")
    both = na = nb = 0
    for n in a:
        pa, pb = ~a[n].bool().cpu(), ~b[n].bool().cpu()
        if pa.shape != pb.shape:
            raise ValueError(f"masks for {n} differ in shape: {tuple(pa.shape)} vs {tuple(pb.shape)}")
        both += int((pa & pb).sum())
        na += int(pa.sum())
        nb += int(pb.sum())
    return 1.0 if max(na, nb) == 0 else both / max(na, nb)


def prune_model(model: nn.Module, scores: Scores, compression: float, layerwise: bool = False, **kwargs) -> Masks:
    """Masks from scores at a compression, applied to the model; returns the masks."""
    masks = (layerwise_masks if layerwise else global_masks)(scores, compression, model=model, **kwargs)
    apply_masks(model, masks)
    return masks

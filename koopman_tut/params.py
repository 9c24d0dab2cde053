"""Which parameters exist, which may be pruned, and how to read and write them by name.

One home for two rules with one meaning each:

* :func:`layer_parameters`: every weight and bias of the convolution and linear layers
  (not BatchNorm, as in Redman et al., ICLR 2022): what a trajectory records.
* :func:`prunable`: what pruning may touch, by default the weights without the
  classifier (ShrinkBench's convention, Blalock et al. 2020).

Names are 'module.weight'. A parameter pruned with torch.nn.utils.prune lives on as
``weight_orig`` (trainable) and ``weight_mask``; :func:`current_value` gives the product in
use and :func:`parameter` the trainable tensor, so both plain and pruned models work.
"""
from __future__ import annotations

import torch
import torch.nn as nn

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_parameters(model: nn.Module, bias: bool = True) -> list[str]:
    """Every weight (and bias, if ``bias``) of the conv and linear layers, in module order:
    what a trajectory records. See :func:`prunable` for what pruning may touch."""
    names = []
    for mname, m in model.named_modules():
        if isinstance(m, PRUNABLE_TYPES):
            for p in ("weight", "bias") if bias else ("weight",):
                if getattr(m, p, None) is not None:
                    names.append(f"{mname}.{p}" if mname else p)
    return names


def resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(module, attribute) for 'a.b.weight'."""
    mname, _, pname = name.rpartition(".")
    try:
        module = model.get_submodule(mname) if mname else model
    except AttributeError as e:
        raise ValueError(f"model has no module {mname!r} (for parameter {name!r})") from e
    if getattr(module, pname, None) is None and not hasattr(module, pname + "_orig"):
        raise ValueError(f"model has no parameter {name!r}")
    return module, pname


def effective_value(module: nn.Module, pname: str) -> torch.Tensor:
    """The value of ``module.pname`` in use: weight_orig * mask once pruned by torch.nn.utils.prune."""
    orig = getattr(module, pname + "_orig", None)  # pruned by torch.nn.utils.prune
    return getattr(module, pname) if orig is None else orig * getattr(module, pname + "_mask")


def current_value(model: nn.Module, name: str) -> torch.Tensor:
    """The effective value of a parameter now: weight_orig * mask for pruned ones (torch.nn.utils.prune)."""
    return effective_value(*resolve(model, name))


def parameter(model: nn.Module, name: str) -> nn.Parameter:
    """The trainable tensor behind a name: ``weight_orig`` once pruned, else ``weight``."""
    module, pname = resolve(model, name)
    orig = getattr(module, pname + "_orig", None)
    return getattr(module, pname) if orig is None else orig


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
    return [n for n in layer_parameters(model) if n.rpartition(".")[0] == prefix]


def prunable(model: nn.Module, bias: bool = False, classifier: bool = False) -> list[str]:
    """Names of the parameters pruning may touch: conv/linear weights (and biases, classifier if asked)."""
    skip = set() if classifier else set(classifier_names(model))
    return [n for n in layer_parameters(model, bias=bias) if n not in skip]

"""Which parameters exist, which may be pruned, and how to read and write them by name.

One home for two rules with one meaning each:

* :func:`layer_parameters`: every weight and bias of the convolution and linear layers
  (not BatchNorm, as in Redman et al., ICLR 2022): what a trajectory records.
* :func:`prunable`: what pruning may touch, by default the weights without the
  classifier (ShrinkBench's convention, Blalock et al. 2020).

Names are 'module.weight'. A parameter pruned with torch.nn.utils.prune lives on as
``weight_orig`` (trainable) and ``weight_mask``; :func:`current_value` gives the product in
use and :func:`parameter` the trainable tensor, so both plain and pruned models work. The
names '0.weight_orig' and '0.weight_mask' are refused with the name to use instead.

A tensor registered under several names (tied weights, e.g. a decoder tied to an encoder)
is one parameter: :func:`layer_parameters` lists it once, under its first name in module
order, and :func:`aliases` gives every name it is registered under.
"""
from __future__ import annotations

import torch
import torch.nn as nn

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_parameters(model: nn.Module, bias: bool = True) -> list[str]:
    """Every weight (and bias, if ``bias``) of the conv and linear layers, in module order:
    what a trajectory records; a tied tensor once, under its first name. See :func:`prunable`
    for what pruning may touch."""
    names, seen = [], set()
    for mname, m in model.named_modules():
        if isinstance(m, PRUNABLE_TYPES):
            for p in ("weight", "bias") if bias else ("weight",):
                t = _trainable(m, p)
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    names.append(f"{mname}.{p}" if mname else p)
    return names


def _trainable(module: nn.Module, pname: str) -> torch.Tensor | None:
    """The trainable tensor of ``module.pname``: ``pname_orig`` once pruned (torch.nn.utils.prune)."""
    orig = getattr(module, pname + "_orig", None)
    return getattr(module, pname, None) if orig is None else orig


def aliases(model: nn.Module, name: str) -> list[str]:
    """Every name the trainable tensor of ``name`` is registered under (tied weights), ``name`` first."""
    t, out = parameter(model, name), [name]
    for mname, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            base = pname[:-5] if pname.endswith("_orig") else pname
            full = f"{mname}.{base}" if mname else base
            if p is t and full not in out:
                out.append(full)
    return out


def check_untied(model: nn.Module, names, what: str) -> None:
    """ValueError when ``names`` (of ``what``: params, scores, masks) holds one tensor twice: a name
    repeated, or two names of a tied tensor, which would be recorded, ranked or masked twice."""
    first: dict[int, str] = {}
    for name in names:
        t = id(parameter(model, name))
        if t in first:
            same = "the same name" if first[t] == name else "one tensor (tied weights)"
            raise ValueError(f"{what} give {first[t]!r} and {name!r}, {same}: give each tensor once, under "
                             f"{first[t]!r} (a tied tensor is recorded once and pruned wherever it is used)")
        first[t] = name


def resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(module, attribute) for 'a.b.weight'."""
    mname, _, pname = name.rpartition(".")
    try:
        module = model.get_submodule(mname) if mname else model
    except AttributeError as e:
        raise ValueError(f"model has no parameter {name!r} (no module {mname!r})") from e
    for suffix in ("_orig", "_mask"):  # torch.nn.utils.prune's two tensors behind a pruned parameter
        if pname.endswith(suffix) and hasattr(module, pname[:-len(suffix)] + "_orig"):
            base = name[:-len(suffix)]
            raise ValueError(f"{name!r} is torch.nn.utils.prune's {suffix[1:]} tensor of the pruned parameter "
                             f"{base!r}: masks, scores and trajectories are keyed by the parameter name ({base!r}), "
                             f"as pruning.magnitude_scores(model) and pruning.layer_parameters(model) give them")
    value = getattr(module, pname + "_orig", None)
    value = getattr(module, pname, None) if value is None else value
    if value is None:
        raise ValueError(f"model has no parameter {name!r}")
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"model has no parameter {name!r}: {pname!r} of {type(module).__name__} is a "
                         f"{type(value).__name__}, not a tensor; give parameter names such as {name + '.weight'!r}")
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
    if not isinstance(head, nn.Module):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            return []
        head = linears[-1]
    ids = {id(p) for p in head.parameters()}  # by identity: a classifier weight tied elsewhere is still the classifier
    return [n for n in layer_parameters(model) if id(parameter(model, n)) in ids]


def prunable(model: nn.Module, bias: bool = False, classifier: bool = False) -> list[str]:
    """Names of the parameters pruning may touch: conv/linear weights (and biases, classifier if asked)."""
    skip = set() if classifier else set(classifier_names(model))
    return [n for n in layer_parameters(model, bias=bias) if n not in skip]

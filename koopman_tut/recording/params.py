"""Which parameters exist, which may be pruned, and how to read and write them by name.

One home for two rules with one meaning each:

* :func:`layer_parameters`: every weight and bias of the convolution and linear layers
  (not BatchNorm, as in Redman et al., ICLR 2022): what a trajectory records.
* :func:`prunable`: what pruning may touch, by default the weights without the
  classifier (ShrinkBench's convention, Blalock et al. 2020). The classifier is
  ``model.classifier``, else the last nn.Linear registered, or the module named by
  ``classifier=`` (see :func:`classifier_names`).

Names are 'module.weight'. A parameter pruned with torch.nn.utils.prune lives on as
``weight_orig`` (trainable) and ``weight_mask``; :func:`current_value` gives the product in
use and :func:`parameter` the trainable tensor, so both plain and pruned models work. The
names '0.weight_orig' and '0.weight_mask' are refused with the name to use instead.

A tensor registered under several names (tied weights, e.g. a decoder tied to an encoder)
is one parameter: :func:`layer_parameters` lists it once, under its first name in module
order, and :func:`aliases` gives every name it is registered under.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn

from ..numerics.distributed import local_tensor
from ..numerics.finite import outside_stacklevel

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_parameters(model: nn.Module, bias: bool = True) -> list[str]:
    """Every weight (and bias, if ``bias``) of the conv and linear layers, in module order:
    what a trajectory records; a tied tensor once, under its first name. See :func:`prunable`
    for what pruning may touch."""
    names, seen = [], set()
    for mname, m in _check_model(model).named_modules():
        if isinstance(m, PRUNABLE_TYPES):
            for p in ("weight", "bias") if bias else ("weight",):
                t = _trainable(m, p)
                if t is not None and id(t) not in seen:
                    seen.add(id(t))
                    names.append(f"{mname}.{p}" if mname else p)
    return names


def pruned_orig(module: nn.Module, pname: str) -> torch.Tensor | None:
    """``pname_orig`` where torch.nn.utils.prune reparametrized ``module.pname`` (that parameter beside its
    ``pname_mask`` buffer), else None: the older hook-based spectral_norm keeps a ``weight_orig`` too, without
    a mask (its weight is recorded as ``weight_orig``, the tensor the optimizer trains)."""
    orig = module._parameters.get(pname + "_orig")
    return orig if orig is not None and pname + "_mask" in module._buffers else None


def _trainable(module: nn.Module, pname: str) -> torch.Tensor | None:
    """The trainable tensor of ``module.pname``: ``pname_orig`` once pruned (torch.nn.utils.prune); None for a
    buffer (a frozen random-feature layer's weight registered with register_buffer is not a parameter)."""
    orig = pruned_orig(module, pname)
    return (None if pname in module._buffers else getattr(module, pname, None)) if orig is None else orig


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
    _check_model(model)
    if not isinstance(name, str):
        raise TypeError(f"parameter names must be str ('module.weight'), got {name!r} ({type(name).__name__})")
    mname, _, pname = name.rpartition(".")
    try:
        module = model.get_submodule(mname) if mname else model
    except AttributeError as e:
        raise ValueError(f"model has no parameter {name!r} (no module {mname!r})") from e
    for suffix in ("_orig", "_mask"):  # torch.nn.utils.prune's two tensors behind a pruned parameter
        if pname.endswith(suffix) and pruned_orig(module, pname[:-len(suffix)]) is not None:
            base = name[:-len(suffix)]
            raise ValueError(f"{name!r} is torch.nn.utils.prune's {suffix[1:]} tensor of the pruned parameter "
                             f"{base!r}: masks, scores and trajectories are keyed by the parameter name ({base!r}), "
                             f"as pruning.magnitude_scores(model) and pruning.layer_parameters(model) give them")
    value = pruned_orig(module, pname)
    value = getattr(module, pname, None) if value is None else value
    if value is None:
        raise ValueError(f"model has no parameter {name!r}")
    if pname in module._buffers:
        raise ValueError(f"{name!r} is a buffer of the model (such as a batch norm's running statistics), not a "
                         f"parameter: masks, scores and trajectories hold parameters only")
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"model has no parameter {name!r}: {pname!r} of {type(module).__name__} is a "
                         f"{type(value).__name__}, not a tensor; give parameter names such as {name + '.weight'!r}")
    return module, pname


def effective_value(module: nn.Module, pname: str) -> torch.Tensor:
    """The value of ``module.pname`` in use: weight_orig * mask once pruned by torch.nn.utils.prune."""
    orig = pruned_orig(module, pname)  # pruned by torch.nn.utils.prune
    return getattr(module, pname) if orig is None else orig * getattr(module, pname + "_mask")


def current_value(model: nn.Module, name: str) -> torch.Tensor:
    """The effective value of a parameter now: weight_orig * mask for pruned ones (torch.nn.utils.prune)."""
    return effective_value(*resolve(model, name))


def in_use(model: nn.Module, name: str) -> torch.Tensor:
    """Bool, the shape of (this rank's part of) the parameter: its entries in use now, those nonzero in
    :func:`current_value` (a pruned entry is 0), the entries random masks draw among and chance counts."""
    return local_tensor(current_value(model, name)).detach() != 0


def parameter(model: nn.Module, name: str) -> nn.Parameter:
    """The trainable tensor behind a name: ``weight_orig`` once pruned, else ``weight``."""
    module, pname = resolve(model, name)
    orig = pruned_orig(module, pname)
    return getattr(module, pname) if orig is None else orig


def _check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _guess_head(model: nn.Module) -> nn.Module | None:
    """The default rule: ``model.classifier``, else the last nn.Linear registered (warns when unsure)."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Module):
        if not any(isinstance(m, PRUNABLE_TYPES) for m in head.modules()):
            warnings.warn(f"{type(model).__name__}.classifier ({type(head).__name__}) holds no conv/linear layer, so "
                          f"no classifier is left unpruned: the output layer may be pruned; pass "
                          f"classifier='<module name>' to keep it, or classifier=None to say that none is",
                          UserWarning, stacklevel=outside_stacklevel())
        return head
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        if any(isinstance(m, PRUNABLE_TYPES) for m in model.modules()):
            warnings.warn(f"{type(model).__name__} has no .classifier and no nn.Linear, so no classifier is left "
                          f"unpruned: its output layer may be pruned too; pass classifier='<module name>' to keep "
                          f"it, or classifier=None to say that none is", UserWarning, stacklevel=outside_stacklevel())
        return None
    name, head = linears[-1]
    parts = name.split(".")
    path = [model] + [model.get_submodule(".".join(parts[:i])) for i in range(1, len(parts))]
    if len(linears) > 1 and not all(isinstance(m, nn.Sequential) for m in path):
        warnings.warn(f"{type(model).__name__} has no .classifier: {name!r}, the last nn.Linear registered, is taken "
                      f"for it and left unpruned, but registration order need not be the order of the forward pass; "
                      f"pass classifier='<module name>' (or classifier=None to prune every layer)",
                      UserWarning, stacklevel=outside_stacklevel())
    return head


def classifier_names(model: nn.Module, classifier: str | None = "auto") -> list[str]:
    """Parameter names (conv/linear weight and bias) of the classifier, which pruning leaves out by default.

    Parameters
    ----------
    model : the network.
    classifier : ``"auto"`` (default) for the default rule: the module ``model.classifier`` if
        there is one (every model of :mod:`koopman_tut.training.models` has it), else the last
        nn.Linear in registration order (``model.named_modules()``), which is not necessarily the
        last one the forward pass applies: that cannot be known without running the model. A
        UserWarning says so when the guess is unsure (several nn.Linear and one of the containers
        above the last is not an nn.Sequential), when the model has conv layers but no
        nn.Linear, and when ``model.classifier`` holds no conv/linear layer (an nn.Identity: then
        no classifier is found). A module name (``"head"``, ``"body.2"``) names
        the classifier; ``None``: there is none, every layer may be pruned.
    """
    _check_model(model)
    if classifier is None:
        return []
    if not isinstance(classifier, str):
        raise TypeError(f"classifier must be a module name (str), 'auto' or None, got {type(classifier).__name__}")
    if classifier == "auto":
        head = _guess_head(model)
        if head is None:
            return []
    else:
        try:
            head = model.get_submodule(classifier)
        except AttributeError:
            raise ValueError(f"classifier={classifier!r}: the model has no module of that name") from None
    ids = {id(p) for p in head.parameters()}  # by identity: a classifier weight tied elsewhere is still the classifier
    names = [n for n in layer_parameters(model) if id(parameter(model, n)) in ids]
    if not names and classifier != "auto":
        raise ValueError(f"classifier={classifier!r} holds no conv/linear weight ({type(head).__name__})")
    return names


def prunable(model: nn.Module, bias: bool = False, classifier: bool | str | None = False) -> list[str]:
    """Names of the parameters pruning may touch: conv/linear weights (and biases, if ``bias``),
    without the classifier's.

    ``classifier``: False or ``"auto"`` (default) leaves out the classifier of the default rule,
    a module name leaves out that module's, True or None prunes the classifier too; see
    :func:`classifier_names`.
    """
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False, got {bias!r} ({type(bias).__name__})")
    if isinstance(classifier, (bool, np.bool_)):
        classifier = None if classifier else "auto"
    skip = set(classifier_names(model, classifier))
    return [n for n in layer_parameters(model, bias=bool(bias)) if n not in skip]

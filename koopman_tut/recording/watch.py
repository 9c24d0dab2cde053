"""Seeing a model change as it happens, so a recorder checks its parameters once per change.

PyTorch calls global registration hooks whenever any module registers a parameter, a buffer or
a submodule: ``model.fc = nn.Linear(...)``, ``fc.weight = nn.Parameter(...)``,
``torch.nn.utils.prune`` (``weight_orig`` and ``weight_mask``), ``parametrize``,
``load_state_dict(assign=True)``. Each bumps :func:`generation`. A recorder walks the model
and checks every recorded parameter again only when the generation (or a recorded tensor's
storage or shape) changed since its last walk, instead of at every optimizer step.

Not seen here, because PyTorch fires no registration hook for them: ``del module.weight``,
``module.bias = None``, a write into the private dicts (``module._parameters["weight"] = ...``),
and ``model.to()`` where it builds new Parameters (as it does for another kind of device). The
recorder sees them at the next step all the same: it checks, at every step, that each recorded
tensor still sits in its module's ``_parameters`` slot. A submodule swapped in a private
``_modules`` dict is seen by the periodic walk, within ``CHECK_EVERY`` steps.
"""
from __future__ import annotations

from torch.nn.modules import module as _module

CHECK_EVERY = 64  # optimizer steps between full walks when nothing was seen to change

_generation = 0
_installed = False


def _bump(*_args) -> None:  # returns None: the registration goes on unchanged
    global _generation
    _generation += 1


def install() -> None:
    """Register the three global hooks, once per process."""
    global _installed
    if not _installed:
        _module.register_module_parameter_registration_hook(_bump)
        _module.register_module_buffer_registration_hook(_bump)
        _module.register_module_module_registration_hook(_bump)
        _installed = True


def generation() -> int:
    """How many parameters, buffers and submodules were registered anywhere since :func:`install`."""
    return _generation

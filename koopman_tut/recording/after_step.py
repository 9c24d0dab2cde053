"""Whether the recorded parameters change between optimizer steps, outside the optimizer.

The recorder sees the parameters right after each ``optimizer.step()``. Training that changes them between
two steps (``p.clamp_()`` or ``p.data = p.data.clamp(...)`` after a step, a max-norm projection, a Lookahead's
slow weights, ``load_state_dict``) goes on from other values than those recorded: the snapshots are then the
states before each change, and the Koopman gradient, which reads each step as the optimizer's, is off by the
change over lr; nothing said so. So at its first two snapshots (the first may be the state at construction,
before any step) and at two in every ``watch.CHECK_EVERY`` after them, the recorder arms a check that runs at
the start of the next ``step()`` (:class:`AfterStepCheck`, its step pre-hook, moved ahead of every other
pre-hook of that optimizer, which belong to the step): the model's values now, looked up as the recorder's
walk does, are compared with the snapshot, and a difference above the rounding of the storage's dtype warns
once (:class:`ChangedAfterStepWarning`). Not seen: a change made only now and then between two checks; one
at the level of rounding (SAM's perturb-and-restore); one made by a global optimizer pre-hook
(``torch.optim.optimizer.register_optimizer_step_pre_hook``, which runs first).
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Callable

import torch

from .watch import CHECK_EVERY

TOLERANCE = 16  # a change smaller than this many machine epsilons of the storage dtype, relative, is rounding
_SKIP = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep
              for m in (sys.modules[__name__.split(".")[0]], torch))  # koopman_tut's and torch's own frames


class ChangedAfterStepWarning(UserWarning):
    """The recorded parameters changed between two optimizer steps, outside the optimizer (clamping, a projection,
    a pruning mask set while recording)."""


def user_stacklevel() -> int:
    """The stacklevel of warnings.warn that points at the first caller outside koopman_tut and torch (the user's
    ``opt.step()``, also when an lr scheduler or a GradScaler wraps it)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_SKIP):
        frame, level = frame.f_back, level + 1
    return level


class AfterStepCheck:
    """A check, at the start of the next optimizer step, that the model still holds snapshot ``k``, when armed.

    Parameters
    ----------
    optimizer : the recorded optimizer: a step pre-hook is registered ahead of its others (a no-op unless armed;
        never removed while torch iterates the hooks, which would raise there) until :meth:`remove`.
    storage : (capacity, n) the recorder's storage.
    values : () -> (n,) the model's values now in the storage's dtype, looked up afresh (a parameter whose data
        was replaced is read where it is now); an exception means the recorder's own checks will report.
    live : () -> whether a later snapshot can still be written (the window not over, the storage not full).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, storage: torch.Tensor, values: Callable[[], torch.Tensor],
                 live: Callable[[], bool]):
        self.storage, self.values, self.live = storage, values, live
        self.row: int | None = None  # the snapshot to compare with, when armed
        self.step, self.warned = 0, False
        self.handle = optimizer.register_step_pre_hook(self._pre)
        hooks = getattr(optimizer, "_optimizer_step_pre_hooks", None)
        if hasattr(hooks, "move_to_end"):  # first among this optimizer's pre-hooks: theirs are part of the step
            hooks.move_to_end(self.handle.id, last=False)

    def arm(self, k: int, step: int) -> None:
        """Check at the next step that the model still holds snapshot ``k`` (taken at ``step``): snapshots 0 and 1,
        then two in every ``CHECK_EVERY``."""
        if k % CHECK_EVERY < 2 and not self.warned:
            self.row, self.step = k, step

    def remove(self) -> None:
        self.row = None
        self.handle.remove()

    def _pre(self, optimizer, args, kwargs) -> None:
        if self.row is None:
            return
        k, self.row = self.row, None
        if not self.live():
            return
        try:
            now, then = self.values().double(), self.storage[k].double()
        except Exception:  # noqa: BLE001  (a tensor replaced or resized: the recorder's checks report it)
            return
        eps = torch.finfo(self.storage.dtype).eps
        if float((now - then).norm()) > TOLERANCE * eps * float(then.norm()):  # NaN: no
            self.warned = True
            warnings.warn(ChangedAfterStepWarning(
                f"the recorded parameters changed after optimizer step {self.step}, before the next one (clamping, "
                f"a projection, a hand edit, load_state_dict, another optimizer): the recorder sees them right "
                f"after each step, so its snapshots are the states before such changes, not those training goes on "
                f"from, and the Koopman gradient reads the change as part of a step. Make the change part of the "
                f"step (a torch.optim.Optimizer subclass, or a step pre-hook) or analyse the window knowing it"),
                stacklevel=user_stacklevel())

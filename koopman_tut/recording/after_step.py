"""Whether the recorded parameters change between optimizer steps, outside the optimizer.

The recorder sees the parameters right after each ``optimizer.step()``. Training that changes them after
the step (``p.clamp_()``, a max-norm projection, a Lookahead's slow weights, ``load_state_dict``) goes on
from other values than those recorded: the snapshots are then the states before each change, and the
trajectory is not one of the optimizer's map, silently. So at its first two snapshots and every
``watch.CHECK_EVERY``-th one after them, the recorder arms its step pre-hook (:class:`AfterStepCheck`):
before the next step, the parameters are written into the next row of storage (scratch, restored after) and
compared bit for bit with the snapshot. A
difference warns once (:class:`ChangedAfterStepWarning`). A change made only now and then between two
checks is not seen; one made after every step is, at the first step.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch

from .watch import CHECK_EVERY

_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}  # itemsize -> a dtype to compare bits as


class ChangedAfterStepWarning(UserWarning):
    """The recorded parameters changed after an optimizer step, before the next one (clamping, a projection)."""


class AfterStepCheck:
    """A check, before the next optimizer step, that the parameters are still snapshot ``k``, when armed.

    Parameters
    ----------
    optimizer : the recorded optimizer: a step pre-hook is registered (a no-op unless armed; it is never
        removed while torch iterates the hooks, which would raise there) until :meth:`remove`.
    writer : the recorder's :class:`koopman_tut.recording.rows.RowWriter`, whose ``write(k + 1)`` is the scratch.
    storage : (capacity, n) the recorder's storage.
    writable : whether the storage may still be written (a file not yet closed).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, writer, storage: torch.Tensor,
                 writable: Callable[[], bool] = lambda: True):
        self.writer, self.storage, self.writable = writer, storage, writable
        self.row: int | None = None  # the snapshot to compare with, when armed
        self.step, self.warned = 0, False
        self.handle = optimizer.register_step_pre_hook(self._pre)

    def arm(self, k: int, step: int) -> None:
        """Check before the next step that the parameters are still snapshot ``k`` (taken at ``step``), for
        the first two snapshots (the first may be the state at construction, before any step) and every
        ``CHECK_EVERY``-th after them."""
        if k % CHECK_EVERY < 2 and not self.warned and k + 1 < self.storage.shape[0]:
            self.row, self.step = k, step

    def remove(self) -> None:
        self.row = None
        self.handle.remove()

    def _pre(self, optimizer, args, kwargs) -> None:
        if self.row is None:
            return
        k, self.row = self.row, None
        if not self.writable():
            return
        bits, scratch = _BITS[self.storage.element_size()], self.storage[k + 1]
        kept = scratch.clone()  # restored after: the storage holds only snapshots
        try:
            self.writer.write(k + 1)
            same = torch.equal(self.storage[k].view(bits), scratch.view(bits))
        except Exception:  # noqa: BLE001  (a tensor replaced or resized: the recorder's own checks report it after the step)
            same = True
        scratch.copy_(kept)
        if not same:
            self.warned = True
            warnings.warn(ChangedAfterStepWarning(
                f"the recorded parameters changed after optimizer step {self.step}, before the next one (clamping, "
                f"a projection, a hand edit, load_state_dict, another optimizer): the recorder sees them right "
                f"after each step, so its snapshots are the states before such changes, not those training goes on "
                f"from, and their dynamics are not the optimizer's map. Make the change part of the step (a "
                f"torch.optim.Optimizer subclass) or analyse the window knowing it"), stacklevel=3)

"""Whether the recorded parameters change between optimizer steps, outside the optimizer.

The recorder sees the parameters right after each ``optimizer.step()``. Training that changes them between
two steps (``p.clamp_()`` or ``p.data = p.data.clamp(...)`` after a step, a max-norm projection, a Lookahead's
slow weights, ``load_state_dict``) goes on from other values than those recorded: the snapshots are then the
states before each change, and the Koopman gradient, which reads each step as the optimizer's, is off by the
change over lr; nothing said so. So at its first two snapshots (the first may be the state at construction,
before any step) and at one in every ``watch.CHECK_EVERY`` after them, the recorder arms a check that runs at
the start of the next ``step()`` (:class:`AfterStepCheck`, its step pre-hook, moved ahead of every other
pre-hook of that optimizer, which belong to the step): the model's values now, looked up as the recorder's
walk does, are compared with the snapshot, and a difference above rounding warns once per recorder
(:class:`ChangedAfterStepWarning`; also for a pruning mask set or replaced mid-window, seen by the walk). Not
seen: a change made only now and then between two checks; one at the level of rounding (SAM's
perturb-and-restore); one made by a global optimizer pre-hook
(``torch.optim.optimizer.register_optimizer_step_pre_hook``, which runs first). With ``shard=True`` each rank
checks its own rows and warns alone (no collective inside a step).
"""
from __future__ import annotations

import math
import warnings

import torch

from ..numerics.finite import outside_stacklevel
from .watch import CHECK_EVERY

TOLERANCE = 16  # a change this many roundings (relative, in norm; see AfterStepCheck) or less is rounding
CHUNK = 1 << 20  # entries compared at a time in float64 (a bounded allocation inside the user's step)


class ChangedAfterStepWarning(UserWarning):
    """The recorded parameters changed between two optimizer steps, outside the optimizer (clamping, a projection,
    a pruning mask set while recording)."""


class AfterStepCheck:
    """A check, at the start of the next optimizer step, that the model still holds snapshot ``k``, when armed;
    and the one warning of this recorder about changes outside the optimizer (:meth:`mask_changed` too).

    Parameters
    ----------
    rec : the :class:`koopman_tut.recording.recorder.TrajectoryRecorder` being built: its optimizer gets a step
        pre-hook ahead of its others (a no-op unless armed; never removed while torch iterates the hooks, which
        would raise there) until :meth:`remove`; its storage, the dtypes its parameters are trained in (the
        coarsest floating one rounds their changes), and later its writer and walk (:meth:`values`).
    """

    def __init__(self, rec):
        self.rec, self.storage, dtypes, optimizer = rec, rec.storage, rec._dtypes, rec.optimizer
        # rounding: a change of one rounding of the training dtype flips an entry of a coarser storage by one of
        # its own with probability eps_train / eps_storage, so the norm of what the storage shows is about
        # sqrt(eps_train * eps_storage) of the row's; of a finer storage, eps_train's
        storage_eps = torch.finfo(self.storage.dtype).eps
        trained_eps = max((torch.finfo(d).eps for d in dtypes if d.is_floating_point), default=storage_eps)
        self.tolerance = TOLERANCE * math.sqrt(trained_eps * max(trained_eps, storage_eps))
        self.row: int | None = None  # the snapshot to compare with, when armed
        self.step, self.warned = 0, False
        self.handle = optimizer.register_step_pre_hook(self._pre)
        hooks = getattr(optimizer, "_optimizer_step_pre_hooks", None)
        if hasattr(hooks, "move_to_end"):  # first among this optimizer's pre-hooks: theirs are part of the step
            hooks.move_to_end(self.handle.id, last=False)

    def values(self) -> torch.Tensor:
        """(n,) the model's values now in the storage's dtype, looked up afresh as a walk does (a parameter whose
        data was replaced is read where it is now); raises where the recorder's own checks will report."""
        return self.rec._writer.current(self.rec._current())

    def live(self) -> bool:
        """Whether a later snapshot can still be written (the window not over, the storage not full)."""
        rec = self.rec
        return len(rec.steps) < rec._cap and rec.step + rec.every <= rec._last

    def arm(self, k: int, step: int) -> None:
        """Check at the next step that the model still holds snapshot ``k`` (taken at ``step``): snapshots 0 and 1,
        then one in every ``CHECK_EVERY`` (a check costs about four row copies: a row built afresh, compared)."""
        if (k < 2 or k % CHECK_EVERY == 0) and not self.warned:
            self.row, self.step = k, step

    def remove(self) -> None:
        self.row = None
        self.handle.remove()

    def _pre(self, optimizer, args, kwargs) -> None:
        if self.row is None:
            return
        k, self.row = self.row, None
        try:  # an exception here would stop the user's step: a tensor replaced or resized (the recorder's checks
            moved = self.live() and self._moved(self.storage[k], self.values())  # report it), out of memory, ...
        except Exception:  # noqa: BLE001
            return
        if moved:
            self._warn(f"the recorded parameters changed after optimizer step {self.step}, before the next one "
                       f"(clamping, a projection, a hand edit, load_state_dict, another optimizer): the recorder "
                       f"sees them right after each step, so its snapshots are the states before such changes, not "
                       f"those training goes on from, and the Koopman gradient reads the change as part of a step. "
                       f"Make the change part of the step (a torch.optim.Optimizer subclass, or a step pre-hook) "
                       f"or analyse the window knowing it")

    def _moved(self, then: torch.Tensor, now: torch.Tensor) -> bool:
        """Whether ``now`` differs from ``then`` (n,) by more than rounding: equal first (no memory, the common
        case), then the norms in float64, a chunk at a time."""
        if torch.equal(now, then):
            return False
        diff = then_sq = 0.0
        for i in range(0, then.numel(), CHUNK):
            a, b = then[i:i + CHUNK].double(), now[i:i + CHUNK].double()
            diff += float((a - b).square().sum())
            then_sq += float(a.square().sum())
        return math.sqrt(diff) > self.tolerance * math.sqrt(then_sq)  # NaN: no

    def mask_changed(self, names: list[str], step: int) -> None:
        """A pruning mask of ``names`` was set or replaced after the first snapshot (seen by the walk at ``step``)."""
        self._warn(f"the pruning mask of {names[:3]}{' and more' * (len(names) > 3)} was set or replaced while "
                   f"recording (seen at step {step}): the snapshots before it hold the unpruned values, those after "
                   f"it the masked ones, a jump that is not training; KMP of the whole window would score the pruned "
                   f"entries from before the mask. Prune before recording, or analyse the windows before and after "
                   f"apart")

    def _warn(self, message: str) -> None:
        """Warn once per recorder (each message names its step, so Python's default filter would repeat it)."""
        if not self.warned:
            self.warned = True
            warnings.warn(ChangedAfterStepWarning(message), stacklevel=outside_stacklevel(torch_too=True))

"""``TrajectoryRecorder``: snapshots theta(t) of training through an optimizer step hook.

After each ``optimizer.step()`` the hook copies the flattened parameters, in one pass, into a
row of storage allocated up front (:mod:`koopman_tut.recording.rows`). Nothing is recorded silently wrong:

* bad arguments, a non-floating storage dtype and an optimizer that does not train the
  recorded parameters are refused at construction (TypeError / ValueError);
* a recorded parameter replaced (a new module or tensor, ``model.to()``, a private-dict write, ``del``)
  or resized, or moved to another optimizer param group (:mod:`.groups`), raises RuntimeError from the next
  optimizer step, before a snapshot of it is taken. The model is walked when something may have changed, not at
  every step: a registration (:mod:`.watch`), the optimizer's group list, a dict in it or its params list
  replaced or resized, a recorded tensor with new storage or shape or out of its slot, or every
  ``watch.CHECK_EVERY`` steps. What is checked at every step runs in one compiled call where the C kernels
  were built, the row copied beside it (:mod:`.step_checks`);
* full storage (``max_snapshots``) warns (:class:`RecorderFullWarning`) at the first dropped snapshot, and
  parameters changed between steps (clamping after each) warn (:mod:`.after_step`).

Storage is memory (CPU or GPU) or, with ``path=``, a memory-mapped file (:mod:`koopman_tut.recording.storage`).
Under torch.distributed, ``shard=True`` makes each rank keep only its contiguous share of
the flattened rows (see :func:`koopman_tut.numerics.distributed.shard_range`).
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch
import torch.nn as nn

from . import after_step, step_checks, watch
from ..numerics import native
from ..numerics.distributed import local_tensor, shard_pieces, unwrap
from .rows import RowWriter
from .storage import DiskStorage, allocate
from .recorder_checks import (FLOAT_DTYPES, _check_bool, _check_device, _check_dtype, _check_fraction,  # noqa: F401
                              _check_int, _check_disk, _check_lr, _check_model, _check_names, _check_shard,
                              _check_window, _shard_rows, _trained_by, changed_message, disk_stop, full_message)
from .groups import membership, moved_message, params_lists, positions, recorder_meta
from .params import layer_parameters, parameter
from .settings_log import SettingsLog, meta_entries
from .trajectory import Trajectory


class RecorderFullWarning(UserWarning):
    """The recorder's storage (``max_snapshots``) is full: later snapshots are dropped."""


class TrajectoryRecorder:
    """Record flattened parameters after optimizer steps, into preallocated storage.

    Parameters
    ----------
    model, optimizer : the model being trained and the optimizer that trains it (a step hook is
        registered). Every recorded parameter must be one of the optimizer's parameters.
    every : record every ``every``-th step (stride k maps DMD eigenvalues lambda to lambda^k;
        the eigenvalue-1 mode is unchanged).
    params : names to record (default: weights and biases of conv/linear layers, see
        :func:`~koopman_tut.recording.trajectory.layer_parameters`, less frozen ones outside the optimizer).
    start, stop : window of optimizer steps [start, stop]: snapshot s is theta after s steps;
        the state at construction counts as step ``step0`` (default 0); stop must be >= start and >= step0.
    max_snapshots : capacity (needed when ``stop`` is None); a :class:`RecorderFullWarning` is
        emitted when the first snapshot is dropped.
    device, dtype : where and how snapshots are stored (default CPU float32; float16 and
        bfloat16 halve the memory).
    max_fraction : refuse when the storage would take more than this share of the free memory.
    path : record into this file instead of memory (memory-mapped, format in
        :mod:`koopman_tut.recording.disk_format`), readable while training runs and after the process dies
        with ``Trajectory.load(path)``; needs device="cpu". Created through a temporary file beside
        it, renamed into place once its space is reserved; a symlink is never followed; the mode
        follows the umask. The file is closed (complete) when the window ends, the storage is
        full, ``remove()`` is called or the process exits; one whose process was killed loads as
        cut short (a warning, ``meta["recording"]``).
    overwrite : with ``path``, replace an existing file there (untouched until the new one is
        allocated); without it an existing file is refused (FileExistsError). A file another
        recorder is still writing is refused either way. Refused without ``path`` (ValueError).
    sync : with ``path`` (refused without it), msync every snapshot to the device (survives a power loss, not
        only a crash).
    shard : under torch.distributed (``True``: the default group, or a group), keep only this
        rank's contiguous share of the flattened rows; ``trajectory()`` then holds those rows, its
        names/shapes are the pieces of parameters they cover (a parameter cut by a shard boundary
        becomes a flat piece) and ``meta`` has "rows" (start, stop), "n_total", "all_names",
        "all_shapes". A DistributedDataParallel (or DataParallel) model is recorded through its
        ``module``, so names match the plain model's; FSDP2 parameters (DTensor) are recorded
        as their local shards.

    Raises
    ------
    TypeError, ValueError : at construction, for bad arguments, an optimizer that does not train the recorded
        parameters, or settings a Trajectory cannot hold (momentum 1); ValueError from a step that sets such (a NaN lr).
    RuntimeError : from ``optimizer.step()``, when a recorded parameter was replaced or resized, or
        moved to another optimizer param group (:mod:`koopman_tut.recording.groups`).

    Examples
    --------
    >>> rec = TrajectoryRecorder(model, opt, start=100, stop=200)
    >>> train(...)             # any loop that calls opt.step()
    >>> traj = rec.trajectory()  # snapshots (n, 101)
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, every: int = 1,
                 params: list[str] | None = None, start: int = 0, stop: int | None = None,
                 max_snapshots: int | None = None, device="cpu", dtype: torch.dtype = torch.float32,
                 step0: int = 0, max_fraction: float = 0.8, path: str | os.PathLike | None = None,
                 sync: bool = False, shard=False, overwrite: bool = False):
        self.every = _check_int("every", every, 1)
        self.start, self.stop, self.step = _check_window(start, stop, step0, self.every, max_snapshots)
        self.max_snapshots = None if max_snapshots is None else _check_int("max_snapshots", max_snapshots, 1)
        if self.stop is None and self.max_snapshots is None:
            raise ValueError("give stop (the last step to record) or max_snapshots, so storage can be preallocated")
        dtype, max_fraction = _check_dtype(dtype), _check_fraction("max_fraction", max_fraction)
        explicit, (sync, overwrite) = _check_names(params), _check_disk(path, sync, overwrite)
        model = unwrap(_check_model(model))
        self.model, self.optimizer = model, optimizer
        _check_lr(optimizer)
        names = explicit if explicit is not None else layer_parameters(model)
        self.names = _trained_by(model, optimizer, names, explicit is not None)
        if not self.names:
            raise ValueError("no parameters to record: " + ("params is empty" if explicit is not None else
                                                            "the model has no conv/linear layer the optimizer trains"))
        self._tensors = [parameter(model, n) for n in self.names]  # identities, checked at every step
        self.shapes = [tuple(local_tensor(t).shape) for t in self._tensors]
        self._dtypes = [t.dtype for t in self._tensors]  # meta's trained_in: a step's rounding
        # looked up again at every step, from the model down, so a replaced submodule is seen too
        self._lookup = [(tuple(n.split(".")[:-1]), n.rpartition(".")[2]) for n in self.names]
        self._orig = [attr + "_orig" for _, attr in self._lookup]  # the trained tensor once pruned (beside its mask)
        self._mask = [attr + "_mask" for _, attr in self._lookup]
        self._sharded = any(hasattr(t, "to_local") for t in self._tensors)  # DTensors (FSDP2)
        self.device = _check_device(device)
        self.group = _check_shard(shard, self._sharded)  # None, or the group (True: the default one)
        self.n_total = sum(math.prod(s) for s in self.shapes)
        self.rows = _shard_rows(self.n_total, self.group)  # (0, n_total) without a group
        # (index, lo, hi): the entries lo:hi of recorded tensor `index` lie in this rank's rows
        self._pieces = (shard_pieces(self.shapes, self.rows) if self.group is not None
                        else [(i, 0, math.prod(s)) for i, s in enumerate(self.shapes)])
        cap = (self.stop - self.start) // self.every + 1 if self.stop is not None else self.max_snapshots
        cap, n = cap if self.max_snapshots is None else min(cap, self.max_snapshots), self.rows[1] - self.rows[0]
        self.meta0 = recorder_meta(self)  # the optimizer settings when recording starts, on every route
        self._members = membership(optimizer, self.names, self._tensors)
        self._lr_groups = self._groups_now(self._members)
        if path is None:
            self.storage, self._disk = allocate(cap, n, dtype, self.device, max_fraction), None
        else:
            if self.device.type != "cpu":
                raise ValueError(f"path= records to a file through the CPU: device must be 'cpu', got {device!r}")
            names, shapes = self._layout()
            self._disk = DiskStorage(path, names, shapes, n, cap, dtype, self.meta0, sync, overwrite,
                                     groups=len(self._lr_groups), window=self.stop is not None)
            self.storage = self._disk.data
        self._cap, self.steps = self.storage.shape[0], []  # capacity; the steps of the snapshots so far (list[int])
        self._after = after_step.AfterStepCheck(self)  # parameters changed between steps, outside the optimizer
        self._log = SettingsLog(self._lr_groups, optimizer)  # every group's settings per snapshot
        self._writer = RowWriter(self.storage, self._pieces, self.names, self._after.mask_changed)
        # what the last walk saw (registrations, group list and dicts, tensors and their slots), when the next is due
        self._gen, self._groups_seen, self._dicts_seen, self._aliases, self._next_walk = None, None, (), [], 0
        self._slots, self._keys, self._plists, self._plens, self._places = [], [], [], [], ([], [])
        self._fast: tuple | None = None  # (holds, spec): every check below in one compiled call (.step_checks)
        watch.install()
        self._handle = optimizer.register_step_post_hook(self._hook)
        self._record(self.step)  # the state at construction (if inside the window)

    lrs = property(lambda self: [row[0][0] for row in self._log.rows], doc="The first recorded group's lr at each "
                   "snapshot (of the step that produced it; group_lrs: every group's).")
    group_lrs = property(lambda self: [[g[0] for g in row] for row in self._log.rows])

    @property
    def stop(self) -> int | None:
        """The last step recorded (None: until the storage is full); it may be changed while recording."""
        return self._stop

    @stop.setter
    def stop(self, value: int | None) -> None:
        value = None if value is None else _check_int("stop", value, 0)
        ends = getattr(self, "_disk", None) is not None and disk_stop(self, value)  # a file's window may end here
        self._stop = value
        if getattr(self, "_last", None) != -1:  # full storage stays full
            self._last = math.inf if value is None else value  # the hook's one bound; -1 once the storage is full
        if ends:
            self._disk.close(complete=True)

    def _layout(self) -> tuple[list[str], list[tuple[int, ...]]]:
        """(names, shapes) of the rows held: whole parameters, or flat pieces of those cut by a shard boundary."""
        out = [(self.names[i], self.shapes[i] if hi - lo == math.prod(self.shapes[i]) else (hi - lo,))
               for i, lo, hi in self._pieces]
        return [n for n, _ in out], [s for _, s in out]

    def _groups_now(self, members: list[tuple[int, list[str]]]) -> list[dict]:
        """The param groups holding recorded parameters, from their :func:`.groups.membership` (the first group
        when none does)."""
        pg = self.optimizer.param_groups
        return [pg[i] for i, _ in members] or pg[:1]

    # -- the hook runs after every optimizer.step(): the common case (nothing changed, a snapshot
    # due) is one check per recorded tensor, one copy and one log entry, read from plain attributes
    def _hook(self, optimizer, args, kwargs) -> None:
        self.step = s = self.step + 1
        self._record(s)

    def _record(self, s: int) -> None:  # no torch.no_grad() needed: the flat views it copies are detached
        if s > self._last:  # the recording is over (the window ended or the storage is full): nothing to check or
            self._fast = None  # write, nor to keep alive (a spec holds the optimizer's state)
            return
        due = not (s < self.start or (s - self.start) % self.every)
        row = self._writer.ahead(len(self.steps), self._cap) if due and self._fast is not None else ()
        fast = self._fast is not None and s < self._next_walk and self._fast[0](self._fast[1], *row)  # in one call
        if not fast:
            self._fast = None  # taken again after the checks in Python
            if not step_checks.unchanged(self, s):
                self._walk(s)  # raises if a recorded parameter was replaced, removed or reshaped
        if due:
            self._snapshot(s, fast, fast and bool(row))
        if not fast and s <= self._last and (spec := step_checks.spec(self)) is not None:
            self._fast = native.checker(), spec

    def _snapshot(self, s: int, fast: bool, copied: bool = False) -> None:
        """Row k = the values after step s, its settings logged (``fast``: the checks held in one call; ``copied``:
        which wrote row k too)."""
        k = len(self.steps)
        if k == self._cap:
            self._last = -1
            return warnings.warn(full_message(self._cap, self.max_snapshots, s), RecorderFullWarning, stacklevel=3)
        try:  # all of snapshot k or none of it: an exception on the way (Ctrl-C) leaves row k to the next one
            self._writer.write(k, fast, copied)
            self._log.repeat() if fast else self._log.log(self._lr_groups, s)
            if self._disk is not None:
                self._disk.commit(k, s, self._log.array)  # after the row: the file counts complete snapshots only
            self.steps.append(s)  # last: snapshot k exists from here on
        except BaseException:
            del self._log.rows[k:]
            if self._disk is not None:
                self._disk.uncommit(k)
            raise
        if self._disk is not None and (k + 1 == self._cap or s + self.every > self._last):
            self._disk.close(complete=True)  # nothing more can be written: the file is complete
        self._after.arm(k, s)  # now and then: are these still the parameters when the next step starts?

    def _current(self) -> list[tuple[nn.Module | None, torch.Tensor | None, bool]]:
        """(module, trainable tensor, pruned?) per recorded name, looked up in the model now;
        RuntimeError if one is not the tensor, or not of the shape, recorded so far."""
        out = [self._find(i) for i in range(len(self._lookup))]
        for (_, t, _), t0, shape, dtype in zip(out, self._tensors, self.shapes, self._dtypes):
            if t is not t0 or (local_tensor(t) if self._sharded else t).shape != shape or t.dtype != dtype:
                raise RuntimeError(changed_message(self, [t for _, t, _ in out]))
        return out

    def _find(self, i: int) -> tuple[nn.Module | None, torch.Tensor | None, bool]:
        """(module, trainable tensor, pruned?) of recorded name ``i``, walked down from the model."""
        (path, attr), m = self._lookup[i], self.model
        for a in path:
            m = m._modules.get(a) if m is not None else None
        ps = m._parameters if m is not None else {}
        orig = ps.get(self._orig[i]) if self._mask[i] in m._buffers else None  # pruned: train weight_orig
        return m, ps.get(attr) if orig is None else orig, orig is not None

    def _walk(self, s: int) -> None:
        """Walk the model and check every recorded tensor (:meth:`_current`). :meth:`_record` calls
        it when something may have changed since the last walk: a registration anywhere
        (:mod:`.watch`: a replaced module or tensor, pruning), a new optimizer param_groups list
        (``load_state_dict``), a group dict or params list replaced, added or resized, a tensor off the storage,
        offset, shape or strides seen (``p.data = ...``, ``model.to()``, a transpose), or
        ``watch.CHECK_EVERY`` steps gone by."""
        found = self._current()
        now = membership(self.optimizer, self.names, self._tensors)
        if now != self._members:  # raised again at every step: nothing saved from this walk
            raise RuntimeError(moved_message(self._members, now))
        self._lr_groups = self._groups_now(now)  # new dicts after optimizer.load_state_dict
        self._plists, self._plens = params_lists(self.optimizer)
        self._places = positions(self.optimizer, self._tensors)
        self._writer.prepare(found, s)
        self._aliases = [local_tensor(t).detach() for _, t, _ in found]
        self._slots = [m._parameters for m, _, _ in found]  # a tensor swapped in them unregistered: seen next step
        self._keys = [self._orig[i] if pruned else self._lookup[i][1] for i, (_, _, pruned) in enumerate(found)]
        self._gen, self._groups_seen = watch.generation(), self.optimizer.param_groups
        self._dicts_seen = tuple(self._groups_seen)  # identities, not equality: load_state_dict's dicts compare equal
        self._next_walk = s + watch.CHECK_EVERY

    def remove(self) -> None:
        """Stop recording (unregister the step hook)."""
        self._handle.remove()
        self._after.remove()
        self._fast = None
        if self._disk is not None:
            self._disk.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def trajectory(self, copy: bool = False) -> Trajectory:
        """The snapshots so far as a Trajectory: snapshots (n, T) is a view of the storage unless ``copy``."""
        T = len(self.steps)
        if T == 0:
            raise ValueError(f"nothing recorded yet: {self.step} steps taken, window starts at step {self.start}")
        snaps = (self.storage[:T].clone() if _check_bool("copy", copy) else self.storage[:T]).T  # (n, T)
        names, shapes = self._layout()
        meta = {**self.meta0, **meta_entries(self.meta0, np.array(self._log.rows[:T], dtype=np.float64))}
        return Trajectory(snaps, torch.tensor(self.steps, dtype=torch.long), names, shapes, meta)

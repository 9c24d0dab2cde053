"""The optimizer settings of every recorded step: each parameter group's lr, momentum, dampening,
weight decay, Nesterov and maximize flags, per snapshot, in memory and on disk alike, and how
often its momentum buffers were replaced.

A schedule may change any of them while recording (an LR scheduler the lr, OneCycleLR the
momentum too, a hand edit anything); undoing a step into its gradient (the Koopman gradient,
the secant limit) needs the settings of that very step. :class:`SettingsLog` reads them at
every snapshot, cheaply, and :func:`meta_entries` turns a log, (T, G, 7) numbers, into the
Trajectory's per-snapshot metadata on both routes:

* ``lrs`` (T,): the first group's lr; ``group_lrs`` (T, G): every group's, when G > 1;
* ``group_settings`` (T, G) of dicts {momentum, dampening, weight_decay, nesterov, maximize,
  restarts}, only when some step's differ from those the recorder started with
  (``meta['groups']``, or the top-level settings; restarts 0): otherwise those rule every step.

``restarts`` counts the times a group's momentum buffer (``optimizer.state[p]['momentum_buffer']``
of its first parameter that has one) was replaced by another tensor since the recorder was built:
a restart (the optimizer's state cleared, or loaded from another optimizer's; a deep copy of its own
counts too, although its values go on). SGD updates its buffer in place (foreach, for-loop and
fused alike), so a step across a replacement may not follow the momentum recursion, and the steps
on either side cannot be undone as one. A buffer zeroed in place is not seen; two restarts between
snapshots count as one.

The lr of a snapshot is the one of the step that produced it (the step t -> t+1 is logged
with snapshot t+1), and so are its other settings.
"""
from __future__ import annotations

import math
import operator
from itertools import chain

import numpy as np
import torch

from ..numerics.optimizer_settings import SGD_SETTINGS, check_group_settings

KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "restarts")  # a row per group
FLAGS = ("nesterov", "maximize")  # 0 or 1 in a log, bools in meta


def settings_keys(groups: list[dict]) -> tuple[str, ...]:
    """("lr", and those of :data:`SGD_SETTINGS` every group in ``groups`` has): SGD has all five."""
    return ("lr", *(k for k in SGD_SETTINGS if all(k in g for g in groups)))


def _number(v) -> float:
    """A setting as a float (a tensor read now; None, or a key the optimizer lacks, is 0)."""
    return float(v.item() if isinstance(v, torch.Tensor) else (v or 0.0))


def group_row(group: dict, restarts: int = 0) -> tuple[float, ...]:
    """The :data:`KEYS` of one optimizer group (or a recorder's meta) as floats: a log's row."""
    return (*(_number(group.get(k)) for k in KEYS[:-1]), float(restarts))


def check_recordable(row: tuple[float, ...], where: str, when: str) -> None:
    """ValueError naming ``where`` (``optimizer.param_groups[i]``), ``when`` ending the message, unless a group's
    :func:`group_row` holds settings a Trajectory can hold: a finite lr and what
    :func:`~koopman_tut.numerics.optimizer_settings.check_group_settings` accepts, the check ``Trajectory.load``
    and ``rec.trajectory()`` make, so that whatever a recorder records can be read back."""
    try:
        if not math.isfinite(row[0]):
            raise ValueError(f"{where}['lr'] must be a finite number, got {row[0]!r}")
        check_group_settings(where, dict(zip(KEYS[1:4], row[1:4])))  # momentum, dampening, weight_decay
    except ValueError as e:
        raise ValueError(f"{e} {when}") from None


class SettingsLog:
    """Per snapshot, every recorded group's settings (``rows``: a list of G tuples of :data:`KEYS`,
    the lr first), and the first step whose settings other than the lr differ from those when the
    recorder was built (``changed_at``; set by hand, or by OneCycleLR).

    The settings are read at every snapshot; they are converted to float only when a value read
    is not the very object read at the last snapshot (a schedule, a hand edit, new groups after
    ``optimizer.load_state_dict``: identity, not equality, so a float replaced by an
    equal-looking low-precision tensor is seen), or at every snapshot while any value is a
    tensor (changed in place, it stays the same object). With one group of plain numbers the
    identities are compared one key at a time, allocating nothing: inside a training step that
    measured 1-4 us faster than an itemgetter's tuple.
    """

    def __init__(self, groups: list[dict], optimizer=None):
        self._opt = optimizer  # its .state holds the momentum buffers (a new dict after load_state_dict)
        found = [self._buffer(g) for g in groups]  # (parameter, its momentum buffer) per group
        self._params, self._buffers = [p for p, _ in found], [b for _, b in found]
        self._restarts = [0] * len(groups)
        self._keys = settings_keys(groups)
        self._get = operator.itemgetter(*self._keys) if len(self._keys) > 1 else (lambda g: (g["lr"],))
        self._first = [group_row(g)[1:] for g in groups]
        self._last, self._tensors, self._row = [], True, []
        self._pairs: tuple | None = None  # ((key, value read), ...) of the one group, when no value is a tensor
        self.array = np.zeros((len(groups), len(KEYS)))  # (G, 7) the current row, for a disk commit
        self.rows: list[list[tuple[float, ...]]] = []
        self.changed_at: int | None = None

    def log(self, groups: list[dict], step: int) -> None:
        restarted = self._restarted(groups)
        if self._pairs is not None and len(groups) == 1 and not restarted:
            group = groups[0]
            for key, value in self._pairs:
                if group[key] is not value:
                    break
            else:  # nothing changed
                self.rows.append(self._row)
                return
        now = list(map(self._get, groups))  # [(lr, momentum, ...)] per group
        if restarted or self._tensors or len(now) != len(self._last) or not all(
                map(operator.is_, chain.from_iterable(now), chain.from_iterable(self._last))):
            row = [group_row(g, r) for g, r in zip(groups, self._restarts)]  # new whenever one changes
            self._check(groups, row, step)  # before anything is kept: the same values are read again next time
            self._last, self._row = now, row
            self._tensors = any(isinstance(v, torch.Tensor) for t in now for v in t)
            self.array = np.array(self._row, dtype=np.float64)
            if self.changed_at is None and [r[1:] for r in self._row] != self._first:
                self.changed_at = step
            self._pairs = tuple(zip(self._keys, now[0])) if len(now) == 1 and not self._tensors else None
        self.rows.append(self._row)

    def repeat(self) -> None:
        """Log the last row again: what :meth:`log` does when every value it reads is the object it read last and no
        momentum buffer was replaced (checked by the caller, :mod:`koopman_tut.recording.step_checks`)."""
        self.rows.append(self._row)

    def checks(self, groups: list[dict], absent) -> list[tuple] | None:
        """What :meth:`log` compares, as (holder, key, value) checks for the recorder's compiled per-step call
        (:mod:`koopman_tut.recording.step_checks`: ``holder[key] is value``, a missing key read as ``absent``): where
        they all hold, :meth:`repeat` logs what :meth:`log` would. Every setting it reads is the object it read last,
        and each group's momentum buffer is the one it saw last (another is a restart) or, where it has seen none,
        the group has no momentum to make one. None where the log must look for a buffer at every snapshot (a group
        with momentum whose buffer it has not seen yet), settings held as tensors (read at every snapshot), a state
        whose ``get`` is its own, or no optimizer to read it from."""
        state = self._opt.state if self._opt is not None else None
        if (state is None or self._tensors or type(state).get is not dict.get
                or not len(self._last) == len(self._buffers) == len(groups)):
            return None
        out = [(g, key, value) for g, last in zip(groups, self._last) for key, value in zip(self._keys, last)]
        out.append((self._opt, "state", state))
        for g, p, buffer in zip(groups, self._params, self._buffers):
            if p is None:
                if g.get("momentum") or type(g.get("momentum")) not in (int, float, bool, type(None)):  # a tensor
                    return None  # (turned on in place)
                out.append((g, "momentum", g.get("momentum", absent)))
                continue
            held = state.get(p, absent)  # no state for p: no buffer found, no restart, until there is one
            if held is not absent and type(held) is not dict:
                return None
            out.append((state, p, held))
            if held is not absent:
                out.append((held, "momentum_buffer", buffer))
        return out

    def _check(self, groups: list[dict], row: list[tuple[float, ...]], step: int) -> None:
        """ValueError, nothing logged, where a schedule or a hand edit set a value a Trajectory cannot hold
        (:func:`check_recordable`): the snapshots before stay readable."""
        pg = self._opt.param_groups if self._opt is not None else groups
        for i, (g, r) in enumerate(zip(groups, row)):
            at = next((j for j, h in enumerate(pg) if h is g), i)
            check_recordable(r, f"optimizer.param_groups[{at}]", f"at step {step} (set while recording, by a schedule "
                             f"or by hand): a Trajectory cannot hold it, so the snapshot of step {step} is not "
                             f"recorded (those before it are kept: rec.trajectory()); set a value it can hold to "
                             f"record on")

    def _buffer(self, group: dict, p=None):
        """The momentum buffer of ``p`` (None where it has none), or of the group's first parameter
        that has one (a parameter without gradients, frozen or unused, never gets one)."""
        state = self._opt.state if self._opt is not None else {}
        for q in ((p,) if p is not None else group.get("params", ()) if group.get("momentum") else ()):
            st = state.get(q)
            if st and st.get("momentum_buffer") is not None:
                return q, st["momentum_buffer"]
        return p, None

    def _restarted(self, groups: list[dict]) -> bool:
        """Whether a group's momentum buffer is another tensor than at the last snapshot (counted in
        ``restarts``). Each group's buffer is that of one parameter, the first found with one; a
        buffer created where there was none is not a restart. A buffer zeroed in place is not seen."""
        out = False
        for i, g in enumerate(groups if len(groups) == len(self._buffers) else ()):
            p, now = self._buffer(g, self._params[i])
            if now is not self._buffers[i] and now is not None:
                if self._buffers[i] is not None:
                    self._restarts[i] += 1
                    out = True
                self._params[i], self._buffers[i] = p, now
        return out


def meta_entries(meta: dict, log: np.ndarray) -> dict:
    """The per-snapshot metadata of a log (T, G, 7) of :data:`KEYS` (see the module notes): ``lrs``,
    ``group_lrs`` when G > 1, ``group_settings`` when a step's settings differ from ``meta``'s."""
    out = {"lrs": log[:, 0, 0].tolist()}
    if log.shape[1] > 1:
        out["group_lrs"] = log[:, :, 0].tolist()
    base = np.array([group_row(g)[1:] for g in (meta.get("groups") or [meta])], dtype=np.float64)
    rest = log[:, :, 1:]
    if rest.shape[1] == 1:  # one group logged: a converted version-1 file logs the first of several
        base = base[:1]
    if base.shape != rest.shape[1:] or bool((rest != base).any()):
        kind = {k: bool if k in FLAGS else int if k == "restarts" else float for k in KEYS[1:]}
        out["group_settings"] = [[{k: kind[k](v) for k, v in zip(KEYS[1:], g)}
                                  for g in row] for row in rest.tolist()]
    return out

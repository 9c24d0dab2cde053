"""What a recorder checks at every step: in Python (:func:`unchanged`), or in one compiled call (:func:`spec`).

Before it copies a snapshot, a :class:`~koopman_tut.recording.recorder.TrajectoryRecorder` checks that nothing
it records from has changed since its last walk of the model (about thirty identity checks for a model of four
layers: the registration count, the optimizer's group list, dicts and params lists, each recorded tensor's slot,
place and storage), that the data have not moved inside their storages (the compiled copy reads addresses), and
that the optimizer settings and momentum buffers it logs are the objects logged last. In Python these took
31-45 us of the hook inside a training step of the digits MLP (2 cores of an AMD EPYC,
``benchmarks/bench_recording.py``: between two steps the interpreter's own data are out of the cache), about
as long as copying its 116,618 parameters; in one call the hook's own work beyond the copy is 20-23 us, and with
the row copied by torch's other threads while the calling thread checks, 2-8 us.

:func:`spec` gathers what those checks compare, each component's own expectation (the recorder's last walk, the
row writer's addresses, the settings log's last values), into one tuple, and the compiled ``holds``
(``numerics/_fused.c``, :func:`koopman_tut.numerics.native.checker`) runs them all in one call. Where it answers
True every Python check would pass, and the step is recorded as they would record it; where it answers False
(or there is no spec) the Python checks run and say what changed, and a new spec is taken after them. Where a
snapshot is due and the row writer copies through the compiled kernel, the same call copies the row beside the
checks read in C alone (dict and list entries at str or int keys, ``is_set_to``); what may run Python code (the
optimizer's attributes, a lookup by a tensor, whose ``__hash__`` is Python's) and the data's addresses are checked
before the copy starts, so no code of the program's own runs on the calling thread while the row is copied (no
spec for tensor subclasses, and no row beside the checks under a torch function or dispatch mode, whose Python
code ``is_set_to`` would run; another Python thread may run while ``is_set_to`` lets go of the GIL, as during the
Python route's copy). A row copied under a False answer is no snapshot (the Python route writes it again, or
raises before it is one). It reads
what the Python checks read the way they read it: the optimizer's ``param_groups`` and ``state`` as attributes
(a property, a new ``__dict__``, another class), dict entries as ``dict.get`` does. There is no spec where the
library was not built, under ``KOOPMAN_TUT_NATIVE=0``, for sharded (DTensor) parameters, for settings held as
tensors (read at every snapshot), for param groups that are dict subclasses (read through their own
``__getitem__``) and for an optimizer state whose ``get`` is its own. Not seen, on either route: a class edited
in place.
"""
from __future__ import annotations

import operator

import torch

from ..numerics import native
from ..numerics.distributed import local_tensor
from . import watch

ABSENT = object()  # what a missing key reads as (dict.get's None would match a key set to None)
_SAME = torch.Tensor.is_set_to  # same storage, offset, shape and strides
_IS, _PARAMS = operator.is_, operator.itemgetter("params")  # the same group dicts and params lists
_PLAIN = (torch.Tensor, torch.nn.Parameter)  # tensors whose is_set_to and data_ptr run in C alone


def unchanged(rec, s: int) -> bool:
    """Whether recorder ``rec`` may skip its walk of the model at step ``s``: the walk is not due (every
    ``watch.CHECK_EVERY`` steps), nothing was registered anywhere (:mod:`.watch`), the optimizer's group list, its
    dicts and their params lists are those of the last walk (lengths too), and each recorded tensor still has the
    storage, offset, shape and strides the copy reads, its slot in its module and its place in its group."""
    ts = [local_tensor(t) for t in rec._tensors] if rec._sharded else rec._tensors
    pg, seen = rec.optimizer.param_groups, rec._dicts_seen  # a group dict replaced in the list is seen too
    return (s < rec._next_walk and watch._generation == rec._gen and pg is rec._groups_seen
            and len(pg) == len(seen) and all(map(_IS, pg, seen)) and all(map(_SAME, ts, rec._aliases))
            and all(map(_IS, map(dict.get, rec._slots, rec._keys), rec._tensors))
            and all(map(_IS, map(_PARAMS, pg), rec._plists)) and list(map(len, rec._plists)) == rec._plens
            and all(map(_IS, map(operator.getitem, *rec._places), rec._tensors)))


def spec(rec) -> tuple | None:
    """What :meth:`TrajectoryRecorder._record` checks at every step, as the tuple ``holds`` takes (see ``_fused.c``),
    or None where ``holds`` cannot stand in for those checks (the module notes)."""
    opt, groups = rec.optimizer, rec._lr_groups
    if native.checker() is None or rec._sharded or rec._gen is None or type(rec._groups_seen) is not list or not all(
            type(d) is dict for d in (*rec._dicts_seen, *groups)):  # dict subclasses: read through their __getitem__
        return None
    if (settings := rec._log.checks(groups, ABSENT)) is None:  # the settings log's own checks
        return None
    checks: list[tuple] = [(vars(watch), "_generation", rec._gen), (opt, "param_groups", rec._groups_seen),
                           (rec._groups_seen, None, len(rec._dicts_seen))]
    checks += [(rec._groups_seen, i, d) for i, d in enumerate(rec._dicts_seen)]
    checks += list(zip(rec._slots, rec._keys, rec._tensors))  # each tensor in its module's slot
    checks += [(d, "params", pl) for d, pl in zip(rec._dicts_seen, rec._plists)]
    checks += [(pl, None, n) for pl, n in zip(rec._plists, rec._plens)]
    checks += list(zip(*rec._places, rec._tensors))  # each tensor at its place in its group's params list
    holders, keys, values = (tuple(c) for c in zip(*checks + settings))
    held, at = (tuple(rec._writer._held), tuple(rec._writer._at)) if rec._writer._at else ((), ())
    if any(type(t) not in _PLAIN for t in (*rec._tensors, *rec._aliases, *held)):  # a subclass's __torch_function__
        return None  # would run Python code inside is_set_to or data_ptr, beside the row's copy
    return (holders, keys, values, torch.Tensor.is_set_to, tuple(rec._tensors), tuple(rec._aliases),
            torch.Tensor.data_ptr, held, at, ABSENT)

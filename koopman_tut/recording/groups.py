"""Which optimizer param groups hold the recorded parameters, and the check that they still do.

Each group's settings are logged for its own rows (``meta['groups']``, ``group_lrs``), and the Koopman
gradient undoes each group's lr and momentum on those rows. A recorded tensor moved to another group
while recording (``g1['params'].remove(p); g0['params'].append(p)``), taken out of the optimizer, or groups
reordered, would have its steps undone with another group's settings: 9x off, silently, with lrs 0.02 and
0.002. So the recorder compares, at every step, each group's ``params`` list (the same list, of the same
length: :func:`params_lists`) and, at every walk of the model, which recorded names each group holds
(:func:`membership`), and raises RuntimeError on any change (:func:`moved_message`); the place of each
recorded tensor in its list (:func:`positions`) is compared at every step too.
"""
from __future__ import annotations

import os

import torch

from ..numerics.optimizer_settings import has_momentum
from .recorder_checks import trained_in_meta
from .settings_log import check_recordable, group_row

_TORCH_OPTIM = os.path.dirname(os.path.abspath(torch.optim.__file__)) + os.sep


def recorded_groups(optimizer: torch.optim.Optimizer, names: list[str], tensors: list[torch.Tensor]
                    ) -> list[tuple[dict, list[str]]]:
    """(param group, the recorded names it holds) for every group that holds a recorded tensor."""
    out = []
    for g in optimizer.param_groups:
        ids = {id(p) for p in g["params"]}
        held = [n for n, t in zip(names, tensors) if id(t) in ids]
        if held:
            out.append((g, held))
    return out


def group_meta(g: dict, names: list[str]) -> dict:
    """A group's entry in ``meta['groups']``: the recorded names it holds, its lr and SGD settings as plain numbers."""
    return dict(names=names, lr=float(g["lr"]), momentum=float(g.get("momentum", 0.0) or 0.0),
                nesterov=bool(g.get("nesterov", False)), dampening=float(g.get("dampening", 0.0) or 0.0),
                weight_decay=float(g.get("weight_decay", 0.0) or 0.0), maximize=bool(g.get("maximize", False)))


def membership(optimizer: torch.optim.Optimizer, names: list[str], tensors: list[torch.Tensor]
               ) -> list[tuple[int, list[str]]]:
    """(index in ``optimizer.param_groups``, recorded names it holds) for every group holding one."""
    index = {id(g): i for i, g in enumerate(optimizer.param_groups)}
    return [(index[id(g)], held) for g, held in recorded_groups(optimizer, names, tensors)]


def params_lists(optimizer: torch.optim.Optimizer) -> tuple[list, list[int]]:
    """Every group's ``params`` list and its length: compared at every step (identity, then length)."""
    lists = [g["params"] for g in optimizer.param_groups]
    return lists, [len(p) for p in lists]


def positions(optimizer: torch.optim.Optimizer, tensors: list[torch.Tensor]) -> tuple[list[list], list[int]]:
    """(the ``params`` list holding each tensor, its index there): compared at every step, so a recorded tensor
    swapped with another group's (``g0["params"][0], g1["params"][0] = g1["params"][0], g0["params"][0]``:
    both lists keep their identity and length) is seen at the next step, not at the next walk."""
    where = {id(p): (g["params"], i) for g in reversed(optimizer.param_groups) for i, p in enumerate(g["params"])}
    found = [where.get(id(t), ([t], 0)) for t in tensors]  # (a tensor in no group: membership has refused it)
    return [pl for pl, _ in found], [i for _, i in found]


def moved_message(before: list[tuple[int, list[str]]], now: list[tuple[int, list[str]]]) -> str:
    """What changed between two :func:`membership` readings, e.g. "'0.bias' moved from group 1 to group 0"."""
    was = {n: i for i, names in before for n in names}
    is_ = {n: i for i, names in now for n in names}
    moved = [f"{n!r} moved from group {i} to " + (f"group {is_[n]}" if n in is_ else "no group (out of the optimizer)")
             for n, i in was.items() if is_.get(n) != i]
    return ("the recorded parameters changed optimizer param groups while recording: " + "; ".join(moved[:3])
            + (f" and {len(moved) - 3} more" if len(moved) > 3 else "")
            + ". Each group's settings are logged for its own rows, so the Koopman gradient would undo these "
            "steps with another group's lr and momentum. Arrange the groups before building the recorder, "
            "or record the new arrangement with a new TrajectoryRecorder")


def recorder_meta(rec) -> dict:
    """A :class:`~koopman_tut.recording.recorder.TrajectoryRecorder`'s ``meta`` when it is built: stride, coarsest
    dtype trained (``trained_in``), optimizer settings (rows held, when sharded): the top level the first parameter
    group's that holds a recorded parameter; ``groups`` every such group's names, initial lr and settings (undone on
    its rows); ``other_momentum`` (only when True): a group holding none of them has momentum. ValueError naming
    the setting where a group holding one has settings a Trajectory cannot hold (:func:`.settings_log.check_recordable`
    ): what the recorder accepts can be read back."""
    held = recorded_groups(rec.optimizer, rec.names, rec._tensors)
    index = {id(g): i for i, g in enumerate(rec.optimizer.param_groups)}
    for g, _ in held:  # what the recording could not hold is refused now, not when it is read back
        check_recordable(group_row(g), f"optimizer.param_groups[{index[id(g)]}]", "when the TrajectoryRecorder is "
                         "built: a recording with it could not be loaded (rec.trajectory() and Trajectory.load "
                         "refuse it), so it is refused now")
    settings = [group_meta(g, names) for g, names in held]
    first = {k: v for k, v in settings[0].items() if k not in ("names", "lr")} if settings else {}
    meta = {"every": rec.every, **trained_in_meta(rec._tensors), "optimizer": optimizer_name(rec.optimizer),
            **first, "groups": settings, **other_momentum_meta(rec.optimizer, held)}
    if rec.group is not None:
        meta.update(rows=rec.rows, n_total=rec.n_total, all_names=list(rec.names),
                    all_shapes=[tuple(s) for s in rec.shapes])
    return meta


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """``meta['optimizer']``: "SGD" where the optimizer steps by torch.optim.SGD's rule (an instance of it, or of a
    subclass that keeps its ``step``: the Koopman gradient undoes those steps), else the class's name, qualified
    outside torch ("Adam", "__main__.SGD" for a class of that name, "__main__.MySGD" for a subclass with its own
    step), so that no other optimizer is taken for SGD by its name."""
    cls, sgd = type(optimizer), torch.optim.SGD
    if isinstance(optimizer, sgd) and _torch_unwrapped(cls.step) is _torch_unwrapped(sgd.step):
        return "SGD"
    torch_own = cls.__module__.startswith("torch.optim.") and cls is not sgd
    return cls.__name__ if torch_own else f"{cls.__module__}.{cls.__qualname__}"


def _torch_unwrapped(f):
    """``f`` without the wrappers torch.optim puts around a step (its profiling hook, its grad mode), only
    those: a step override that wraps SGD's with ``functools.wraps`` stays itself."""
    while hasattr(f, "__wrapped__") and os.path.abspath(getattr(getattr(f, "__code__", None), "co_filename", "")
                                                        ).startswith(_TORCH_OPTIM):
        f = f.__wrapped__
    return f


def other_momentum_meta(optimizer: torch.optim.Optimizer, held: list[tuple[dict, list[str]]]) -> dict:
    """{"other_momentum": True} when a param group holding no recorded tensor (``held``: those that do) has
    momentum, else {}: the recorded parameters are coupled to it through the loss, so their trajectory is a
    view of a second-order recursion and the affine model needs a delay (momentum_delays). Read when the
    recorder is built, from its optimizer only: momentum given to another group later (a hand edit,
    add_param_group, load_state_dict) or used by a second optimizer is not seen (the limit then warns)."""
    mine = [g for g, _ in held]
    others = [g for g in optimizer.param_groups if not any(g is h for h in mine)]
    return {"other_momentum": True} if has_momentum({"groups": others}) else {}

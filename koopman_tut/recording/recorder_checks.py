"""Construction-time checks of :class:`koopman_tut.recording.recorder.TrajectoryRecorder`'s arguments.

Bad arguments, a non-floating storage dtype, an optimizer that does not train the
recorded parameters or has no learning rate, and a parameter listed twice (or under two
names of one tied tensor) are refused before anything is allocated (TypeError / ValueError).
"""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn as nn

from ..numerics.distributed import check_group, local_tensor, shard_range, world
from .params import check_untied, parameter, resolve
from .validation import SNAPSHOT_DTYPES as FLOAT_DTYPES  # what a recorder may store is what a Trajectory holds
from .validation import check_device, shown


# -- argument checks (construction time)

def _check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int; TypeError unless an integer (bool is not), ValueError if below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_model(model) -> nn.Module:
    """``model`` if it is a torch.nn.Module (a DDP wrapper is one) whose parameters all exist; TypeError otherwise,
    ValueError for a lazy module's parameters not yet initialised (no shape to record)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    lazy = [n for n, p in model.named_parameters() if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        shown = ", ".join(repr(n) for n in lazy[:3]) + (f" and {len(lazy) - 3} more" if len(lazy) > 3 else "")
        raise ValueError(f"model has {len(lazy)} parameters a lazy module has not initialised yet ({shown}): run "
                         "one forward pass through the model first, so that they have their shapes")
    return model


def _check_device(device) -> torch.device:
    """The storage device: one that holds values on this machine (not 'meta', a GPU it has)."""
    return check_device("device", device)


def _check_bool(name: str, value) -> bool:
    """``value`` as a bool if it is True or False (numpy's too); TypeError otherwise (a string such as 'no' is not)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _check_fraction(name: str, value) -> float:
    """``value`` as a float in (0, 1] (NaN is not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r} ({type(value).__name__})")
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def _check_dtype(dtype) -> torch.dtype:
    """A floating storage dtype; integer or bool storage would round every parameter away."""
    if not isinstance(dtype, torch.dtype) or dtype not in FLOAT_DTYPES:
        allowed = ", ".join(str(d) for d in FLOAT_DTYPES)
        raise TypeError(f"dtype (of the snapshot storage) must be a floating torch dtype ({allowed}), got {dtype!r}")
    return dtype


def _check_window(start, stop, step0, every: int = 1, max_snapshots=None) -> tuple[int, int | None, int]:
    """(start, stop, step0) as ints (stop None: open-ended); stop must be >= start and >= step0 (the step the
    recorder starts at): a window that ends before either would record nothing. Every step it may record
    (up to stop, or ``max_snapshots`` ``every`` steps apart) must fit int64."""
    start, step0 = _check_int("start", start, 0), _check_int("step0", step0, 0)
    stop = None if stop is None else _check_int("stop", stop, 0)
    for name, value in (("start", start), ("step0", step0), ("stop", stop)):
        if value is not None and value >= 2**63:
            raise ValueError(f"{name} must be below 2**63 (steps are stored as int64), got {value!r}")
    if stop is None and max_snapshots is not None:
        last = max(start, step0) + (_check_int("max_snapshots", max_snapshots, 1) - 1) * every
        if last >= 2**63:
            raise ValueError(f"the last step this recorder may record, {last} (max_snapshots={max_snapshots} "
                             f"every {every} from step {max(start, step0)}), must be below 2**63 (steps are int64)")
    if stop is None:
        return start, None, step0
    for name, value in (("start", start), ("step0", step0)):
        if stop < value:
            raise ValueError(f"stop must be >= {name}, got stop={stop!r}, {name}={value!r}: the window would "
                             f"record nothing" + (" (step0 is the step count when the recorder is built)"
                                                  if name == "step0" else ""))
    return start, stop, step0


def _check_shard(shard, dtensors: bool):
    """The recorder's group: None for ``shard`` None or False, else the group (True: the default one). FSDP2's
    parameters (DTensors, ``dtensors``) are sharded already: each rank records its local shard without it."""
    if shard is None or shard is False:
        return None
    check_group(shard, "shard", "False")
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        raise RuntimeError("shard= needs torch.distributed initialised (dist.init_process_group, or torchrun)")
    if dtensors:
        raise ValueError("shard= splits each rank's recorded rows over the ranks, but these parameters are FSDP2 "
                         "shards (DTensors) already: record each rank's local shards without shard= (a second split "
                         "would leave part of every rank's shards unrecorded)")
    return shard


def _shard_rows(n_total: int, group) -> tuple[int, int]:
    """This rank's rows [start, stop) of the ``n_total`` flattened entries (all of them without a group);
    ValueError, on every rank alike, when some rank would hold none."""
    rank, size = world(group)
    if n_total < size:
        raise ValueError(f"shard= splits the {n_total} recorded entries over {size} ranks, so {size - n_total} "
                         f"rank(s) would hold none: record without shard= (each rank keeps the whole replica)")
    return shard_range(n_total, rank, size)


def _check_disk(path, sync, overwrite) -> tuple[bool, bool]:
    """(sync, overwrite) as bools; they apply to a recording on disk only, so either set without ``path`` is
    refused (ValueError) rather than ignored."""
    sync, overwrite = _check_bool("sync", sync), _check_bool("overwrite", overwrite)
    if path is None and (sync or overwrite):
        given = ", ".join(f"{k}=True" for k, v in (("sync", sync), ("overwrite", overwrite)) if v)
        raise ValueError(f"{given} applies to a recording on disk and needs path= (the file to record into); "
                         f"without path= the recorder keeps its snapshots in memory")
    return sync, overwrite


def _check_names(params) -> list[str] | None:
    """``params`` as a list of names (None stays None); a bare string is refused, not split into letters."""
    if params is None:
        return None
    names = None if isinstance(params, str) or not isinstance(params, Iterable) else list(params)
    if names is None or not all(isinstance(n, str) for n in names):
        raise TypeError(f"params must be a list of parameter names such as ['fc.weight'], got {params!r}")
    return names


def _check_lr(optimizer: torch.optim.Optimizer) -> None:
    """The recorder logs ``param_groups[0]['lr']`` with every snapshot (the Koopman gradient divides by it):
    a finite number >= 0 (0, e.g. where a warm-up starts, is recorded; a disk file refuses others on loading)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    group = optimizer.param_groups[0]
    if "lr" not in group:
        keys = sorted(k for k in group if k != "params")
        raise ValueError(f"optimizer.param_groups[0] has no 'lr' key (its settings: {keys}): the recorder logs the "
                         f"learning rate with every snapshot. Give the group a learning rate, "
                         f"optimizer.param_groups[0]['lr'] = ..., or build the optimizer with lr=")
    try:
        lr = float(group["lr"])
    except OverflowError:  # an int past float64's range
        lr = math.inf
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"optimizer.param_groups[0]['lr'] must be a number, got {group['lr']!r}") from None
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"optimizer.param_groups[0]['lr'] must be a finite number >= 0, got {shown(group['lr'])}")


def _owned(optimizer: torch.optim.Optimizer) -> set[int]:
    """Identities of the tensors the optimizer trains."""
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _listing(names: list[str], total: int, at_most: int = 3) -> str:
    """Up to ``at_most`` names and how many of ``total``, e.g. "'a', 'b' (2 of 9 recorded parameters)"."""
    shown = ", ".join(repr(n) for n in names[:at_most])
    more = f" and {len(names) - at_most} more" if len(names) > at_most else ""
    return f"{shown}{more} ({len(names)} of {total} recorded parameters)"


def trained_in_meta(tensors: list[torch.Tensor]) -> dict:
    """{"trained_in": the coarsest floating dtype of ``tensors``} (each step rounds to it), or {} if none is floating."""
    floats = [t.dtype for t in tensors if t.dtype.is_floating_point]
    return {"trained_in": str(max(floats, key=lambda d: torch.finfo(d).eps)).removeprefix("torch.")} if floats else {}


def disk_stop(rec, stop: int | None) -> bool:
    """Whether a recorder writing a file (``rec``) ends its window with this new ``stop``: one below the step of its
    next snapshot completes the file. ValueError for a later stop once the file is closed (its window ended, the
    storage full, or ``remove()``): nothing more can be written into it."""
    if not rec._disk.is_open:
        if stop is None or stop > rec.step:
            raise ValueError(f"stop={stop}: the recording's file is closed (its window ended at step {rec.step} or "
                             f"it was removed), so no later step can be recorded into it: start a new TrajectoryRecorder")
        return False
    due = max(rec.start, rec.step + 1)
    return stop is not None and due + (rec.start - due) % rec.every > stop  # the next snapshot's step, past stop


def full_message(cap: int, max_snapshots: int | None, step: int) -> str:
    """What :class:`~koopman_tut.recording.recorder.RecorderFullWarning` says when the snapshot of ``step`` is
    the first dropped."""
    return (f"TrajectoryRecorder is full: its {cap} snapshots (max_snapshots={max_snapshots}) are taken, so the "
            f"snapshot of step {step} and all later ones are dropped. Record more with a larger max_snapshots=, "
            f"every k-th step with every=, or end the window at the last step you need with stop=")


def _trained_by(model: nn.Module, optimizer: torch.optim.Optimizer, names: list[str], explicit: bool) -> list[str]:
    """The names whose trainable tensor (``weight_orig`` once pruned) the optimizer owns.

    A trainable tensor outside the optimizer raises ValueError: its snapshots would stay
    constant (DMD would find lambda = 1 and Koopman pruning would equal magnitude pruning).
    Frozen ones (requires_grad False) outside the optimizer cannot change: skipped with a warning,
    unless listed explicitly in ``params``, where they raise. Frozen ones in the optimizer may be
    unfrozen later: recorded, with a warning unless listed in ``params``.
    """
    check_untied(model, names, "params")
    owned = _owned(optimizer)
    keep, frozen, missing, idle = [], [], [], []
    for name in names:
        t = parameter(model, name)
        if id(t) in owned:
            keep.append(name)
            idle += [] if t.requires_grad else [name]  # frozen now, unfrozen perhaps later: recorded, said
        elif t.requires_grad:
            missing.append(name)
        else:
            frozen.append(name)
    if any(parameter(model, n).is_complex() for n in keep):
        raise TypeError(f"{_listing([n for n in keep if parameter(model, n).is_complex()], len(names))} are complex: "
                        f"the recorder records real parameters (torch.view_as_real gives a real view)")
    _refuse_parametrized(model, missing + frozen, names)  # computed, not trained (a hook's result may not need grad)
    if missing:
        raise ValueError(f"the optimizer does not train {_listing(missing, len(names))}: their snapshots would "
                         f"stay constant. Pass the optimizer that trains this model (built over its own "
                         f"parameters, not another model's or a copy's), or params= to record only what it trains")
    if frozen and explicit:
        raise ValueError(f"{_listing(frozen, len(names))} are frozen (requires_grad=False) and not in the optimizer, "
                         f"so they cannot change: leave them out of params=")
    if frozen:
        warnings.warn(f"not recording {_listing(frozen, len(names))}: frozen (requires_grad=False) and not in the "
                      f"optimizer, so they cannot change; pass params= to choose what is recorded", stacklevel=3)
    if idle and not explicit:
        warnings.warn(f"{_listing(idle, len(names))} are frozen (requires_grad=False) but in the optimizer: recorded, "
                      f"their rows stay constant while they are (Koopman scores equal magnitude there); pass "
                      f"params= to leave them out", stacklevel=3)
    return keep


def _refuse_parametrized(model: nn.Module, missing: list[str], names: list[str]) -> None:
    """ValueError when some of ``missing`` are computed by a parametrization (``torch.nn.utils.parametrize``:
    weight_norm, spectral_norm, orthogonal; or the older hook-based ``weight_norm``, ``spectral_norm``), naming what to record in
    their place, with the rest of ``names``; nothing if none is."""
    swap = {}
    for name in missing:
        module, attr = resolve(model, name)
        prefix = name[: -len(attr)]
        if torch.nn.utils.parametrize.is_parametrized(module, attr):
            plist = module.parametrizations[attr]
            swap[name] = ([f"{prefix}parametrizations.{attr}.{k}" for k, _ in plist.named_parameters()],
                          " + ".join(type(p).__name__ for p in plist))
        elif {attr + "_g", attr + "_v"} <= set(module._parameters):
            swap[name] = ([prefix + attr + "_g", prefix + attr + "_v"], "torch.nn.utils.weight_norm")
        elif attr + "_orig" in module._parameters and attr + "_u" in module._buffers:
            swap[name] = ([prefix + attr + "_orig"], "torch.nn.utils.spectral_norm")
    if swap:
        params = [m for n in names for m in swap.get(n, ([n], ""))[0]]
        kinds = sorted({kind for _, kind in swap.values()})
        raise ValueError(f"{', '.join(map(repr, swap))} {'is' if len(swap) == 1 else 'are'} computed by a "
                         f"parametrization ({', '.join(kinds)}), not trained itself: record what the optimizer "
                         f"trains, params={params}")


def changed_message(rec, tensors: list[torch.Tensor | None]) -> str:
    """Why recorder ``rec`` cannot go on: which recorded parameter (now ``tensors``, in its order)
    was removed, reshaped or replaced since recording started, and what to do."""
    owned = _owned(rec.optimizer)
    what = ""
    for name, t, t0, shape, t0_dtype in zip(rec.names, tensors, rec._tensors, rec.shapes, rec._dtypes):
        if t is None:
            what = "was removed from the model"
        elif tuple(local_tensor(t).shape) != shape:
            what = f"changed shape from {shape} (recorded) to {tuple(t.shape)}"
        elif t.dtype != t0_dtype:
            what = (f"changed dtype from {str(t0_dtype).removeprefix('torch.')} (recorded) to "
                    f"{str(t.dtype).removeprefix('torch.')} (model.half(), .double(), .to(dtype)?): meta's trained_in, "
                    f"the rounding of each step, would no longer hold")
        elif t is not t0:
            trains = "trains" if id(t) in owned else "does not train"
            what = f"was replaced by a new tensor of the same shape {shape} (the optimizer {trains} it)"
        else:
            continue
        break
    return (f"recorded parameter {name!r} {what} at step {rec.step}, after the TrajectoryRecorder started: one "
            f"trajectory cannot mix two tensors. Call remove() on this recorder and start a new "
            f"TrajectoryRecorder for the changed model, with the optimizer that trains it")

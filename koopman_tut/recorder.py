"""``TrajectoryRecorder``: snapshots theta(t) of training through an optimizer step hook.

After each ``optimizer.step()`` the hook copies the flattened parameters, in one fused copy,
into a row of storage allocated up front. Nothing is recorded silently wrong:

* bad arguments, a non-floating storage dtype and an optimizer that does not train the
  recorded parameters are refused at construction (TypeError / ValueError);
* a recorded parameter replaced (a new module or tensor) or resized after the start raises
  RuntimeError from the optimizer step that sees it, before anything is written;
* full storage (``max_snapshots``) warns (:class:`RecorderFullWarning`) at the first dropped snapshot.
"""
from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Iterable

import torch
import torch.nn as nn

from .trajectory import Trajectory, parameter, prunable_names

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class RecorderFullWarning(UserWarning):
    """The recorder's storage (``max_snapshots``) is full: later snapshots are dropped."""


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# -- argument checks (construction time)

def _check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int; TypeError unless an integer (bool is not), ValueError if below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


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


def _check_names(params) -> list[str] | None:
    """``params`` as a list of names (None stays None); a bare string is refused, not split into letters."""
    if params is None:
        return None
    names = None if isinstance(params, str) or not isinstance(params, Iterable) else list(params)
    if names is None or not all(isinstance(n, str) for n in names):
        raise TypeError(f"params must be a list of parameter names such as ['fc.weight'], got {params!r}")
    return names


def _owned(optimizer: torch.optim.Optimizer) -> set[int]:
    """Identities of the tensors the optimizer trains."""
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def _listing(names: list[str], total: int, at_most: int = 3) -> str:
    """Up to ``at_most`` names and how many of ``total``, e.g. "'a', 'b' (2 of 9 recorded parameters)"."""
    shown = ", ".join(repr(n) for n in names[:at_most])
    more = f" and {len(names) - at_most} more" if len(names) > at_most else ""
    return f"{shown}{more} ({len(names)} of {total} recorded parameters)"


def _trained_by(model: nn.Module, optimizer: torch.optim.Optimizer, names: list[str], explicit: bool) -> list[str]:
    """The names whose trainable tensor (``weight_orig`` once pruned) the optimizer owns.

    A trainable tensor outside the optimizer raises ValueError: its snapshots would stay
    constant (DMD would find lambda = 1 and Koopman pruning would equal magnitude pruning).
    Frozen ones (requires_grad False) cannot change: skipped with a warning, unless listed
    explicitly in ``params``, where they raise.
    """
    owned = _owned(optimizer)
    keep, frozen, missing = [], [], []
    for name in names:
        t = parameter(model, name)
        if id(t) in owned:
            keep.append(name)
        elif t.requires_grad:
            missing.append(name)
        else:
            frozen.append(name)
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
    return keep


class TrajectoryRecorder:
    """Record flattened parameters after optimizer steps, into preallocated storage.

    Parameters
    ----------
    model, optimizer : the model being trained and the optimizer that trains it (a step hook is
        registered). Every recorded parameter must be one of the optimizer's parameters.
    every : record every ``every``-th step (stride k maps DMD eigenvalues lambda to lambda^k;
        the eigenvalue-1 mode is unchanged).
    params : names to record (default: weights and biases of conv/linear layers, see
        :func:`~koopman_tut.trajectory.prunable_names`, less frozen ones outside the optimizer).
    start, stop : window of optimizer steps [start, stop]: snapshot s is theta after s steps;
        the state at construction counts as step ``step0`` (default 0).
    max_snapshots : capacity (needed when ``stop`` is None); a :class:`RecorderFullWarning` is
        emitted when the first snapshot is dropped.
    device, dtype : where and how snapshots are stored (default CPU float32; float16 and
        bfloat16 halve the memory).
    max_fraction : refuse when the storage would take more than this share of the free memory.

    Raises
    ------
    TypeError, ValueError : at construction, for bad arguments or an optimizer that does not
        train the recorded parameters.
    RuntimeError : from ``optimizer.step()``, when a recorded parameter was replaced or resized.

    Examples
    --------
    >>> rec = TrajectoryRecorder(model, opt, start=100, stop=200)
    >>> train(...)             # any loop that calls opt.step()
    >>> traj = rec.trajectory()  # snapshots (n, 101)
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, every: int = 1,
                 params: list[str] | None = None, start: int = 0, stop: int | None = None,
                 max_snapshots: int | None = None, device="cpu", dtype: torch.dtype = torch.float32,
                 step0: int = 0, max_fraction: float = 0.8):
        self.every = _check_int("every", every, 1)
        self.start = _check_int("start", start, 0)
        self.stop = None if stop is None else _check_int("stop", stop, 0)
        if self.stop is not None and self.stop < self.start:
            raise ValueError(f"stop must be >= start, got stop={stop!r}, start={start!r}")
        self.max_snapshots = None if max_snapshots is None else _check_int("max_snapshots", max_snapshots, 1)
        if self.stop is None and self.max_snapshots is None:
            raise ValueError("give stop (the last step to record) or max_snapshots, so storage can be preallocated")
        self.step = _check_int("step0", step0, 0)
        dtype, max_fraction = _check_dtype(dtype), _check_fraction("max_fraction", max_fraction)
        explicit = _check_names(params)
        self.model, self.optimizer = model, optimizer
        names = explicit if explicit is not None else prunable_names(model)
        self.names = _trained_by(model, optimizer, names, explicit is not None)
        if not self.names:
            raise ValueError("no parameters to record: " + ("params is empty" if explicit is not None else
                                                            "the model has no conv/linear layer the optimizer trains"))
        self._tensors = [parameter(model, n) for n in self.names]  # identities, checked at every step
        self.shapes = [tuple(t.shape) for t in self._tensors]
        # looked up again at every step, from the model down, so a replaced submodule is seen too
        self._lookup = [(tuple(n.split(".")[:-1]), n.rpartition(".")[2]) for n in self.names]
        self.device = torch.device(device)
        self.storage = self._allocate(sum(t.numel() for t in self._tensors), dtype, max_fraction)
        self.steps: list[int] = []
        self.lrs: list[float] = []
        self._full = False
        self._handle = optimizer.register_step_post_hook(self._hook)
        self._record()  # the state at construction (if inside the window)

    def _allocate(self, n: int, dtype: torch.dtype, max_fraction: float) -> torch.Tensor:
        """Zeroed (cap, n) storage (zeros: pages committed now); MemoryError if it would not fit."""
        cap = (self.stop - self.start) // self.every + 1 if self.stop is not None else self.max_snapshots
        if self.max_snapshots is not None:
            cap = min(cap, self.max_snapshots)
        need = n * cap * torch.empty((), dtype=dtype).element_size()
        free = _available_bytes(self.device)
        if need > max_fraction * free:
            raise MemoryError(f"recording {n:,} parameters x {cap:,} snapshots in {dtype} needs "
                              f"{need / 2**30:.2f} GiB on {self.device}, but only {free / 2**30:.2f} GiB is "
                              f"free: record every k steps (every=), a shorter window (start/stop), "
                              f"fewer parameters (params=) or float16 storage (dtype=)")
        return torch.zeros(cap, n, dtype=dtype, device=self.device)

    # -- the hook runs after every optimizer.step()
    def _hook(self, optimizer, args, kwargs) -> None:
        self.step += 1
        self._record()

    @torch.no_grad()
    def _record(self) -> None:
        s = self.step
        if self._full or (self.stop is not None and s > self.stop):
            return  # the recording is over: nothing to check or write
        found = self._current()
        self._check_unchanged(found)
        if s < self.start or (s - self.start) % self.every:
            return
        k = len(self.steps)
        if k >= self.storage.shape[0]:
            self._warn_full(s)
            return
        self._write(self.storage[k], found)
        self.steps.append(s)
        self.lrs.append(float(self.optimizer.param_groups[0]["lr"]))

    def _current(self) -> list[tuple[nn.Module | None, torch.Tensor | None, bool]]:
        """(module, trainable tensor, pruned?) per recorded name, looked up in the model now."""
        out = []
        for path, attr in self._lookup:
            m = self.model
            for a in path:
                m = m._modules.get(a) if m is not None else None
            ps = m._parameters if m is not None else {}
            orig = ps.get(attr + "_orig")  # pruned by torch.nn.utils.prune: train weight_orig
            out.append((m, ps.get(attr) if orig is None else orig, orig is not None))
        return out

    def _check_unchanged(self, found) -> None:
        """RuntimeError if a recorded parameter is not the tensor, or not of the shape, recorded so far."""
        for (_, t, _), t0, shape in zip(found, self._tensors, self.shapes):
            if t is not t0 or t.shape != shape:
                raise RuntimeError(self._changed_message([t for _, t, _ in found]))

    def _changed_message(self, tensors: list[torch.Tensor | None]) -> str:
        owned = _owned(self.optimizer)
        for name, t, t0, shape in zip(self.names, tensors, self._tensors, self.shapes):
            if t is None:
                what = "was removed from the model"
            elif tuple(t.shape) != shape:
                what = f"changed shape from {shape} (recorded) to {tuple(t.shape)}"
            elif t is not t0:
                trains = "trains" if id(t) in owned else "does not train"
                what = f"was replaced by a new tensor of the same shape {shape} (the optimizer {trains} it)"
            else:
                continue
            break
        return (f"recorded parameter {name!r} {what} at step {self.step}, after the TrajectoryRecorder started: one "
                f"trajectory cannot mix two tensors. Call remove() on this recorder and start a new "
                f"TrajectoryRecorder for the changed model, with the optimizer that trains it")

    def _write(self, row: torch.Tensor, found) -> None:
        """One fused copy of the flattened values into ``row`` (converting to its dtype)."""
        vals = [(t * getattr(m, attr + "_mask") if pruned else t).reshape(-1)
                for (m, t, pruned), (_, attr) in zip(found, self._lookup)]
        if all(v.device == row.device for v in vals):
            torch.cat(vals, out=row)
        else:  # e.g. CUDA parameters, CPU storage: one transfer
            row.copy_(torch.cat([v.to(vals[0].device) for v in vals]))

    def _warn_full(self, s: int) -> None:
        self._full = True
        cap = self.storage.shape[0]
        warnings.warn(f"TrajectoryRecorder is full: its {cap} snapshots (max_snapshots={self.max_snapshots}) are "
                      f"taken, so the snapshot of step {s} and all later ones are dropped. Record more with a larger "
                      f"max_snapshots=, every k-th step with every=, or end the window at the last step you need "
                      f"with stop=", RecorderFullWarning, stacklevel=2)

    def remove(self) -> None:
        """Stop recording (unregister the step hook)."""
        self._handle.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def trajectory(self, copy: bool = False) -> Trajectory:
        """The snapshots so far as a Trajectory: snapshots (n, T) is a view of the storage unless ``copy``."""
        T = len(self.steps)
        if T == 0:
            raise ValueError(f"nothing recorded yet: {self.step} steps taken, window starts at step {self.start}")
        snaps = self.storage[:T]
        snaps = (snaps.clone() if copy else snaps).T  # (n, T)
        g = self.optimizer.param_groups[0]
        meta = {"lrs": list(self.lrs), "every": self.every, "optimizer": type(self.optimizer).__name__,
                "momentum": float(g.get("momentum", 0.0) or 0.0), "nesterov": bool(g.get("nesterov", False)),
                "dampening": float(g.get("dampening", 0.0) or 0.0),
                "weight_decay": float(g.get("weight_decay", 0.0) or 0.0)}
        return Trajectory(snaps, torch.tensor(self.steps, dtype=torch.long), list(self.names), list(self.shapes), meta)

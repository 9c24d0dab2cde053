"""Recording the parameter trajectory theta(t) of training, for Koopman analysis.

Redman et al. (ICLR 2022, arXiv:2110.14856) view training as a dynamical system
theta(t+1) = T(theta(t)) and run DMD on snapshots theta(t1..t2) of the flattened prunable
parameters (weights and biases of convolutions and linear layers; not BatchNorm).
``TrajectoryRecorder`` (in :mod:`koopman_tut.recording.recorder`, re-exported here) collects those
snapshots through an optimizer step hook, so any training loop works; ``Trajectory`` holds
them with the map back to named tensors.

Two file formats, told apart by their first bytes when loading:

* :meth:`Trajectory.save` writes one ``torch.save`` file (format ``koopman_tut.recording.trajectory/1``),
  atomically; loading reads it whole into memory.
* ``TrajectoryRecorder(..., path=FILE)`` records straight into a memory-mapped file
  (``koopman_tut.recording.trajectory-mmap`` version 3): an 8-byte magic ``KTTRAJM3``, the count of
  complete snapshots (uint64), the recording's state, a checksummed JSON header (names,
  shapes, dtype, capacity, byte order, offsets, recording metadata) checked field by field,
  the steps (int64) and every parameter group's optimizer settings (float64) of the snapshots,
  then the snapshots as one raw row-major (capacity, n) array, snapshot k in row k (see
  :mod:`koopman_tut.recording.disk_format` for the byte layout; version-2 files load with the
  first group's lr only; version-1 files are refused with the converter to use,
  :func:`koopman_tut.recording.disk_v1.convert_v1`). :meth:`Trajectory.load` maps it
  (copy-on-write, no copy): ``snapshots`` (n, count) is a transposed view of the rows, read
  from disk as :func:`koopman_tut.numerics.dmd` and the Koopman analysis stream over it in chunks, so
  a trajectory larger than memory can be decomposed. A recording cut short (the process
  killed) loads with the snapshots completed before it stopped, a
  :class:`~koopman_tut.recording.storage.RecordingCutShortWarning` and ``meta["recording"] = "cut short"``;
  one stopped before its window ended (an exception, Ctrl-C) with the warning and "stopped early".
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from . import safe_files, storage
from .params import current_value, parameter
from .recorder_checks import _check_int
from .validation import (PER_SNAPSHOT, check_device, check_index, check_meta, check_names_shapes, check_snapshots,
                         check_steps)

FORMAT = "koopman_tut.recording.trajectory/1"


@dataclass(eq=False)  # == compares identity: a field-wise == of tensors raised "Boolean value ... is ambiguous"
class Trajectory:
    """Snapshots of flattened parameters and the map back to named tensors.

    Attributes
    ----------
    snapshots : (n, T) tensor, columns are theta(steps[0]), theta(steps[1]), ...
    steps : (T,) int64, optimizer steps taken before each snapshot.
    names, shapes : the recorded parameters, in flattening order.
    meta : lr per snapshot ('lrs'), optimizer name and settings when recording started (top level,
        and per parameter group in 'groups'), recording stride ('every'); per snapshot, every
        group's lr ('group_lrs', with several groups) and, where any changed while recording,
        every group's settings ('group_settings': :mod:`koopman_tut.recording.settings_log`);
        'other_momentum' (True) where an optimizer group holding no recorded parameter has momentum;
        'trained_in', the coarsest dtype of the recorded parameters (their rounding is in every step).

    Checked on construction (TypeError / ValueError naming the field): snapshots a dense
    2-D floating tensor with at least one column; steps integers, strictly increasing, one
    per snapshot (stored as int64); names unique, one per shape; the shapes' sizes add up to
    the snapshots' rows; meta plain values (tensors and NumPy values become lists and
    numbers, tuples lists), ``meta['lrs']`` (and the other per-snapshot keys) one per snapshot. Whatever is accepted,
    :meth:`save` then :meth:`load` gives back. The snapshots themselves are not read.
    """

    snapshots: torch.Tensor
    steps: torch.Tensor
    names: list[str]
    shapes: list[tuple[int, ...]]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        T = check_snapshots(self.snapshots).shape[1]
        self.steps = check_steps(self.steps, T)
        self.names, self.shapes = check_names_shapes(self.names, self.shapes, self.snapshots.shape[0])
        self.meta = check_meta(self.meta, T)

    def check(self) -> "Trajectory":
        """Check the fields again, as at construction (TypeError / ValueError): an edit since (``traj.meta['lrs']``
        of another length, ``traj.snapshots`` with other columns than ``steps``) is refused where it is used
        (``kt.koopman``, ``kt.estimate_limit``, :meth:`save`), not read silently. The snapshots themselves are not
        read. Returns the fields as the constructor gives them (meta in plain values), over the same tensors."""
        return Trajectory(self.snapshots, self.steps, self.names, self.shapes, self.meta)

    @property
    def offsets(self) -> list[int]:
        out = [0]
        for s in self.shapes:
            out.append(out[-1] + math.prod(s))
        return out

    @property
    def n_features(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return self.snapshots.shape[1]

    @property
    def lr(self) -> float | None:
        """Learning rate at the last snapshot (None if not recorded)."""
        lrs = self.meta.get("lrs")
        return float(lrs[-1]) if lrs is not None and len(lrs) else None

    def window(self, start: int = 0, stop: int | None = None, every: int = 1) -> "Trajectory":
        """Columns start:stop:every (a view), with steps and metadata to match.

        ``start`` must be in [-T, T-1] and ``stop`` (exclusive, None: to the end) in [-T, T];
        the window must keep at least one snapshot.
        """
        T = len(self)
        lo = check_index(start, T, "start")
        hi = T if stop is None else check_index(stop, T, "stop", end=True)
        every = _check_int("every", every, 1)
        if hi <= lo:
            raise ValueError(f"window(start={start}, stop={stop}) of {T} snapshots selects none: "
                             f"stop must come after start")
        sl = slice(lo, hi, min(every, hi - lo))  # a step past the window keeps lo alone (and fits torch's int64)
        meta = dict(self.meta)
        for key in PER_SNAPSHOT:  # one entry per snapshot
            if key in meta:
                meta[key] = list(meta[key])[sl]
        if "every" in self.meta:  # else it stays out, and the stride is read off the steps (snapshot_stride)
            meta["every"] = self.meta["every"] * every
        return Trajectory(self.snapshots[:, sl], self.steps[sl], list(self.names), list(self.shapes), meta)

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """(n,) flat vector -> {name: tensor of the parameter's shape} (views)."""
        if not isinstance(vec, torch.Tensor):
            raise TypeError(f"vec must be a torch.Tensor of shape ({self.n_features},), got {type(vec).__name__}")
        if vec.ndim != 1 or vec.numel() != self.n_features:
            raise ValueError(f"vec must have shape ({self.n_features},), got {tuple(vec.shape)}")
        o = self.offsets
        return {n: vec[o[i]:o[i + 1]].reshape(s) for i, (n, s) in enumerate(zip(self.names, self.shapes))}

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """{name: tensor} -> (n,) in this trajectory's order, on the snapshots' device."""
        missing = [n for n in self.names if n not in tensors]
        bad = [m for m in (_misfit(n, tensors[n], s) for n, s in zip(self.names, self.shapes) if n in tensors) if m]
        if missing or bad:
            raise ValueError(f"tensors must map every recorded name to a tensor of its shape: "
                             + (f"missing {missing}" if missing else f"got {', '.join(bad)}"))
        dev = self.snapshots.device
        return torch.cat([tensors[n].detach().reshape(-1).to(dev) for n in self.names])

    def check_model(self, model: nn.Module) -> None:
        """Raise ValueError unless the model has every recorded parameter with the same shape."""
        for n, s in zip(self.names, self.shapes):
            try:
                v = current_value(model, n)
            except ValueError as e:
                raise ValueError(f"trajectory does not match the model: {e}") from None
            if tuple(v.shape) != tuple(s):
                raise ValueError(f"trajectory does not match the model: {n} has shape {tuple(v.shape)} "
                                 f"in the model and {tuple(s)} in the trajectory")

    def load_into(self, model: nn.Module, column: int | torch.Tensor = -1) -> None:
        """Copy snapshot ``column`` (or an (n,) vector, e.g. a Koopman forecast) into the model."""
        self.check_model(model)
        if isinstance(column, torch.Tensor):
            vec = column
        else:  # a snapshot index in [-T, T-1]
            vec = self.snapshots[:, check_index(column, len(self), "column")]
        parts = self.unflatten(vec)
        if not vec.is_floating_point():  # complex too: its imaginary part would be dropped with a mere warning
            raise TypeError(f"column must be a snapshot index or a real floating-point (n,) vector, got {vec.dtype}"
                            + (": take .real once its imaginary part is checked to be rounding" if vec.is_complex()
                               else ""))
        if not bool(torch.isfinite(vec).all()):  # a model with NaN or Inf weights is no model to go on with
            raise ValueError("column holds NaN or Inf values: nothing was loaded into the model")
        with torch.no_grad():
            for n, v in parts.items():
                target = parameter(model, n)
                target.copy_(v.to(target.dtype))

    # -- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write to one file atomically (a temporary file in the same folder, then a rename; an existing
        file, or a symlink, at ``path`` is replaced, never written through; anything else there, a pipe or a
        device, is refused: ValueError); its mode follows the umask. The fields are checked again first, as the
        constructor checks them (an edit since, e.g. a set in ``meta``, is refused and the file left as it was)."""
        path = Path(_check_path(path))
        if path.is_dir() and not path.is_symlink():  # a symlink is replaced, never followed
            raise IsADirectoryError(f"path {str(path)!r} is a folder: give the name of a file in it")
        if any(p.exists() and not p.is_dir() for p in path.parents):
            raise NotADirectoryError(f"path {str(path)!r} lies under a file, not a folder")
        if path.exists() and not path.is_symlink() and not path.is_file():  # the rename would replace it
            raise ValueError(f"path {str(path)!r} exists and is not a regular file (a pipe, a socket or a device): "
                             f"give the name of a file")
        if safe_files.being_written(path):  # replaced, the recording would go on into an unlinked file, lost
            raise FileExistsError(f"{path} is being written by a TrajectoryRecorder: choose another path")
        t = self.check()  # an edit since construction (a set in meta) is refused before the file is touched
        path.parent.mkdir(parents=True, exist_ok=True)
        obj = {"format": FORMAT, "snapshots": t.snapshots.detach().cpu().contiguous(), "steps": t.steps.cpu(),
               "names": t.names, "shapes": [list(s) for s in t.shapes], "meta": t.meta}
        atomic_save(obj, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location="cpu") -> "Trajectory":
        """Read a file written by :meth:`save`, or map one recorded with ``TrajectoryRecorder(path=)``
        (its snapshots then stay on disk, on the CPU: ``map_location`` is ignored); a foreign file, or
        one whose header is damaged (checksummed) or cut short, raises ValueError. A file of save() is
        checked against the CRC-32 of every entry; a recording's snapshot bytes, steps and settings carry no
        checksum (one per snapshot would cost a pass over its row at every step): a bit flipped on disk inside
        them loads as a wrong value, unnoticed, unless it breaks a rule the reader checks (steps strictly
        increasing, settings finite, flags 0 or 1).

        A recorded file loads its complete snapshots; ``meta["recording"]`` is "in progress" while a
        recorder writes it, "cut short" when its process died first, "stopped early" when it was closed before
        its window ended (both with a :class:`~koopman_tut.recording.storage.RecordingCutShortWarning` saying how
        many of how many are complete).
        A mapped file must not be shrunk in place while its snapshots are read (``truncate``): as with any memory
        map, the next read of a page gone faults (SIGBUS). This package never does it (it replaces files by a
        rename, which leaves an existing mapping intact); ``load(path).snapshots.clone()`` holds a copy.
        """
        path = Path(_check_path(path))
        if path.is_dir():
            raise IsADirectoryError(f"path {str(path)!r} is a folder, not a trajectory file")
        if not path.is_file():
            raise FileNotFoundError(f"no trajectory file at {path}")
        if not (map_location is None or callable(map_location) or isinstance(map_location, (str, torch.device, dict))):
            raise TypeError(f"map_location must be a device (str or torch.device), a dict or a callable, as torch.load "
                            f"takes, got {map_location!r} ({type(map_location).__name__})")
        if isinstance(map_location, (str, torch.device)):
            check_device("map_location", map_location)  # the argument's fault, named, not the file's
        if storage.is_disk_trajectory(path):
            return cls(*storage.open_recording(path))
        with open(path, "rb") as f:
            head = f.read(4)
        if head != b"PK\x03\x04" and head[:1] != b"\x80":  # neither save()'s zip archive nor a legacy pickle
            raise ValueError(f"{path} is not a trajectory file: neither a recording (TrajectoryRecorder(path=)) nor "
                             f"written by Trajectory.save (a torch zip archive); it starts with {head!r}")
        bad = safe_files.unreadable_zip_entry(path)
        if bad:
            raise ValueError(f"{path} is damaged: its entry {bad!r} cannot be read or fails the CRC-32 that save() "
                             f"stored with it")
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # the first line of torch's message: the rest is advice about untrusted pickles
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ValueError(f"{path} is not a readable trajectory file ({type(e).__name__}: {first})") from e
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError(f"{path} is not a koopman_tut trajectory (format {FORMAT!r} expected)")
        try:  # every field checked by the constructor as it is stored: a bare string is not split into names
            traj = cls(obj["snapshots"], obj["steps"], obj["names"], obj["shapes"], obj["meta"])
        except KeyError as e:
            raise ValueError(f"{path} is a damaged trajectory file: no {e} field") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path} is a damaged trajectory file ({type(e).__name__}: {e})") from None
        if traj.snapshots.ndim != 2 or traj.snapshots.shape[0] != traj.n_features \
                or traj.steps.numel() != traj.snapshots.shape[1]:
            raise ValueError(f"{path} is inconsistent: snapshots {tuple(traj.snapshots.shape)}, "
                             f"{traj.n_features} parameters listed, {traj.steps.numel()} steps")
        return traj


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside ``path`` (mode 0o666 less the umask), fsync, then os.replace:
    never a half-written file."""
    safe_files.write_atomically(path, lambda f: torch.save(obj, f))


def _check_path(path):
    """``path`` if it is a str or os.PathLike, else a TypeError naming it (pathlib's own does not)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike (a file name), got {type(path).__name__}")
    return path


def _misfit(name: str, value, shape: tuple[int, ...]) -> str:
    """How :meth:`Trajectory.flatten` names a value that is not a tensor of ``shape`` ("" for one that is), e.g.
    "a (2, 3) (not (3, 2))" or "a (ndarray, not a torch.Tensor: torch.from_numpy converts it)"."""
    if not isinstance(value, torch.Tensor):
        hint = ": torch.from_numpy converts it" if isinstance(value, np.ndarray) else ""
        return f"{name} ({type(value).__name__}, not a torch.Tensor{hint})"
    return f"{name} {tuple(value.shape)} (not {tuple(shape)})" if tuple(value.shape) != tuple(shape) else ""

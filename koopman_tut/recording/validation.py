"""Argument checks shared across the package: snapshot indices, numbers, a Trajectory's fields.

One rule per kind of argument, so that every function that takes one refuses the same
bad values with the same message (TypeError for a wrong type, ValueError for a wrong value,
naming the argument and what was expected). Imports only torch and numpy.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..numerics.finite import check_has_values
from ..numerics.ints import plain_int  # noqa: F401 (models.py reads it here)
from ..numerics.reals import is_finite, shown
from ..numerics.optimizer_settings import check_settings

SNAPSHOT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
DTYPE_NAMES = tuple(str(d).removeprefix("torch.") for d in SNAPSHOT_DTYPES)  # as meta['trained_in'] names them


def check_index(t, T: int, name: str = "t", end: bool = False) -> int:
    """A snapshot index as a non-negative int: -T <= t < T (-T <= t <= T with ``end``, an exclusive end).

    Negative indices count from the end, as in Python; nothing wraps around.
    """
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral):
        raise TypeError(f"{name} must be an integer snapshot index, got {t!r} ({type(t).__name__})")
    hi = T if end else T - 1
    if not -T <= t <= hi:
        raise ValueError(f"{name} must be in [{-T}, {hi}] for a window of {T} snapshots, got {t}")
    return int(t) + T if t < 0 else int(t)


def check_real(name: str, value, minimum: float, what: str = "") -> float:
    """A finite real number >= ``minimum`` (Python or NumPy scalars; bools are refused) as a float."""
    expected = f"{name} must be a finite number >= {minimum:g}{what}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{expected}, got {value!r} ({type(value).__name__})")
    if not (is_finite(value) and value >= minimum):
        raise ValueError(f"{expected}, got {shown(value)}")
    return float(value)


def check_seed(name: str, value, bits: int = 64) -> int:
    """A random seed: an int in [0, 2**bits) (torch takes 64 bits, NumPy's legacy seed and scikit-learn 32)."""
    value = plain_int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 0, got {value!r} ({type(value).__name__})")
    if not 0 <= value < 2**bits:
        raise ValueError(f"{name} must be an integer in [0, 2**{bits}), got {value!r}")
    return int(value)


def check_positive(name: str, value) -> None:
    """A finite real number > 0, or an error naming ``name`` that says so (TypeError for a non-number)."""
    try:
        if check_real(name, value, 0) > 0:
            return
    except TypeError:
        raise TypeError(f"{name} must be a finite number > 0, got {value!r} ({type(value).__name__})") from None
    except ValueError:
        pass
    raise ValueError(f"{name} must be a finite number > 0, got {shown(value)}")


def _plain(value, key: str):
    """``value`` as plain Python (lists, dicts, numbers, strings, None); tuples become lists."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        value = value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"meta[{key!r}] must have string keys, got {sorted(map(repr, value))}")
        return {k: _plain(v, key) for k, v in value.items()}
    raise TypeError(f"meta[{key!r}] must hold plain values (numbers, strings, None, lists, dicts, tensors), "
                    f"so that save() and load() give it back; got {type(value).__name__}")


PER_SNAPSHOT = ("lrs", "group_lrs", "group_settings")  # meta keys with one entry per snapshot


def check_meta(meta, T: int) -> dict:
    """Trajectory metadata as plain values, in the form load() gives back; ``lrs`` one per snapshot."""
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise TypeError(f"meta must be a dict with string keys, got {type(meta).__name__}")
    out = {k: _plain(v, k) for k, v in meta.items()}
    if "rows" in out:  # the row range (start, stop) of a sharded recording, and the pieces' shapes
        out["rows"] = _meta_rows(out["rows"])
    if "all_shapes" in out:
        out["all_shapes"] = _meta_shapes(out["all_shapes"])
    if "trained_in" in out and out["trained_in"] not in DTYPE_NAMES:  # read by the Koopman gradient's allowance
        raise ValueError(f"meta['trained_in'] must name the dtype the parameters were trained in, one of "
                         f"{list(DTYPE_NAMES)}, got {out['trained_in']!r}")
    every = out.get("every")  # the optimizer steps between snapshots: window() multiplies it, KGP roots by it
    if every is not None and not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
        raise ValueError(f"meta['every'] must be the optimizer steps between snapshots, an int >= 1, got {every!r}")
    for key in PER_SNAPSHOT:
        lrs = out.get(key)
        if lrs is not None and (not isinstance(lrs, list) or len(lrs) != T):
            what = "learning rate" if key != "group_settings" else "list of the groups' optimizer settings"
            raise ValueError(f"meta[{key!r}] must hold one {what} per snapshot ({T}), "
                             f"got {len(lrs) if isinstance(lrs, list) else lrs!r}")
    check_settings(out)  # the optimizer's settings as a recorder writes them (traj.lr reads them, KGP divides by them)
    return out


def _ints(value) -> bool:
    return isinstance(value, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in value)


def _meta_rows(rows) -> tuple[int, int]:
    """``meta['rows']`` (plain values): the rows [start, stop) of a sharded recording, 0 <= start <= stop."""
    expected = "meta['rows'] must be the row range (start, stop) of a sharded recording: two integers"
    if not _ints(rows) or len(rows) != 2:
        raise TypeError(f"{expected}, got {rows!r}")
    if not 0 <= rows[0] <= rows[1]:
        raise ValueError(f"{expected} with 0 <= start <= stop, got {tuple(rows)!r}")
    return tuple(rows)


def _meta_shapes(shapes) -> list[tuple[int, ...]]:
    """``meta['all_shapes']`` (plain values): every recorded parameter's shape, lists of integers >= 0."""
    expected = "meta['all_shapes'] must be a list of shapes (lists of integers >= 0), one per recorded parameter"
    if not isinstance(shapes, list) or not all(_ints(s) for s in shapes):
        raise TypeError(f"{expected}, got {shapes!r:.200}")
    if any(d < 0 for s in shapes for d in s):
        raise ValueError(f"{expected}, got {shapes!r:.200}")
    return [tuple(s) for s in shapes]


def check_names_shapes(names, shapes, n: int) -> tuple[list[str], list[tuple[int, ...]]]:
    """Unique names, one shape each (tuples of ints >= 0), whose sizes add up to the n rows."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not all(isinstance(s, str) for s in names):
        raise TypeError(f"names must be a list of parameter names (str), got {names!r}")
    if not isinstance(shapes, (list, tuple)):
        raise TypeError(f"shapes must be a list of shapes (tuples of ints), got {shapes!r}")
    if len(names) != len(shapes):
        raise ValueError(f"names and shapes must have one entry per parameter, got {len(names)} names "
                         f"and {len(shapes)} shapes")
    repeated = sorted({s for s in names if names.count(s) > 1})
    if repeated:
        raise ValueError(f"names must be unique, got {repeated} more than once")
    out = []
    for name, s in zip(names, shapes):
        if not isinstance(s, (list, tuple, torch.Size)) or not all(
                isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in s):
            raise TypeError(f"shapes must be tuples of integers >= 0, got {s!r} for {name!r}")
        if any(d < 0 for d in s):
            raise ValueError(f"shapes must be tuples of integers >= 0, got {tuple(s)!r} for {name!r}")
        out.append(tuple(int(d) for d in s))
    size = sum(math.prod(s) for s in out)
    if size != n:
        raise ValueError(f"shapes must add up to the snapshots' {n} rows (features), they add up to {size}")
    return list(names), out


def check_steps(steps, T: int) -> torch.Tensor:
    """(T,) int64 optimizer steps, strictly increasing, one per snapshot."""
    if isinstance(steps, (list, tuple)):
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in steps):
            raise TypeError(f"steps must be integers, got {list(steps)!r}")
        if any(not -2**63 <= s < 2**63 for s in steps):
            raise ValueError(f"steps must fit int64 (optimizer steps), got {max(steps, key=abs)}")
        steps = torch.tensor(list(steps), dtype=torch.int64).reshape(len(steps))
    elif isinstance(steps, np.ndarray):
        if steps.dtype.kind == "u" and steps.size and int(steps.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"steps must fit int64 (optimizer steps), got {int(steps.max())}")
        steps = torch.from_numpy(steps)
    if not isinstance(steps, torch.Tensor):
        raise TypeError(f"steps must be a tensor or list of integers, got {type(steps).__name__}")
    if steps.dtype.is_floating_point or steps.dtype.is_complex or steps.dtype == torch.bool:
        raise TypeError(f"steps must be integers (optimizer steps), got dtype {steps.dtype}")
    if steps.ndim != 1 or steps.numel() != T:
        raise ValueError(f"steps must have shape ({T},), one per snapshot, got shape {tuple(steps.shape)}")
    steps = steps.to(torch.int64)
    if T > 1 and not bool((steps[1:] > steps[:-1]).all()):
        raise ValueError(f"steps must be strictly increasing, got {steps.tolist()}")
    return steps


def check_snapshots(snapshots) -> torch.Tensor:
    """A dense 2-D floating tensor (n_features, n_snapshots) with at least one snapshot; not read."""
    if not isinstance(snapshots, torch.Tensor):
        hint = " (torch.from_numpy(a) converts a numpy array)" if isinstance(snapshots, np.ndarray) else ""
        raise TypeError(f"snapshots must be a torch.Tensor of shape (n_features, n_snapshots){hint}, "
                        f"got {type(snapshots).__name__}")
    if snapshots.layout != torch.strided:
        raise TypeError(f"snapshots must be a dense (strided) tensor, got layout {snapshots.layout}: call .to_dense()")
    check_has_values(snapshots, "snapshots")
    if snapshots.dtype not in SNAPSHOT_DTYPES:
        raise TypeError(f"snapshots must be floating point (float16/bfloat16/float32/float64), got {snapshots.dtype}")
    if snapshots.ndim != 2:
        raise ValueError(f"snapshots must be 2-D (n_features, n_snapshots), got shape {tuple(snapshots.shape)}")
    if snapshots.shape[1] < 1:
        raise ValueError(f"snapshots must have at least one snapshot (column), got shape {tuple(snapshots.shape)}")
    return snapshots


def check_device(name: str, device) -> torch.device:
    """``device`` (a str such as 'cpu' or 'cuda:1', a torch.device, or a CUDA index) as a torch.device that
    holds values on this machine; TypeError / ValueError naming ``name`` for anything else: a typo ('gpu'),
    'meta' (no values), or a CUDA or MPS device this machine does not have."""
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise TypeError(f"{name} must be a device (a str such as 'cpu' or 'cuda:0', or a torch.device), "
                        f"got {device!r} ({type(device).__name__})")
    try:
        d = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name}={device!r} is not a device: expected 'cpu', 'cuda', 'cuda:N', 'mps' or another "
                         f"torch device type") from None
    if d.type == "meta":
        raise ValueError(f"{name}='meta' holds no values: use 'cpu' or a GPU")
    count = torch.cuda.device_count() if d.type == "cuda" and torch.cuda.is_available() else 0
    if d.type == "cuda" and (d.index or 0) >= count:
        raise ValueError(f"{name}={device!r}, but this machine has {count} usable CUDA device(s)")
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={device!r}, but MPS is not available on this machine")
    return d

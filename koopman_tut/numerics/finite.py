"""Finite snapshots: the check every route runs on its data, naming the first NaN or Inf it finds;
and where a warning about the data should point (the first caller outside this package)."""
from __future__ import annotations

import functools
import os
import sys

import torch

Tensor = torch.Tensor


class NonFiniteError(ValueError):
    """A NaN or Inf in an argument: its name, where the first one is, and the argument's shape."""

    def __init__(self, name: str, label: str, shape: tuple[int, ...], hint: str = ""):
        self.label, self.shape, self.hint = label, shape, hint
        super().__init__(f"{name} contains NaN or Inf values (first at {label}; {name} has shape {shape}){hint}")

    def named(self, name: str) -> NonFiniteError:
        """The same error for the argument as the caller called it."""
        return NonFiniteError(name, self.label, self.shape, self.hint)


class NonFiniteGram(ValueError):
    """A Gram that is not finite while this rank's data is: an overflow, or NaN/Inf on another rank."""

    def __init__(self, name: str = "W"):
        super().__init__(f"the Gram of {name} overflows, or another rank's {name} holds NaN/Inf: check and "
                         f"rescale {name}")

    def named(self, name: str) -> NonFiniteGram:
        return NonFiniteGram(name)


def renamed(name: str):
    """Decorator: a :class:`NonFiniteError` (or :class:`NonFiniteGram`) raised inside names the argument
    ``name``, as the caller passed it
    (the data is met, and checked, on the way through the snapshots, under the inner functions' names)."""
    def wrap(fn):
        @functools.wraps(fn)
        def named(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (NonFiniteError, NonFiniteGram) as e:
                raise e.named(name) from None
        return named
    return wrap


FLOAT16_HINT = ("; float16 holds at most 65504 in magnitude, so a larger value is stored as Inf: "
                "record in float32 or bfloat16 (dtype=) if training did not diverge")


# the dtypes torch.aminmax reads, and those a snapshot matrix may have (snapshots.py, which imports this module)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)


def all_finite(x: Tensor) -> bool:
    """``bool(torch.isfinite(x).all())``: for float and complex dtypes from the min and max (one pass: a
    NaN makes both NaN, an Inf is one of them), without the n-entry boolean tensor of ``torch.isfinite``
    (at 1M float32, 0.1 ms against 1.3 ms); for other dtypes through torch.isfinite."""
    if x.dtype not in FLOAT_DTYPES:
        return bool(torch.isfinite(x).all())
    if x.numel() == 0:
        return True
    lo, hi = torch.aminmax(torch.view_as_real(x.resolve_conj()) if x.is_complex() else x)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def check_has_values(t: Tensor, name: str) -> None:
    """ValueError when ``t`` is on the meta device: a shape without values, nothing to read."""
    if t.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it has a shape but no values (load or compute real ones)")


def check_finite(W: Tensor, name: str = "W", chunk_rows: int = 2**16) -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite entry (batch index, row, column), chunked."""
    for s in range(0, W.shape[-2], chunk_rows):
        part = W[..., s:s + chunk_rows, :]
        bad = ~torch.isfinite(part)
        if bool(bad.any()):
            where = torch.nonzero(bad)[0].tolist()
            where[-2] += s
            label = ", ".join(f"{k}={v}" for k, v in zip(["batch", "row", "column"][-len(where):], where))
            raise NonFiniteError(name, label, tuple(W.shape), FLOAT16_HINT if W.dtype == torch.float16 else "")


_OWN = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,)  # koopman_tut/
_TORCH = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def outside_stacklevel(torch_too: bool = False) -> int:
    """The stacklevel of warnings.warn that points at the first caller outside this package (and outside torch with
    ``torch_too``: the user's ``opt.step()`` through torch's optimizer wrappers, an lr scheduler's, a GradScaler's)."""
    skip = _OWN + (_TORCH,) * torch_too
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame, level = frame.f_back, level + 1
    return level

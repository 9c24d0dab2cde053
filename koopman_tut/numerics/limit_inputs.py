"""The arguments of :func:`koopman_tut.numerics.limits.estimate_limit`, checked before anything is computed
(and, over ranks, before the pre-flight compares them): the method, and each knob only for the method that reads it."""
from __future__ import annotations

import numbers

import numpy as np

from .ints import plain_number
from .reals import is_finite, shown

METHODS = ("koopman", "closest", "last", "line", "mpe", "rre", "anderson", "secant")


def check_method(method: str, a, depth, svd_rank, delays) -> None:
    """``method`` one of :data:`METHODS`, with only its own knobs set, each a valid value."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    check_knobs(method, a=a, depth=depth, svd_rank=svd_rank, delays=delays)
    if a is not None:
        check_a(a)
    if depth is not None:
        check_depth(depth)


KNOBS = {"a": ("line",), "depth": ("anderson",), "svd_rank": ("koopman",), "delays": ("koopman",)}


def check_knobs(method: str, **given) -> None:
    """A knob set (not None / "auto") for a method that does not read it is an error, naming both."""
    for name, value in given.items():
        unset = value is None if name in ("a", "depth") else isinstance(value, str) and value == "auto"
        if not unset and method not in KNOBS[name]:
            raise ValueError(f"{name}={value!r} is a knob of method={KNOBS[name][0]!r} only; method={method!r} "
                             f"does not use it (drop {name}=, or choose method={KNOBS[name][0]!r})")


def check_a(a) -> float:
    """The line's step as a float: a finite real number >= 0 (Python, NumPy, or a one-element real tensor or array;
    a < 0 steps back along the window, toward x_0, which estimates no limit)."""
    x = plain_number(a)
    if not (isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) and is_finite(x)):
        raise ValueError(f"a must be a finite number (the line's step), got {shown(a)}")
    if x < 0:
        raise ValueError(f"a must be >= 0 (the line's step forward from the last snapshot, x_(T-1) + a (x_(T-1) - "
                         f"x_0); 0 is the last snapshot), got {a!r}: a < 0 steps back toward x_0")
    return float(x)


def check_depth(depth) -> None:
    """Anderson's depth: an integer >= 1."""
    if isinstance(depth, (bool, np.bool_)) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")


def check_warn(warn) -> None:
    """``warn``: True or False (a string such as 'no' would read as True)."""
    if not isinstance(warn, (bool, np.bool_)):
        raise TypeError(f"warn must be True or False, got {warn!r}")

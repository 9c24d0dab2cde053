"""Numbers a caller gives, read without torch (the command line checks its arguments before torch is loaded):
whether one is finite in float64, an int past float64's range included (:func:`is_finite`), and how an error
message shows it (:func:`shown`)."""
from __future__ import annotations

import cmath
import math
import numbers


def is_finite(value) -> bool:
    """Whether a (real or complex) number is finite in float64: an int past float64's range is not (``math.isfinite``
    of it raises OverflowError)."""
    real = not isinstance(value, numbers.Complex) or isinstance(value, numbers.Real)
    try:
        return (math if real else cmath).isfinite(value)
    except (OverflowError, ValueError, TypeError, RuntimeError):  # past float64, Decimal('sNaN'), a complex tensor
        return False


def shown(value) -> str:
    """``repr(value)`` for an error message: "an integer of N digits" for an int too long to read there, and any
    other repr over 60 characters cut (a Fraction of 400-digit terms)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) >= 10**21:
        return f"an integer of {len(str(abs(int(value))))} digits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"

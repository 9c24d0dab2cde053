"""Exercises that answer back: ``check("03.1", answer, ...)`` says right, or what is off.

Every exercise code cell of a notebook ends in ``answer = ...``; the cell after it (tagged
``check``) calls :func:`check` with the exercise's id, the student's ``answer`` and whatever
the checker needs from the notebook (the model, the scores, a trajectory) as keywords. The
checker for exercise ``"NN.k"`` lives in ``koopman_tut.tooling.checks.nbNN`` and is registered
with :func:`checker`. It returns ``(True, why)`` when the answer is right and ``(False, what is
off + a hint)`` otherwise; its message never gives the solution away.

:func:`check` never raises in a student's notebook: an unfilled ``answer = ...`` or an answer
of the wrong kind prints "not yet" with a hint. Under nbgrader's autograder (environment
variable ``NBGRADER_EXECUTION`` set) a wrong answer raises ``AssertionError``, which nbgrader
counts as a failed test cell, so the same check cells grade a class.
"""
from __future__ import annotations

import importlib
import math
import os
import re
from numbers import Real
from typing import Any, Callable

import numpy as np

from ...numerics.ints import plain_number

Verdict = tuple[bool, str]
_CHECKERS: dict[str, Callable[..., Verdict]] = {}
_HINTS: dict[str, str] = {}
_ID = re.compile(r"^(\d\d)\.(\d+)$")
RIGHT, NOT_YET = "right", "not yet"


def checker(exercise: str, expects: str) -> Callable:
    """Register the decorated function as the checker of ``exercise`` ("NN.k").

    Parameters
    ----------
    exercise : str
        Exercise id: notebook number, a dot, the exercise's number ("03.1").
    expects : str
        What ``answer`` should be, in words ("a float: the kept overlap at compression 8");
        shown when the answer is still ``...`` or of the wrong kind.
    """
    if not _ID.match(exercise):
        raise ValueError(f"exercise id must look like '03.1', got {exercise!r}")

    def register(fn: Callable[..., Verdict]) -> Callable[..., Verdict]:
        _CHECKERS[exercise] = fn
        _HINTS[exercise] = expects
        return fn

    return register


def find(exercise: str) -> Callable[..., Verdict]:
    """The checker of ``exercise``, importing ``checks.nbNN`` on first use."""
    m = _ID.match(str(exercise))
    if not m:
        raise ValueError(f"exercise must be an id like '03.1', got {exercise!r}")
    if exercise not in _CHECKERS:
        try:
            importlib.import_module(f"{__name__}.nb{m.group(1)}")
        except ModuleNotFoundError as e:
            raise ValueError(f"no checkers for notebook {m.group(1)} (exercise {exercise!r})") from e
    if exercise not in _CHECKERS:
        raise ValueError(f"no checker for exercise {exercise!r}; known: {', '.join(sorted(_CHECKERS))}")
    return _CHECKERS[exercise]


def expects(exercise: str) -> str:
    """What ``answer`` should be for ``exercise``, in words."""
    find(exercise)
    return _HINTS[exercise]


def verdict(exercise: str, answer: Any, **context: Any) -> Verdict:
    """``(right, message)`` for ``answer`` to ``exercise``; never raises for a student's answer."""
    fn = find(exercise)
    if answer is Ellipsis:
        return False, f"replace `...` with {_HINTS[exercise]}."
    try:
        ok, why = fn(builtin(answer), **context)
    except Exception as e:  # noqa: BLE001 - a student's answer of the wrong kind is "not yet", not a traceback
        return False, (f"could not check this answer ({type(e).__name__}: {e}). "
                       f"`answer` should be {_HINTS[exercise]}.")
    return bool(ok), str(why)


_READ = {int: int.__int__, float: float.__float__, str: str.__str__,  # each the builtin's own (complex.__complex__
         complex: lambda z: complex(complex.real.__get__(z), complex.imag.__get__(z))}  # is Python 3.11's)


def builtin(answer: Any) -> Any:
    """``answer`` with every int, float, complex or str (in tuples, lists and dicts, at any depth) made the builtin
    type itself: an instance of a subclass could answer every comparison with True, or read the value it is
    compared with. Each is read by the builtin type's own method, whatever the subclass overrides."""
    for base, read in _READ.items():
        if isinstance(answer, base) and type(answer) is not base and not isinstance(answer, bool):
            return read(answer)
    if isinstance(answer, (tuple, list)):
        items = [builtin(v) for v in (tuple.__iter__ if isinstance(answer, tuple) else list.__iter__)(answer)]
        return tuple(items) if isinstance(answer, tuple) else items
    if isinstance(answer, dict):
        return {builtin(k): builtin(v) for k, v in dict.items(answer)}
    return answer


def check(exercise: str, answer: Any, **context: Any) -> None:
    """Print whether ``answer`` to ``exercise`` is right, or what is off (with a hint).

    Parameters
    ----------
    exercise : str
        Exercise id, e.g. ``"03.1"``.
    answer : Any
        The student's ``answer`` (``...`` while the exercise is not done).
    **context
        Objects of the notebook the checker needs (documented by each checker).

    Returns
    -------
    None
        Nothing, so a check cell shows only the message (and nbgrader, which reads a cell's
        result as partial credit, sees none); :func:`verdict` gives ``(right, message)``.

    Raises
    ------
    AssertionError
        Only under nbgrader's autograder (``NBGRADER_EXECUTION`` set) and only for an answer
        that is not right, so nbgrader scores the check cell.
    """
    ok, why = verdict(exercise, answer, **context)
    print(f"Exercise {exercise}: {RIGHT if ok else NOT_YET}. {why[:1].upper()}{why[1:]}")
    if not ok and os.environ.get("NBGRADER_EXECUTION"):
        raise AssertionError(f"exercise {exercise}: {why}")


def number(value: Any) -> float:
    """``value`` as a float if it is a number (a Python, NumPy or one-element torch number; not a bool,
    not text: ``float("0.9")`` would take a string for the number it spells); TypeError otherwise,
    which :func:`verdict` turns into "not yet"."""
    value = plain_number(value)  # a 0-d or one-element array or tensor: its Python number
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r:.40}")
    return float(value)


def close(value: float, expected: float, rel: float = 1e-6, abs_: float = 0.0) -> bool:
    """``|value - expected| <= max(rel * |expected|, abs_)``: a tolerance helper for checkers.
    ``value`` (the student's) must be a number (:func:`number`)."""
    return abs(number(value) - float(expected)) <= max(rel * abs(float(expected)), abs_)


def typed_digits(value: float) -> int:
    """Significant digits of ``value`` as Python writes it shortest: 0.0056 -> 2, 5.60e-3 -> 2,
    1.969 -> 4, 1200.0 -> 2; a computed float has 15 to 17 (0 for zero, inf or nan)."""
    x = float(value)
    if not math.isfinite(x) or x == 0:
        return 0
    mantissa = repr(abs(x)).lower().split("e")[0].replace(".", "")
    return len(mantissa.strip("0"))


def rounds_to(value: float, expected: float) -> bool:
    """True if ``value`` is ``expected`` rounded to the significant digits ``value`` has (at least
    two, at most six: a number typed from a printout, not a computed one)."""
    x, digits = float(value), typed_digits(value)
    if not 2 <= digits <= 6:
        return False
    half_unit = 0.5 * 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)
    return abs(x - float(expected)) <= half_unit * (1 + 1e-9)


def agrees(value: float, expected: float, rel: float = 1e-6, abs_: float = 0.0) -> bool:
    """:func:`close`, or ``value`` typed from a printout of ``expected`` (:func:`rounds_to`)."""
    return close(value, expected, rel, abs_) or rounds_to(value, expected)


def share(answer: Any) -> float:
    """``answer`` as a share in [0, 1] (a kept overlap); TypeError / ValueError otherwise, which
    :func:`verdict` turns into "not yet"."""
    x = number(answer)
    if not 0 <= x <= 1 or math.isnan(x):
        raise ValueError(f"a kept overlap is a share between 0 and 1, got {x}")
    return x


def is_trajectory(obj: Any) -> bool:
    """True if ``obj`` looks like a recorded :class:`~koopman_tut.recording.trajectory.Trajectory`."""
    return hasattr(obj, "snapshots") and hasattr(obj, "steps")


def strided_window_problem(traj: Any, name: str, every: int, window: int | None, record: str,
                           steps: str) -> str | None:
    """None if ``traj`` is a recorded window of ``window`` + 1 snapshots, ``every`` steps apart;
    else what is off. ``name`` is the notebook's variable; ``record`` and ``steps`` are the hints
    for recording it and for its length."""
    if not is_trajectory(traj):
        return f"`{name}` is not a recorded window yet. Hint: {record}."
    gaps = {int(d) for d in (traj.steps[1:] - traj.steps[:-1]).tolist()}
    if gaps != {every}:
        return f"the snapshots are {sorted(gaps)} step(s) apart, not {every}. Hint: every={every}."
    if window is not None and len(traj) != window + 1:
        return f"the window has {len(traj)} snapshots, not WINDOW + 1 = {window + 1}. Hint: {steps}."
    return None

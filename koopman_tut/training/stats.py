"""Statistics over seeds for the experiments' tables: a mean with its Student-t interval, and the
seed-by-seed (paired) difference of two rules, which is what a claim "better than" needs."""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping, Set as AbstractSet

import numpy as np


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its Student-t confidence interval over seeds.

    ``values``: (n,) real numbers, one per seed (a list, an array or a tensor). One value has no interval
    (zero degrees of freedom): its bounds are NaN, so a check such as ``low > 0`` is False and a plot draws no
    band. Equal values have a zero-width interval (no spread between seeds). A NaN or an infinity among them
    gives NaN everywhere, with a RuntimeWarning naming its position. TypeError for values that are not real
    numbers, ValueError for none, a 2-D table (which seed is which?) or a level outside (0, 1).
    """
    from scipy import stats

    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1) (0.95 for a 95% interval), got {level!r}")
    v = _seed_values(values).astype(float)
    if not np.isfinite(v).all():
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def _seed_values(values) -> np.ndarray:
    """``values`` as a (n,) real array, n >= 1 (a RuntimeWarning for any not finite); TypeError / ValueError
    naming ``values`` otherwise."""
    if values is None or isinstance(values, (str, bytes, numbers.Number, Mapping, AbstractSet)) \
            or not hasattr(values, "__iter__"):  # a dict's iteration gives its keys, a set merges equal seeds
        raise TypeError(f"values must be real numbers, one per seed (a list, array or tensor; a dict's .values() "
                        f"as a list), got {values!r:.60}")
    v = np.asarray(values if hasattr(values, "__array__") or isinstance(values, (list, tuple)) else list(values))
    if v.dtype == object and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v.reshape(-1)):
        v = v.astype(float)  # integers past int64 (2**70)
    if v.dtype.kind not in "iuf":  # bools, complex numbers, text, mixed objects
        raise TypeError(f"values must be real numbers, one per seed, got {v.dtype} values {values!r:.60}")
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a flat list of numbers, one per seed, got shape {v.shape}"
                         + (": values is empty, no seed to average" if v.size == 0 else ""))
    if not np.isfinite(v).all():  # the table still prints, as nan, and says which seed lost its value
        warnings.warn(f"values hold {v[~np.isfinite(v)].tolist()[:3]} at positions (seeds) "
                      f"{np.flatnonzero(~np.isfinite(v)).tolist()[:3]}: the mean and interval are nan",
                      RuntimeWarning, stacklevel=3)
    return v


def _values(rows, value: str, key) -> dict:
    """{key(row): row.value}; ValueError for two rows with the same key or a value not computed."""
    out = {}
    for r in rows:
        k, v = key(r), getattr(r, value)
        if k in out:
            raise ValueError(f"rows hold {k} twice (rule, start, seed): concatenated studies must not repeat a seed")
        if v is None:
            raise ValueError(f"value {value!r} was not computed for {k} (e.g. accuracy_finetuned without "
                             f"fine-tuning epochs)")
        out[k] = v
    return out


def _get(table: dict, key: tuple):
    if key not in table:
        raise ValueError(f"no row for {key} (rule, start, seed): every rule needs every seed at every start to "
                         f"be compared seed by seed; rules present: {sorted({k[0] for k in table})}")
    return table[key]


def summarize(rows, value: str = "overlap_final", versus: str | None = None) -> str:
    """Mean and 95% interval over seeds for each (rule, start); with ``versus``, of the paired
    difference rule - versus (seed by seed), which is what a claim "better than" needs."""
    starts = sorted({r.start for r in rows})
    rules = list(dict.fromkeys(r.rule for r in rows))
    get = _values(rows, value, lambda r: (r.rule, r.start, r.seed))
    seeds = sorted({r.seed for r in rows})
    head = f"{value + (' - ' + versus if versus else ''):>28s}" + "".join(f"{'start ' + str(s):>24s}" for s in starts)
    lines = [head]
    for rule in rules:
        if rule == versus:
            continue
        cells = []
        for st in starts:
            vals = [_get(get, (rule, st, sd)) - (_get(get, (versus, st, sd)) if versus else 0) for sd in seeds]
            m, lo, hi = mean_ci(vals)
            cells.append(f"{m:+.3f} [{lo:+.3f},{hi:+.3f}]" if versus else f"{m:.3f} [{lo:.3f},{hi:.3f}]")
        lines.append(f"{rule:>28s}" + "".join(f"{c:>24s}" for c in cells))
    return "\n".join(lines)


def paired(rows, rule: str, versus: str, start: int, value: str = "overlap_final"):
    """(mean, low, high) of the seed-by-seed difference rule - versus at one start."""
    at = [r for r in rows if r.start == start]
    if not at:
        raise ValueError(f"start {start!r} is not among the rows' starts {sorted({r.start for r in rows})}")
    get = _values(at, value, lambda r: (r.rule, r.start, r.seed))
    seeds = sorted({r.seed for r in at})
    return mean_ci([_get(get, (rule, start, s)) - _get(get, (versus, start, s)) for s in seeds])

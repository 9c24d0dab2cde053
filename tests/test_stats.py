"""Seed statistics: the t-interval, and tables that refuse what they cannot pair."""
import math

import numpy as np
import pytest
from scipy import stats

from koopman_tut import experiments as ex
from koopman_tut.training.experiments import PredictionRow


def test_mean_ci_is_the_student_t_interval():
    for v in ([0.1, 0.3], [1.0, 2.0, 4.0], list(np.linspace(0, 1, 30))):
        lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
        m, a, b = ex.mean_ci(v)
        assert m == pytest.approx(np.mean(v)) and a == pytest.approx(lo) and b == pytest.approx(hi)


def test_one_value_has_no_interval():
    m, lo, hi = ex.mean_ci([0.7])
    assert m == 0.7 and math.isnan(lo) and math.isnan(hi)  # was (0.7, 0.7, 0.7): certainty from one seed
    for level in (95, 0.0, 1.0, True, "0.95"):
        with pytest.raises(ValueError, match="level"):
            ex.mean_ci([1.0, 2.0], level=level)
    with pytest.raises(ValueError, match="empty"):
        ex.mean_ci([])


def _rows(pairs):
    return [PredictionRow(seed, start, rule, value, None, None) for seed, start, rule, value in pairs]


def test_tables_refuse_what_they_cannot_pair():
    rows = _rows([(s, 80, r, 0.1 * s + (r == "A")) for s in range(3) for r in ("A", "B")])
    assert ex.paired(rows, "A", "B", 80)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="twice"):  # two studies concatenated: the last row won silently
        ex.paired(rows + _rows([(0, 80, "A", 5.0)]), "A", "B", 80)
    with pytest.raises(ValueError, match=r"no row for \('B', 80, 3\)"):
        ex.paired(rows + _rows([(3, 80, "A", 0.0)]), "A", "B", 80)
    with pytest.raises(ValueError, match=r"no row for \('Bx'"):
        ex.summarize(rows, versus="Bx")
    with pytest.raises(ValueError, match="start 99"):
        ex.paired(rows, "A", "B", 99)
    with pytest.raises(ValueError, match="accuracy_finetuned.*not computed"):
        ex.summarize(rows, value="accuracy_finetuned")


@pytest.mark.parametrize("values, error, words", [
    (None, TypeError, "values must be real numbers"),  # it gave (nan, nan, nan)
    (3.0, TypeError, "values must be real numbers"),
    ([1 + 2j, 3], TypeError, "complex128"),  # its real part, with numpy's ComplexWarning
    ([True, False, True], TypeError, "bool"),
    ([[1, 2], [3, 4]], ValueError, r"shape \(2, 2\)"),  # four seeds, it said
    ([], ValueError, "no seed to average"),
    ({11: 0.80, 12: 0.82}, TypeError, r"\.values\(\)"),  # the mean of the seeds, 11.5, as a first fix read it
    ({0.8, 0.9}, TypeError, "one per seed"),  # a set merges seeds with equal values
])
def test_values_that_are_not_one_number_per_seed_are_refused(values, error, words):
    with pytest.raises(error, match=words):
        ex.mean_ci(values)


def test_a_value_that_is_not_finite_gives_nan_and_says_which():
    with pytest.warns(RuntimeWarning, match=r"values hold \[inf\] at positions \(seeds\) \[2\]"):
        assert all(map(math.isnan, ex.mean_ci([1.0, 2.0, math.inf])))
    assert ex.mean_ci(x for x in (1.0, 2.0, 3.0)) == ex.mean_ci(np.array([1.0, 2.0, 3.0]))  # any iterable
    assert ex.mean_ci([3, 3, 3]) == (3.0, 3.0, 3.0)  # no spread between seeds: a zero-width interval
    assert ex.mean_ci([2**70, 2**70]) == (2.0**70, 2.0**70, 2.0**70)  # integers past int64: numpy's object array
